package rules_test

import (
	"bufio"
	"bytes"
	"net/netip"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/ingest/loggen"
	"github.com/spraywatch/spraywatch/rules"
)

// benchEvents parses a generated log (benign traffic with hidden attacks).
func benchEvents(b *testing.B, lines int) []ingest.Event { return benchClients(b, lines, 2000) }

// benchClients is benchEvents with a number of clients.
func benchClients(b *testing.B, lines, clients int) []ingest.Event {
	b.Helper()
	var buf bytes.Buffer
	start := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	if _, err := loggen.Write(&buf, loggen.Options{Start: start, Duration: 6 * time.Hour, Clients: clients, Lines: lines, Seed: 1,
		Spray: true, BruteForce: true, Stuffing: true, NAT: true, Stale: true, Compromise: true}); err != nil {
		b.Fatal(err)
	}
	p, err := ingest.NewParser(ingest.Options{Name: "bench", Format: ingest.FormatNginx, Layout: loggen.LogFormat,
		Fields: map[ingest.Role]string{ingest.RoleCredential: "api_key_prefix"}, IdentityPaths: []string{loggen.IdentityPath},
		Statuses: ingest.DefaultStatuses(), Secret: []byte("bench-secret-0123456789")})
	if err != nil {
		b.Fatal(err)
	}
	var evs []ingest.Event
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var ev ingest.Event
		if p.Parse(sc.Bytes(), &ev) == nil {
			evs = append(evs, ev)
		}
	}
	return evs
}

// cpuTime returns the CPU time the process has used, garbage collection
// included: on a shared machine it varies less than wall time, and it is
// what decides whether a daemon keeps up.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkEngineObserve measures window counting and rule evaluation per
// event on 2,000 clients' traffic, without SQLite (batches are taken and
// dropped as replay would hand them to its writer).
func BenchmarkEngineObserve(b *testing.B) { benchObserve(b, benchEvents(b, 200_000)) }

// BenchmarkEngineObserve20k is BenchmarkEngineObserve at 20,000 clients (a
// million lines over six hours, as the replay benchmark's 20,000-client
// row): most lines are successes of clients seen every few minutes, so
// nearly every line reaches groups and success maps cold.
func BenchmarkEngineObserve20k(b *testing.B) { benchObserve(b, benchClients(b, 1_000_000, 20_000)) }

func benchObserve(b *testing.B, evs []ingest.Event) {
	b.ReportAllocs()
	e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
	b.ResetTimer()
	cpu := cpuTime(b)
	for i := 0; i < b.N; i++ {
		if i%len(evs) == 0 && i > 0 {
			b.StopTimer()
			e = rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
			b.StartTimer()
		}
		e.Observe(&evs[i%len(evs)])
		if e.Pending() >= 50_000 {
			e.TakeBatch(detect.Batch{}) // as replay hands batches to its writer
		}
	}
	b.ReportMetric(float64((cpuTime(b)-cpu).Nanoseconds())/float64(b.N), "cpu-ns/event")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
}

// BenchmarkEngineFlood measures counting and judging under an attacker's
// flood, as the daemon benchmark feeds it but without parsing or SQLite:
// 2,000 clients' traffic with three one-off failed lines between any two of
// its lines, each from a random address in 10.0.0.0/8 with an identity and a
// key of its own, under the daemon's default caps.
func BenchmarkEngineFlood(b *testing.B) {
	benign := benchEvents(b, 100_000)
	evs := make([]ingest.Event, 0, 4*len(benign))
	rnd := uint32(7)
	for i := range benign {
		evs = append(evs, benign[i])
		for j := 0; j < 3; j++ {
			rnd = rnd*1664525 + 1013904223
			n := strconv.Itoa(i*3 + j)
			evs = append(evs, ingest.Event{Time: benign[i].Time, Source: benign[i].Source,
				IP:       netip.AddrFrom4([4]byte{10, byte(rnd >> 24), byte(rnd >> 16), byte(rnd >> 8)}),
				Identity: "client-f" + n, Credential: "sk_live_f" + n, Outcome: ingest.Failure, Status: 401, Method: "GET",
				Route: benign[i].Route, Pos: ingest.Pos{File: benign[i].Pos.File, Offset: int64(i*4+j) * 150}})
		}
	}
	b.ReportAllocs()
	newEngine := func() *rules.Engine {
		return rules.NewEngine(rules.Options{Config: rules.DefaultConfig(), MaxGroups: 50_000, MaxEntries: 500_000, MaxIncidentSet: 50_000})
	}
	e := newEngine()
	b.ResetTimer()
	cpu := cpuTime(b)
	for i := 0; i < b.N; i++ {
		if i%len(evs) == 0 && i > 0 {
			b.StopTimer()
			e = newEngine()
			b.StartTimer()
		}
		e.Observe(&evs[i%len(evs)])
		if e.Pending() >= 25_000 {
			e.TakeBatch(detect.Batch{}) // as the daemon hands batches to its writer
		}
	}
	b.ReportMetric(float64((cpuTime(b)-cpu).Nanoseconds())/float64(b.N), "cpu-ns/event")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
}
