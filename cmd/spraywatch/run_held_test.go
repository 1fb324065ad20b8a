package main

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
)

// heldStep is one step of a held-lines case: lines written, then the
// daemon started and stopped (or killed) once the counts are stored.
type heldStep struct {
	normal int           // lines at the source's own time
	ahead  int           // then lines dated this far ahead of the machine's clock
	by     time.Duration // how far ahead
	after  int           // then more lines at the source's own time
	kill   bool          // kill -9 once counted, instead of stopping
	// counted is what the database holds after the step; readTo is what
	// the saved position of the path says was read: "end" (every line
	// written) or "held" (up to the first line still held).
	counted int
	readTo  string
}

// Lines dated ahead of their source's other lines are held back by the
// detector (rules/clock.go) until later lines confirm or contradict them,
// and those dated ahead of the machine's clock stay held while the daemon
// has read everything. Their position must not be saved while they are
// held: a stop or kill -9 would leave them behind, neither counted nor
// read again. Each case is a sequence of runs over one log; after each, the
// stored counts and the saved position must agree exactly.
func TestRunHeldAheadLinesAcrossRestarts(t *testing.T) {
	for _, c := range []struct {
		name  string
		steps []heldStep
	}{
		{"held at a stop, confirmed after the restart", []heldStep{
			{normal: 300, ahead: 3, by: time.Hour, counted: 300, readTo: "held"},
			{ahead: 2, by: time.Hour, counted: 305, readTo: "end"},
		}},
		{"held at a kill -9, confirmed after the restart", []heldStep{
			{normal: 300, ahead: 3, by: time.Hour, kill: true, counted: 300, readTo: "held"},
			{ahead: 2, by: time.Hour, counted: 305, readTo: "end"},
		}},
		{"held across two stops", []heldStep{
			{normal: 300, ahead: 2, by: 2 * time.Hour, counted: 300, readTo: "held"},
			{ahead: 1, by: 2 * time.Hour, kill: true, counted: 300, readTo: "held"},
			{ahead: 2, by: 2 * time.Hour, counted: 305, readTo: "end"},
		}},
		{"confirmed in one run", []heldStep{
			{normal: 300, ahead: 5, by: time.Hour, counted: 305, readTo: "end"},
		}},
		{"contradicted: left out, read past", []heldStep{
			{normal: 300, ahead: 3, by: time.Hour, after: 10, counted: 310, readTo: "end"},
			{normal: 4, counted: 314, readTo: "end"},
		}},
		{"contradicted after a stop", []heldStep{
			{normal: 300, ahead: 3, by: time.Hour, counted: 300, readTo: "held"},
			{normal: 10, counted: 310, readTo: "end"},
		}},
		{"ahead of the source, not of the machine: counted at once", []heldStep{
			{normal: 300, ahead: 3, by: -time.Minute, counted: 303, readTo: "end"},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newRTEnv(t, "logs/access.log", "1s")
			w := e.create("logs/access.log")
			var size, heldAt int64 // bytes written; the offset of the first line held
			held := false
			put := func(line string) {
				t.Helper()
				n, err := fmt.Fprintln(w, line)
				if err != nil {
					t.Fatal(err)
				}
				size += int64(n)
				e.written++
			}
			var aheadN int
			for si, st := range c.steps {
				for i := 0; i < st.normal; i++ {
					put(e.benignLine(e.written))
				}
				if st.normal > 0 && held {
					held = false // they went back: the held lines were left out
				}
				for i := 0; i < st.ahead; i++ {
					if !held {
						held, heldAt = true, size
					}
					at := time.Now().UTC().Add(st.by).Truncate(time.Second).Add(time.Duration(aheadN) * time.Second)
					put(fmt.Sprintf(`198.51.100.7 - - [%s] "GET /api/v1/clients/client-ahead/resource HTTP/1.1" 200 512 "-" "client/1.0" key=sk_live_ahed rt=0.020`,
						at.Format("02/Jan/2006:15:04:05 -0700")))
					aheadN++
				}
				if aheadN >= 5 {
					held = false // confirmed
				}
				for i := 0; i < st.after; i++ {
					put(e.benignLine(e.written))
					held = false
				}
				if st.kill {
					p := e.startProcess()
					e.waitCounted(nil, st.counted)
					// Everything read was flushed with the counts: wait for
					// the position the counts came with to settle.
					e.waitPosition(st, size, heldAt)
					p.Process.Signal(syscall.SIGKILL)
					p.Wait()
				} else {
					d := e.start()
					e.waitCounted(d, st.counted)
					e.stop(d)
				}
				if got := e.counted(); got != st.counted {
					t.Fatalf("step %d: counted %d lines, want %d", si, got, st.counted)
				}
				want := size
				if st.readTo == "held" {
					want = heldAt
				}
				if got := e.savedOffset(); got != want {
					t.Fatalf("step %d: saved offset %d, want %d (%s; %d bytes written, the first held line at %d)", si, got, want, st.readTo, size, heldAt)
				}
			}
		})
	}
}

// savedOffset is the saved read position of the path logs/access.log.
func (e *rtEnv) savedOffset() int64 {
	e.t.Helper()
	s, err := detect.Open(e.path("state/spraywatch.db"), detect.StoreOptions{ReadOnly: true})
	if err != nil {
		e.t.Fatal(err)
	}
	defer s.Close()
	pos, err := s.Positions(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	for _, p := range pos {
		if p.Path == e.path("logs/access.log") {
			return p.Offset
		}
	}
	e.t.Fatalf("no saved position for logs/access.log: %+v", pos)
	return 0
}

// waitPosition polls until the saved position is the step's (a kill -9
// must not come before the flush that would save the wrong one), or gives
// up after a while and lets the check that follows report it.
func (e *rtEnv) waitPosition(st heldStep, size, heldAt int64) {
	want := size
	if st.readTo == "held" {
		want = heldAt
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(e.path("state/spraywatch.db")); err == nil && e.savedOffset() == want {
			// One more flush interval: a later flush moving it past
			// would show.
			time.Sleep(200 * time.Millisecond)
			return
		}
	}
}
