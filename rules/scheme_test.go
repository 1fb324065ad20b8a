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

// A log whose credential field holds only a bare scheme prefix
// ("sk_live_", the same for every key) cannot tell keys apart; it must
// still show what a log without credentials shows. Every failure on an
// identity that had succeeded used to count as that identity's stale key
// (the pair of identity and "sk_live_" was remembered at its success), so
// a spray over active clients raised nothing.
func TestSchemeOnlyCredentialHidesNoAttack(t *testing.T) {
	e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
	t0 := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	observe := func(at time.Duration, ip, id string, o ingest.Outcome, status int) {
		ev := ingest.Event{Time: t0.Add(at), Source: "api", IP: netip.MustParseAddr(ip), Identity: id, Credential: "sk_live_",
			SchemeOnly: true, Outcome: o, Status: status, Route: "/api/v1/clients/{identity}/"}
		e.Observe(&ev)
	}
	for i := range 60 { // active clients, each from its own address
		observe(time.Duration(i)*time.Second, fmt.Sprintf("198.51.100.%d", i+1), fmt.Sprintf("client-%04d", i), ingest.Success, 200)
	}
	for i := range 60 { // one address tries them all
		observe(time.Hour+time.Duration(i)*10*time.Second, "203.0.113.66", fmt.Sprintf("client-%04d", i), ingest.Failure, 401)
	}
	e.Finish()
	_, snaps := e.TakeBatch(detect.Batch{})
	var kinds []string
	for _, s := range snaps {
		kinds = append(kinds, s.Kind)
		if s.Kind == detect.KindSpray && s.Attempts == 60 {
			return
		}
	}
	t.Errorf("a spray of 60 active identities with a scheme-only credential raised %v, want a spray of 60 attempts (stale pairs: %d)", kinds, e.Stale)
}
