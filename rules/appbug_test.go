package rules_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/rules"
)

// An app release sends client_id "undefined" once a session with each
// phone's own key, from the phone's address of the moment (a carrier's
// CGNAT pool): 200 keys fail on one identity. That is each owner's client,
// not a brute force, and the phones' own successes are no compromise.
func TestAppSendingAWrongIdentityWithItsOwnKey(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 5))
	t0 := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	var evs []ingest.Event
	for u := range 600 {
		id, key := fmt.Sprintf("m-%04d", u), fmt.Sprintf("sk_live_m%04d", u)
		buggy := u%3 == 0
		for d := range 3 {
			for range 3 {
				at := time.Duration(d)*24*time.Hour + time.Duration(6*3600+rnd.IntN(17*3600))*time.Second
				ip := netip.AddrFrom4([4]byte{100, 64, byte(10 * (1 + rnd.IntN(3))), byte(1 + rnd.IntN(254))})
				for range 2 + rnd.IntN(7) {
					evs = append(evs, ingest.Event{Time: t0.Add(at), Source: "api", IP: ip, Identity: id, Credential: key,
						Outcome: ingest.Success, Status: 200, Route: "/api/v1/clients/{identity}/"})
					at += time.Duration(10+rnd.IntN(110)) * time.Second
				}
				if buggy {
					evs = append(evs, ingest.Event{Time: t0.Add(at), Source: "api", IP: ip, Identity: "undefined", Credential: key,
						Outcome: ingest.Failure, Status: 401, Route: "/api/v1/clients/{identity}/"})
				}
			}
		}
	}
	sortEvents(evs)
	e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
	for i := range evs {
		e.Observe(&evs[i])
	}
	e.Finish()
	_, snaps := e.TakeBatch(detect.Batch{})
	for _, s := range snaps {
		t.Errorf("raised %s %s: %s", s.Kind, s.Group, s.Summary)
	}
}

func sortEvents(evs []ingest.Event) {
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
}
