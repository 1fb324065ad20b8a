package rules_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/rules"
)

// TestStaleKeyPairForgotten checks that a pair dropped from stale-key memory
// (30 days after its first success) is remembered again by its next success,
// though its address's success record last saw the same pair: the record
// spares the lookup only while no pair has been dropped.
func TestStaleKeyPairForgotten(t *testing.T) {
	day := 24 * time.Hour
	home, away := "198.51.100.7", "203.0.113.9"
	cases := []struct {
		name  string
		steps []step
		stale int64
	}{
		{"remembered", []step{ok(0, home, "u", "K"), fail(time.Hour, away, "u", "K")}, 1},
		{"forgotten after 30 days", []step{ok(0, home, "u", "K"), ok(31*day, home, "u", "K"), fail(31*day+2*time.Minute, away, "u", "K")}, 0},
		{"remembered again", []step{ok(0, home, "u", "K"), ok(31*day, home, "u", "K"), ok(31*day+time.Minute, home, "u", "K"),
			fail(31*day+2*time.Minute, away, "u", "K")}, 1},
		{"another key from the same address", []step{ok(0, home, "u", "K"), ok(time.Minute, home, "u", "L"),
			fail(time.Hour, away, "u", "L"), fail(time.Hour, away, "u", "K")}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
			for _, s := range c.steps {
				ev := ingest.Event{Time: t0.Add(s.at), Source: "api", IP: netip.MustParseAddr(s.ip), Identity: s.id, Credential: s.cred,
					Outcome: s.outcome, Status: s.status}
				e.Observe(&ev)
			}
			e.Finish() // a line an hour after the last is held until the input ends
			if e.Stale != c.stale {
				t.Errorf("stale failures = %d, want %d", e.Stale, c.stale)
			}
		})
	}
}
