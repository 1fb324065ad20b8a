package rules_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/rules"
)

// runLive feeds steps as the daemon does: a wall ticker between lines moves
// event time on every 10 s.
func runLive(t *testing.T, steps []step) []*detect.Incident {
	t.Helper()
	return play(t, rules.DefaultConfig(), nil, steps, true)
}

func totalAttempts(incs []*detect.Incident) (n int64) {
	for _, inc := range incs {
		if inc.Kind != detect.KindCompromise && inc.Kind != detect.KindEnumeration && inc.Kind != detect.KindNoRateLimit {
			n += inc.Attempts
		}
	}
	return n
}

func describe(incs []*detect.Incident) string {
	s := ""
	for _, inc := range incs {
		s += fmt.Sprintf("\n  #%d %s %s attempts=%d identities=%d", inc.ID, inc.Kind, inc.State, inc.Attempts, inc.Identities)
	}
	return s
}

// Attempts one incident reported are never reported again by a later one,
// and replay and live agree across pauses longer than the cooldown.
func TestNoAttemptReportedTwice(t *testing.T) {
	benign := func(from, to time.Duration) []step {
		var s []step
		for m := from; m < to; m += 5 * time.Minute {
			s = append(s, ok(m, "198.51.100.9", fmt.Sprintf("user-%d", m/time.Minute), "sk_live_good"))
		}
		return s
	}
	burst := func(start time.Duration, base int) []step {
		var s []step
		for i := 0; i < 12; i++ {
			s = append(s, fail(start+time.Duration(i)*20*time.Second, fmt.Sprintf("203.0.113.%d", 10+i%4), fmt.Sprintf("v-%03d", base+i), "sk_live_dist"))
		}
		return s
	}
	tests := []struct {
		name     string
		steps    []step
		attempts int64
	}{
		{"a spray, a pause, one more try with its key", concat(spray(0, "203.0.113.66", 20, "sk_live_dead"), benign(5*time.Minute, 125*time.Minute),
			[]step{fail(126*time.Minute, "192.0.2.77", "victim-900", "sk_live_dead")}), 20},
		{"two distributed bursts three hours apart", concat(burst(0, 0), benign(5*time.Minute, 185*time.Minute), burst(3*time.Hour, 100)), 24},
		{"a spray that resumes after the cooldown", concat(spray(0, "203.0.113.66", 20, "sk_live_dead"), spray(2*time.Hour, "203.0.113.66", 1, "sk_live_dead")), 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			replayed, live := runEngine(t, rules.DefaultConfig(), nil, tc.steps), runLive(t, tc.steps)
			if got := totalAttempts(replayed); got > tc.attempts {
				t.Errorf("replay reports %d attempts for %d:%s", got, tc.attempts, describe(replayed))
			}
			if describe(replayed) != describe(live) {
				t.Errorf("replay and live differ:\nreplay:%s\nlive:%s", describe(replayed), describe(live))
			}
		})
	}
}

// A source catching up on an old backlog is judged on its own clock, not
// on a livelier source's.
func TestLaggingSourceOwnClock(t *testing.T) {
	store, err := detect.Open(filepath.Join(t.TempDir(), "t.db"), detect.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
	observe := func(source string, at time.Time, ip, id string, o ingest.Outcome) {
		ev := ingest.Event{Time: at, Source: source, IP: netip.MustParseAddr(ip), Identity: id, Credential: "sk_live_dead", Outcome: o, Status: 401}
		e.Observe(&ev)
	}
	now := t0.Add(2 * time.Hour)
	observe("a", now, "198.51.100.1", "alice", ingest.Success)
	for i := 0; i < 50; i++ {
		observe("b", t0.Add(time.Duration(i)*10*time.Second), "203.0.113.66", fmt.Sprintf("victim-%d", i), ingest.Failure)
		e.TickSource("a", now.Add(time.Duration(i)*time.Second))
	}
	e.Finish()
	if _, err := e.Flush(context.Background(), store, detect.Batch{}); err != nil {
		t.Fatal(err)
	}
	incs, _ := store.Incidents(context.Background(), detect.IncidentFilter{Kind: detect.KindSpray})
	if len(incs) != 1 || incs[0].Kind != detect.KindSpray || incs[0].Attempts != 50 || incs[0].State != detect.StateOpen {
		t.Errorf("want one open spray of 50 attempts on source b's clock, got:%s", describe(incs))
	}
}

// A compromise after its incident closed opens another; the closed one is
// history.
func TestCompromiseAfterClose(t *testing.T) {
	steps := concat(spray(0, "203.0.113.66", 20, "sk_live_dead"),
		[]step{ok(5*time.Minute, "203.0.113.66", "victim-001", "sk_live_dead"),
			ok(2*time.Hour, "203.0.113.66", "victim-002", "sk_live_dead")})
	var compromises []*detect.Incident
	for _, inc := range runLive(t, steps) {
		if inc.Kind == detect.KindCompromise {
			compromises = append(compromises, inc)
		}
	}
	if len(compromises) != 2 || len(compromises[0].Compromised) != 1 || len(compromises[1].Compromised) != 1 {
		t.Fatalf("want two compromises of one identity each, got %+v", compromises)
	}
}
