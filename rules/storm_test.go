package rules_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/rules"
)

// stormEvents: a botnet of nets /24 networks, three addresses in each, every
// address trying six identities once with a key of their own, all within
// ten minutes: too little for any address on its own, credential stuffing
// in every network. With benign traffic from elsewhere in between.
func stormEvents(nets int, route string) []ingest.Event {
	start := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	var evs []ingest.Event
	n := 0
	for round := 0; round < 6; round++ {
		for net := 0; net < nets; net++ {
			for host := 1; host <= 3; host++ {
				n++
				t := start.Add(time.Duration(n) * 10 * time.Minute / time.Duration(nets*18))
				id := fmt.Sprintf("user-%d-%d-%d", net, host, round)
				evs = append(evs, ingest.Event{Time: t, Source: "api", IP: netip.AddrFrom4([4]byte{100, 64 + byte(net/250), byte(net % 250), byte(host)}),
					Identity: id, Credential: "sk_live_" + id, Outcome: ingest.Failure, Status: 401, Route: route,
					Pos: ingest.Pos{File: "access.log", Offset: int64(n) * 100}})
				if n%7 == 0 {
					evs = append(evs, ingest.Event{Time: t, Source: "api", IP: netip.AddrFrom4([4]byte{198, 18, 0, byte(n%20 + 1)}),
						Identity: fmt.Sprintf("client-%02d", n%20), Credential: fmt.Sprintf("sk_live_c%02d", n%20), Outcome: ingest.Success, Status: 200, Route: route})
				}
			}
		}
	}
	return evs
}

func stuffing(incs []*detect.Incident) []*detect.Incident {
	var out []*detect.Incident
	for _, inc := range incs {
		if inc.Kind == detect.KindStuffing {
			out = append(out, inc)
		}
	}
	return out
}

// A botnet spread over many networks is one credential_stuffing incident
// with a storm summary, not one per network; every attempt is in it.
func TestStuffingStormIsOneIncident(t *testing.T) {
	for _, nets := range []int{1, 2, 40, 300} {
		t.Run(fmt.Sprintf("%d networks", nets), func(t *testing.T) {
			evs := stormEvents(nets, "/api/v1/clients/{identity}/")
			incs := judgeAll(t, evs)
			got := stuffing(incs)
			if len(got) != 1 {
				var groups []string
				for _, inc := range got {
					groups = append(groups, inc.Group)
				}
				t.Fatalf("%d credential_stuffing incidents (%v), want 1", len(got), groups[:min(len(groups), 5)])
			}
			inc := got[0]
			if want := int64(nets * 18); inc.Attempts != want || inc.Identities != nets*18 || len(inc.IPs) != nets*3 {
				t.Errorf("the storm incident has %d attempts, %d identities, %d addresses; want %d, %d, %d", inc.Attempts, inc.Identities, len(inc.IPs), want, nets*18, nets*3)
			}
			storm := fmt.Sprintf("a storm from %d networks", nets)
			if nets > 1 && !strings.Contains(inc.Summary, storm) || nets == 1 && strings.Contains(inc.Summary, "storm") {
				t.Errorf("summary %q; want it to say %q only for more than one network", inc.Summary, storm)
			}
			for _, inc := range incs {
				if inc.Kind != detect.KindStuffing && inc.Kind != detect.KindNoRateLimit {
					t.Errorf("unexpected %s incident %s: %s", inc.Kind, inc.Group, inc.Summary)
				}
			}
		})
	}
}

// Two botnets on different routes are two attacks.
func TestStuffingStormsOnTwoRoutes(t *testing.T) {
	a, b := stormEvents(5, "/api/v1/clients/{identity}/"), stormEvents(5, "/api/v1/login")
	for i := range b {
		b[i].IP = netip.AddrFrom4([4]byte{100, 100, b[i].IP.As4()[2], b[i].IP.As4()[3]})
		b[i].Identity, b[i].Credential = "b-"+b[i].Identity, "b-"+b[i].Credential
		b[i].Time = b[i].Time.Add(time.Second)
	}
	var evs []ingest.Event
	for i := range a {
		evs = append(evs, a[i], b[i])
	}
	incs := judgeAll(t, evs)
	if got := stuffing(incs); len(got) != 2 || got[0].Attempts != 90 || got[1].Attempts != 90 {
		t.Fatalf("got %d credential_stuffing incidents, want 2 of 90 attempts each: %+v", len(got), got)
	}
}

// A daemon restarted in the middle of a storm goes on with the same
// incident: the networks that had joined it are open again, and new ones
// join it.
func TestStuffingStormAcrossRestart(t *testing.T) {
	evs := stormEvents(40, "/api/v1/clients/{identity}/")
	ctx := context.Background()
	whole := openStore(t)
	e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
	for i := range evs {
		e.Observe(&evs[i])
	}
	e.Finish()
	if _, err := e.Flush(ctx, whole, detect.Batch{}); err != nil {
		t.Fatal(err)
	}
	attacks := func(s *detect.Store) []incidentSummary { return summaries(t, s) }
	want := attacks(whole)
	if len(want) != 2 || want[0].Kind != detect.KindStuffing || want[1].Kind != detect.KindNoRateLimit {
		t.Fatalf("the uninterrupted run raised %+v, want one credential_stuffing incident and its no_rate_limit finding", want)
	}
	for _, cut := range []int{len(evs) / 3, len(evs) / 2, len(evs) * 5 / 6} {
		t.Run(fmt.Sprintf("cut at %d", cut), func(t *testing.T) {
			s := judgeWithRestart(t, evs, cut)
			if got := attacks(s); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("after a restart:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}
