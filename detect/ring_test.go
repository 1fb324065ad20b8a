package detect_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
)

// TestRingModel checks a group's entries, held in a ring that grows when
// full and shrinks when mostly empty, against a slice per group: a few
// groups take bursts of hundreds of entries in a minute (distinct
// identities, which do not merge), steady entries and late ones, and are
// pruned at random, so that their rings wrap, grow, shrink and empty many
// times. After every prune every group's entries are compared in order.
func TestRingModel(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4, 5, 6, 7, 8, uint64(time.Now().UnixNano())}
	t.Logf("seeds 1-8 and %d", seeds[len(seeds)-1])
	for _, seed := range seeds {
		r := rand.New(rand.NewPCG(seed, 0x51ed2701))
		var o detect.WindowOptions
		o.Retain = [4]int64{10, 4, 30, 6}
		w := detect.NewWindows(o)
		m := map[detect.GroupKey][]detect.Entry{}
		entries, clock := 0, int64(5000)
		ips := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::1")}
		for step := 0; step < 4000; step++ {
			if r.IntN(20) == 0 {
				clock += int64(r.IntN(4))
			}
			burst := 1
			if r.IntN(50) == 0 {
				burst = 50 + r.IntN(400)
			}
			ip := ips[r.IntN(len(ips))]
			minute := clock - int64(r.IntN(2)*r.IntN(12)) // some arrive late
			for b := range burst {
				e := detect.Entry{Minute: minute, IP: ip, Identity: fmt.Sprint("id", r.IntN(8)), Credential: fmt.Sprint("k", r.IntN(3)),
					Outcome: ingest.Failure, Count: 1, Pos: ingest.Pos{File: "access.log", Offset: int64(step)*1000 + int64(b)}}
				if burst > 1 {
					e.Identity = fmt.Sprint("burst", b)
				}
				if r.IntN(6) == 0 {
					e.Outcome = ingest.Success
				}
				for _, k := range []detect.GroupKey{
					{Grouping: detect.ByIP, Source: "a", IP: ip},
					{Grouping: detect.ByNet, Source: "a", Net: w.NetOf(ip)},
					{Grouping: detect.ByCredential, Source: "a", Value: e.Credential},
				} {
					w.Add(k, e)
					es := m[k]
					merged := false
					for i, n := len(es)-1, 0; i >= 0 && n < 4; i, n = i-1, n+1 {
						x := &es[i]
						if x.Minute == e.Minute && x.IP == e.IP && x.Identity == e.Identity && x.Credential == e.Credential && x.Outcome == e.Outcome {
							x.Count += e.Count
							merged = true
							break
						}
					}
					if !merged {
						es = append(es, e)
						entries++
					}
					m[k] = es
				}
			}
			if r.IntN(3) == 0 {
				w.TakeDirty()
			}
			if r.IntN(7) == 0 {
				w.TakeDirty() // a dirty group left empty stays tracked
				w.Prune(func(string) int64 { return clock }, nil)
				for k, es := range m {
					cut := clock - o.Retain[k.Grouping]
					i := 0
					for i < len(es) && es[i].Minute < cut {
						i++
					}
					entries -= i
					if es = es[i:]; len(es) == 0 {
						delete(m, k)
					} else {
						m[k] = es
					}
				}
				compareWindows(t, seed, step, w, m, entries)
			}
		}
	}
}
