package rules_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/rules"
)

// A partner scans its own 300 clients every hour from one address with
// one key that works for all of them but 20 suspended ones (403). Once the
// key has worked for many identities, a scan in client order, which begins
// with the suspended ones, is refusals for lack of rights, not a spray.
func TestPartnerKeyScanningItsClients(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 3))
	t0 := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
	ip := netip.MustParseAddr("198.51.100.77")
	var kinds []string
	for hour := range 6 {
		order := rnd.Perm(300)
		if hour > 0 {
			for i := range order {
				order[i] = i // in client order: the suspended ones first
			}
		}
		for n, c := range order {
			ev := ingest.Event{Time: t0.Add(time.Duration(hour)*time.Hour + time.Duration(n)*200*time.Millisecond), Source: "api", IP: ip,
				Identity: fmt.Sprintf("client-%04d", c), Credential: "sk_live_partner", Outcome: ingest.Success, Status: 200,
				Route: "/api/v1/clients/{identity}/"}
			if c < 20 {
				ev.Outcome, ev.Status = ingest.Failure, 403
			}
			e.Observe(&ev)
		}
		_, snaps := e.TakeBatch(detect.Batch{})
		for _, s := range snaps {
			kinds = append(kinds, fmt.Sprintf("hour %d: %s", hour, s.Kind))
		}
	}
	e.Finish()
	_, snaps := e.TakeBatch(detect.Batch{})
	for _, s := range snaps {
		kinds = append(kinds, "at the end: "+s.Kind)
	}
	if len(kinds) > 0 {
		t.Errorf("a partner's scans raised %v", kinds)
	}
}
