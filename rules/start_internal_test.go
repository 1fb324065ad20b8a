package rules

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/ingest/loggen"
)

// The memo of quiet networks only skips judgements that would raise
// nothing: weeks of generated traffic (stuffing over a /24 among them),
// and networks of clients retrying dead keys with stuffing runs from
// inside those networks at random times, give the same incidents, with the
// same counts and the same second raised, with it and without it.
func TestQuietNetworksChangeNoIncident(t *testing.T) {
	base := uint64(time.Now().UnixNano())
	t.Logf("seed %d", base)
	for i := range uint64(1) {
		seed := base + i
		rnd := rand.New(rand.NewPCG(seed, 9))
		o := loggen.WeekOptions{Seed: seed, Lines: 20_000 + rnd.IntN(20_000), Clients: 200 + rnd.IntN(1000),
			Format: loggen.WeekFormats[rnd.IntN(len(loggen.WeekFormats))], Duration: time.Duration(2+rnd.IntN(3)) * 24 * time.Hour}
		quietNets = false
		without := judgeBounded(t, o, true)
		quietNets = true
		with := judgeBounded(t, o, true)
		if with != without {
			t.Errorf("seed %d (%+v): with the memo\n%s\nwithout\n%s", seed, o, with, without)
		}
	}
	for i := range uint64(4) {
		rnd := rand.New(rand.NewPCG(base+i, 10))
		evs := retryingNetworks(rnd)
		run := func(memo bool) string {
			quietNets = memo
			defer func() { quietNets = true }()
			e := NewEngine(Options{Config: DefaultConfig()})
			last := map[int64]detect.Incident{}
			for i := range evs {
				e.Observe(&evs[i])
				if i%1000 == 0 || i == len(evs)-1 {
					_, snaps := e.TakeBatch(detect.Batch{})
					for _, s := range snaps {
						last[s.ID] = s
					}
				}
			}
			out := ""
			for id := int64(1); id < e.nextID; id++ {
				if inc, ok := last[id]; ok {
					out += fmt.Sprintf("%d %s %s attempts %d identities %d ips %d raised %v\n", inc.ID, inc.Kind, inc.Group, inc.Attempts, inc.Identities, len(inc.IPs), inc.Raised)
				}
			}
			return out
		}
		with, without := run(true), run(false)
		if with != without {
			t.Errorf("seed %d: with the memo\n%s\nwithout\n%s", base+i, with, without)
		}
		if without == "" {
			t.Errorf("seed %d: no incident at all", base+i)
		}
	}
}

// retryingNetworks: three /24s of 15 to 25 clients each retrying a dead key
// of their own every 5 to 40 s for two hours, some succeeding now and then
// with another key; into each, at a random time, a stuffing run from a few
// of its addresses (a pair a second or slower), in the first big enough to
// be raised, in the others sometimes too small.
func retryingNetworks(r *rand.Rand) []ingest.Event {
	t0 := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	d := 2 * time.Hour
	var evs []ingest.Event
	add := func(at time.Duration, ip netip.Addr, ident, cred string, out ingest.Outcome) {
		evs = append(evs, ingest.Event{Time: t0.Add(at), Source: "api", IP: ip, Identity: ident, Credential: cred, Outcome: out, Status: 401, Route: "/r"})
	}
	for n := range 3 {
		clients := 15 + r.IntN(11)
		for c := range clients {
			ip := netip.AddrFrom4([4]byte{198, 51, byte(100 + n), byte(c + 1)})
			ident := fmt.Sprintf("etl-%d-%02d", n, c)
			lucky := r.IntN(4) == 0
			for at := time.Duration(r.IntN(30)) * time.Second; at < d; at += time.Duration(5+r.IntN(36)) * time.Second {
				if lucky && r.IntN(20) == 0 {
					add(at, ip, ident, "sk_live_ok"+ident, ingest.Success)
				} else {
					add(at, ip, ident, "sk_live_dead"+ident, ingest.Failure)
				}
			}
		}
		start := time.Duration(r.Int64N(int64(d - 30*time.Minute)))
		pairs := 5 + r.IntN(40)
		if n == 0 {
			pairs = 30 + r.IntN(30) // outnumbering the network's clients: raised
		}
		step := time.Duration(1+r.IntN(20)) * time.Second
		for p := range pairs {
			ip := netip.AddrFrom4([4]byte{198, 51, byte(100 + n), byte(200 + p%3)})
			add(start+time.Duration(p)*step, ip, fmt.Sprintf("victim-%d-%03d", n, p), fmt.Sprintf("sk_live_leak%d%03d", n, p), ingest.Failure)
		}
	}
	slices.SortStableFunc(evs, func(a, b ingest.Event) int { return a.Time.Compare(b.Time) })
	return evs
}
