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

// An address walking identities without any key, on an API that answers
// 404 for unknown identities and 401 for known ones, is seen: the route is
// an existence oracle, and the address's failures on many identities a
// spray. Keyless monitors probing one identity all day (known or not)
// raise no attack.
func TestKeylessEnumeration(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	run := func(evs []ingest.Event) map[string]int {
		e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
		for i := range evs {
			e.Observe(&evs[i])
		}
		e.Finish()
		_, snaps := e.TakeBatch(detect.Batch{})
		kinds := map[string]int{}
		for _, s := range snaps {
			kinds[s.Kind]++
		}
		return kinds
	}
	ev := func(at time.Duration, ip, id string, status int) ingest.Event {
		o := ingest.MissingCredential
		if status == 404 {
			o = ingest.UnknownIdentity
		}
		if status == 200 {
			o = ingest.Success
		}
		cred := ""
		if status == 200 {
			cred = "sk_live_" + id
		}
		return ingest.Event{Time: t0.Add(at), Source: "api", IP: netip.MustParseAddr(ip), Identity: id, Credential: cred,
			Outcome: o, Status: status, Route: "/api/v1/clients/{identity}/"}
	}
	var benign []ingest.Event
	for i := range 200 { // clients with keys
		benign = append(benign, ev(time.Duration(i)*30*time.Second, fmt.Sprintf("198.51.100.%d", i%200+1), fmt.Sprintf("client-%04d", i%50), 200))
	}
	var monitors []ingest.Event
	for i := range 2880 { // a day of keyless probes of a known and of an unknown identity
		monitors = append(monitors, ev(time.Duration(i)*30*time.Second, "192.0.2.10", "client-0001", 401),
			ev(time.Duration(i)*30*time.Second+time.Second, "192.0.2.11", "does-not-exist", 404))
	}
	// (They do show the oracle: the finding is the API's, not theirs.)
	got := run(append(append([]ingest.Event(nil), benign...), monitors...))
	delete(got, detect.KindEnumeration)
	if len(got) != 0 {
		t.Errorf("keyless monitors raised %v", got)
	}
	walk := append([]ingest.Event(nil), benign...)
	for i := range 500 { // one a second: 1 in 10 exists
		status := 404
		if i%10 == 0 {
			status = 401
		}
		walk = append(walk, ev(time.Hour+time.Duration(i)*time.Second, "203.0.113.66", fmt.Sprintf("client-%04d", i), status))
	}
	got = run(walk)
	if got[detect.KindEnumeration] != 1 || got[detect.KindSpray] != 1 {
		t.Errorf("a keyless walk of 500 identities raised %v, want an enumeration_oracle and a spray", got)
	}
}
