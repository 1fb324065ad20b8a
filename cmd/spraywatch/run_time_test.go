package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"
)

// A line dated years ahead is skipped as future_time, and the spray after
// it is still judged on its real time.
func TestRunFutureLineDoesNotBlind(t *testing.T) {
	e := newRTEnv(t, "logs/access.log", "1s")
	w := e.create("logs/access.log")
	future := time.Now().UTC().AddDate(5, 0, 0)
	if _, err := fmt.Fprintf(w, `192.0.2.1 - - [%s] "GET /api/v1/clients/c1/resource HTTP/1.1" 200 5 "-" "x" key=sk_live_0000 rt=0.001`+"\n",
		future.Format("02/Jan/2006:15:04:05 -0700")); err != nil {
		t.Fatal(err)
	}
	e.write(w, 150)
	d := e.start()
	e.waitCounted(d, e.written)
	e.stop(d)
	e.check()
}

// Lines out of order within the lateness still count in their windows:
// the spray is written in shuffled blocks of a minute.
func TestRunOutOfOrderWithinLateness(t *testing.T) {
	e := newRTEnv(t, "logs/access.log", "1s")
	w := e.create("logs/access.log")
	var b strings.Builder
	for block := 0; block < 150; block += 30 {
		for j := 29; j >= 0; j-- { // each minute's lines newest first
			b.WriteString(e.sprayLine(block + j))
			b.WriteByte('\n')
		}
	}
	if _, err := w.WriteString(b.String()); err != nil {
		t.Fatal(err)
	}
	e.spray, e.written = 150, 150
	d := e.start()
	e.waitCounted(d, e.written)
	e.stop(d)
	e.check()
}

// Live latency, line written to incident stored, with the default
// poll_interval and flush_interval, polling only against file events:
// 20 sprays each, alternated, min/median/max printed. A measurement, not
// a check (it asserts nothing about speed):
//
//	SPRAYWATCH_LATENCY=1 go test -run TestRunLiveLatency -v ./cmd/spraywatch
func TestRunLiveLatency(t *testing.T) {
	if os.Getenv("SPRAYWATCH_LATENCY") == "" {
		t.Skip("a measurement; set SPRAYWATCH_LATENCY=1")
	}
	type mode struct {
		name   string
		e      *rtEnv
		d      *rtDaemon
		w      *os.File
		took   []time.Duration
		events bool
	}
	modes := []*mode{{name: "poll only (file_events: false)"}, {name: "file events", events: true}}
	for _, m := range modes {
		m.e = newRTEnv(t, "logs/access.log", "3s")
		cfg, err := os.ReadFile(m.e.config)
		if err != nil {
			t.Fatal(err)
		}
		c := strings.Replace(string(cfg), "poll_interval: 20ms\n", "", 1)
		c = strings.Replace(c, "flush_interval: 50ms\n", "", 1)
		c += fmt.Sprintf("file_events: %v\n", m.events)
		if err := os.WriteFile(m.e.config, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
		m.w = m.e.create("logs/access.log")
		m.d = m.e.start()
		defer m.e.stop(m.d)
	}
	line := func(e *rtEnv, run, id int) string {
		ts := e.base.Add(time.Duration(run*40+id) * time.Second)
		return fmt.Sprintf(`198.51.100.%d - - [%s] "POST /api/v1/clients/victim-%03d/token HTTP/1.1" 401 32 "-" "spray/1.0" key=sk_live_%04d rt=0.004`+"\n",
			run+1, ts.Format("02/Jan/2006:15:04:05 -0700"), id, run)
	}
	for run := 0; run < 20; run++ {
		for _, m := range modes {
			var b strings.Builder
			for id := 0; id < 9; id++ {
				b.WriteString(line(m.e, run, id))
			}
			if _, err := m.w.WriteString(b.String()); err != nil {
				t.Fatal(err)
			}
			m.e.written += 9
			m.e.waitCounted(m.d, m.e.written)
			time.Sleep(time.Duration(run*37%250) * time.Millisecond) // anywhere within a poll
			start := time.Now()
			if _, err := m.w.WriteString(line(m.e, run, 9)); err != nil {
				t.Fatal(err)
			}
			m.e.written++
			for rtSprayIncidents(t, m.e) < run+1 {
				if time.Since(start) > 30*time.Second {
					t.Fatalf("%s: no incident for run %d:\n%s", m.name, run, m.d.stderr.String())
				}
				time.Sleep(2 * time.Millisecond)
			}
			m.took = append(m.took, time.Since(start))
		}
	}
	for _, m := range modes {
		sort.Slice(m.took, func(i, j int) bool { return m.took[i] < m.took[j] })
		t.Logf("%s: line written to incident stored over %d runs: min %v, median %v, max %v", m.name, len(m.took),
			m.took[0].Round(time.Millisecond), m.took[len(m.took)/2].Round(time.Millisecond), m.took[len(m.took)-1].Round(time.Millisecond))
	}
}
