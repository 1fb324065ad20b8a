package rules_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/rules"
)

// inOrder feeds steps in the order given (as a log holds them, whatever
// their times) to a new engine; live ticks it every 10 s of the latest
// line's time between lines, as the daemon's wall ticker moves event time.
// It returns the last snapshot of every incident and the engine.
func inOrder(t *testing.T, steps []step, live bool) ([]*detect.Incident, *rules.Engine) {
	t.Helper()
	e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
	last := map[int64]detect.Incident{}
	take := func() {
		_, snaps := e.TakeBatch(detect.Batch{})
		for _, s := range snaps {
			last[s.ID] = s
		}
	}
	var prev time.Time
	for i, s := range steps {
		at := t0.Add(s.at)
		// The wall ticker follows the lines in step with the clock (the
		// daemon moves a source's time on from the engine's clock).
		inStep := prev.IsZero() || at.Sub(prev) < 5*time.Minute
		for tick := prev.Add(10 * time.Second); live && inStep && !prev.IsZero() && tick.Before(at); tick = tick.Add(10 * time.Second) {
			e.Tick(tick)
		}
		if inStep && at.After(prev) {
			prev = at
		}
		ev := ingest.Event{Time: at, Source: "api", IP: netip.MustParseAddr(s.ip), Identity: s.id, Credential: s.cred,
			Outcome: s.outcome, Status: s.status, Route: "/api/v1/clients/{identity}/", Pos: ingest.Pos{File: "test.log", Offset: int64(i * 100)}}
		e.Observe(&ev)
		take()
	}
	e.Finish()
	take()
	var out []*detect.Incident
	for id := int64(1); len(out) < len(last); id++ {
		if inc, ok := last[id]; ok {
			out = append(out, &inc)
		}
	}
	return out, e
}

// withLineAt inserts s into steps before index i.
func withLineAt(steps []step, i int, s ...step) []step {
	out := append([]step(nil), steps[:i]...)
	out = append(out, s...)
	return append(out, steps[i:]...)
}

// One line dated 20 hours ahead in the middle of a spray (a host with a
// wrong clock) blinded every rule: the lines after it were late for every
// window and the spray's open incident closed at once. Now the line is
// left out (counted as ahead) and the spray is one incident with all its
// attempts, replayed and live, after one line or a few in a row.
func TestLineDatedAheadInASpray(t *testing.T) {
	attack := spray(0, "203.0.113.66", 40, "sk_live_dead")
	// routine calls before and during the spray
	var steps []step
	for m := -30; m < 10; m++ {
		steps = append(steps, ok(time.Duration(m)*time.Minute, "198.51.100.9", "client-0001", "sk_live_0001"))
	}
	steps = concat(steps, attack)
	sortSteps(steps)
	mid := 0
	for i, s := range steps {
		if s.id == "victim-012" {
			mid = i
		}
	}
	ahead := func(n int) []step {
		var s []step
		for j := range n {
			s = append(s, ok(20*time.Hour+time.Duration(j)*time.Second, "198.51.100.11", "client-0001", "sk_live_0001"))
		}
		return s
	}
	for _, n := range []int{1, 3, 4} {
		for _, live := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d lines, live=%v", n, live), func(t *testing.T) {
				incs, e := inOrder(t, withLineAt(steps, mid, ahead(n)...), live)
				s := ofKind(incs, detect.KindSpray)
				if len(attacks(incs)) != 1 || len(s) != 1 || s[0].Attempts != 40 || s[0].Identities != 40 {
					t.Fatalf("want one spray of 40 attempts, got:%s", describe(incs))
				}
				if s[0].LastSeen.After(t0.Add(time.Hour)) {
					t.Errorf("the spray's last seen is %v: the line dated ahead is in it", s[0].LastSeen)
				}
				if e.Ahead != int64(n) {
					t.Errorf("Ahead = %d, want %d", e.Ahead, n)
				}
			})
		}
	}
	t.Run("a failure dated ahead from the attacking address", func(t *testing.T) {
		incs, e := inOrder(t, withLineAt(steps, mid, fail(20*time.Hour, "203.0.113.66", "victim-900", "sk_live_dead")), false)
		if s := ofKind(incs, detect.KindSpray); len(attacks(incs)) != 1 || len(s) != 1 || s[0].Attempts != 40 || e.Ahead != 1 {
			t.Fatalf("want one spray of 40 attempts and one line ahead (got %d), got:%s", e.Ahead, describe(incs))
		}
	})
}

// The lines after a quiet spell really are the source's time: after five
// of them agree the clock moves on, and nothing is left out. A spray that
// begins the morning after a quiet night is found, an incident from the
// evening before is closed by then, and a sparse source (a line every ten
// minutes) loses no line.
func TestClockMovesOnWhenLinesAgree(t *testing.T) {
	evening := spray(0, "203.0.113.66", 20, "sk_live_dead")
	morning := spray(10*time.Hour, "203.0.113.77", 30, "sk_live_beef")
	for _, live := range []bool{false, true} {
		t.Run(fmt.Sprintf("a quiet night, live=%v", live), func(t *testing.T) {
			incs, e := inOrder(t, concat(evening, morning), live)
			s := ofKind(incs, detect.KindSpray)
			if len(s) != 2 || s[0].Attempts != 20 || s[1].Attempts != 30 || s[0].State != detect.StateClosed || e.Ahead != 0 {
				t.Fatalf("want a closed spray of 20 and one of 30, nothing left out (ahead %d), got:%s", e.Ahead, describe(incs))
			}
		})
	}
	t.Run("a sparse source", func(t *testing.T) {
		var steps []step
		for i := range 30 {
			steps = append(steps, fail(time.Duration(i)*10*time.Minute, fmt.Sprintf("100.80.%d.1", i%5), fmt.Sprintf("victim-%03d", i), "sk_live_510w"))
		}
		incs, e := inOrder(t, steps, false)
		if e.Events != 30 || e.Ahead != 0 {
			t.Errorf("%d events judged, %d left out, want 30 and 0", e.Events, e.Ahead)
		}
		if l := ofKind(incs, detect.KindLowAndSlow); len(l) != 1 || l[0].Attempts != 30 {
			t.Errorf("want one low-and-slow spray of 30 attempts, got:%s", describe(incs))
		}
	})
	t.Run("a log that ends after a gap", func(t *testing.T) {
		steps := concat(spray(0, "203.0.113.66", 20, "sk_live_dead"), []step{
			fail(2*time.Hour, "203.0.113.99", "victim-900", "sk_live_x"), fail(2*time.Hour+time.Second, "203.0.113.99", "victim-901", "sk_live_x")})
		_, e := inOrder(t, steps, false)
		if e.Events != 22 || e.Ahead != 0 {
			t.Errorf("%d events judged, %d left out, want 22 and 0", e.Events, e.Ahead)
		}
	})
}

func sortSteps(steps []step) {
	for i := 1; i < len(steps); i++ {
		for j := i; j > 0 && steps[j].at < steps[j-1].at; j-- {
			steps[j], steps[j-1] = steps[j-1], steps[j]
		}
	}
}
