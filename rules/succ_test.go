package rules

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// oldSuccesses is how the engine kept successes before a record learned to
// spare its network's lookup: both maps written on every success, swept
// whole on every prune. It is the reference of TestSuccessRecordsModel.
type oldSuccesses struct {
	from     map[uint64]success
	net      map[uint64]int64
	pairs    map[uint64]int64
	pairsCut uint32
}

func (o *oldSuccesses) remember(source, identity string, ip netip.Addr, net netip.Prefix, t int64, cred string) {
	if identity == "" {
		return
	}
	if len(o.from) > succCap {
		clear(o.from)
	}
	if len(o.net) > succCap {
		clear(o.net)
	}
	k := succOf(source, identity, ip, netip.Prefix{})
	sp, ok := o.from[k]
	if ok {
		sp.last = max(sp.last, t)
		sp.first = min(sp.first, t)
	} else {
		sp = success{first: t, last: t}
	}
	if cred != "" {
		if ch := maphash.String(pairSeed, cred); !ok || sp.cred != ch || sp.pairsCut != o.pairsCut {
			if pair := pairOf(source, identity, cred); !o.hasPair(pair) {
				o.pairs[pair] = t
			}
			sp.cred, sp.pairsCut = ch, o.pairsCut
		}
	}
	o.from[k] = sp
	n := succOf(source, identity, netip.Addr{}, net)
	o.net[n] = max(o.net[n], t)
}

func (o *oldSuccesses) hasPair(k uint64) bool {
	_, ok := o.pairs[k]
	return ok
}

func (o *oldSuccesses) sweep(stale int64) {
	for k, t := range o.pairs {
		if t < stale {
			delete(o.pairs, k)
			o.pairsCut++
		}
	}
	for k, sp := range o.from {
		if sp.last < stale {
			delete(o.from, k)
		}
	}
	for k, t := range o.net {
		if t < stale {
			delete(o.net, k)
		}
	}
}

// TestSuccessRecordsModel runs random successes, stale sweeps, clears and
// reloads that change the network size through the engine's success
// records, and after every step compares what detection reads of them
// (which records, networks and pairs exist; a record's first and last
// success; the pairs' times and cut count) with the old way of keeping
// them. Every few steps it also compares the networks' times, once the
// records have written theirs (syncNets). Times go mostly forward, at
// times back (sources merged out of order) and at times weeks ahead, so
// that sweeps drop records, networks and pairs.
func TestSuccessRecordsModel(t *testing.T) {
	defer func(c int) { succCap = c }(succCap)
	seeds := []uint64{1, 2, 3, 4, 5, 6, 7, 8}
	seeds = append(seeds, uint64(time.Now().UnixNano()))
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 11))
			// Half the seeds clear often, half keep records for long.
			idents := 25
			succCap = 40
			if seed%2 == 0 {
				succCap, idents = 1<<20, 6
			}
			cfg := DefaultConfig()
			e := NewEngine(Options{Config: cfg})
			old := &oldSuccesses{from: map[uint64]success{}, net: map[uint64]int64{}, pairs: map[uint64]int64{}}
			var ips []netip.Addr
			for i := range 30 {
				ips = append(ips, netip.AddrFrom4([4]byte{10, byte(i % 3), byte(i % 5), byte(i)}))
			}
			ips = append(ips, netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2:1"))
			now, watermark := int64(-3600), int64(-3600) // before 1970 too
			for step := range 4000 {
				what := fmt.Sprintf("seed %d step %d", seed, step)
				switch x := r.IntN(100); {
				case x < 85:
					switch y := r.IntN(100); {
					case y < 3:
						now += int64(r.IntN(40 * 24 * 3600)) // weeks ahead
					case y < 6:
						now -= int64(r.IntN(35 * 24 * 3600)) // a source far behind
					case y < 15:
						now -= int64(r.IntN(7200)) // out of order
					default:
						now += int64(r.IntN(600))
					}
					watermark = max(watermark, now)
					src := []string{"api", "web"}[r.IntN(2)]
					id := fmt.Sprint("client-", r.IntN(idents))
					if r.IntN(20) == 0 {
						id = ""
					}
					cred := []string{"", "K1", "K2", "K3"}[r.IntN(4)]
					ip := ips[r.IntN(len(ips))]
					net := e.win.NetOf(ip)
					e.rememberSuccess(src, id, ip, net, now, cred)
					old.remember(src, id, ip, net, now, cred)
				case x < 97:
					stale := watermark - int64(pairMemory/time.Second)
					e.dropStale(stale)
					old.sweep(stale)
				default:
					c := cfg
					c.Stuffing.NetBitsV4 = []int{16, 24, 28}[r.IntN(3)]
					e.SetConfig(c, nil)
				}
				compareSuccesses(t, what, e, old, step%7 == 0)
				if t.Failed() {
					t.Fatalf("seed %d: failed at step %d", seed, step)
				}
			}
		})
	}
}

func compareSuccesses(t *testing.T, what string, e *Engine, old *oldSuccesses, times bool) {
	t.Helper()
	if len(e.succFrom) != len(old.from) || len(e.succNet) != len(old.net) || len(e.pairs) != len(old.pairs) {
		t.Errorf("%s: %d records, %d networks, %d pairs; want %d, %d, %d", what,
			len(e.succFrom), len(e.succNet), len(e.pairs), len(old.from), len(old.net), len(old.pairs))
	}
	for k, want := range old.from {
		got, ok := e.succFrom[k]
		if !ok || got.first != want.first || got.last != want.last {
			t.Errorf("%s: record %x = %+v (%v), want first %d last %d", what, k, got, ok, want.first, want.last)
		}
	}
	for k, want := range old.pairs {
		if got, ok := e.pairs[k]; !ok || got != want {
			t.Errorf("%s: pair %x = %d (%v), want %d", what, k, got, ok, want)
		}
	}
	if e.pairsCut != old.pairsCut {
		t.Errorf("%s: pairsCut %d, want %d", what, e.pairsCut, old.pairsCut)
	}
	if times {
		e.syncNets()
	}
	for k, want := range old.net {
		got, ok := e.succNet[k]
		if !ok || times && got != want {
			t.Errorf("%s: network %x = %d (%v), want %d", what, k, got, ok, want)
		}
	}
}

// TestSuccessHashesTellKeysApart hashes keys that differ in one field only
// (text moved between source and identity, an IPv4 address and its IPv6
// form, zones, no address, networks of other sizes, pairs with the
// strings shifted) and wants no two alike.
func TestSuccessHashesTellKeysApart(t *testing.T) {
	addrs := []netip.Addr{{}, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("::ffff:10.0.0.1"), netip.MustParseAddr("::"),
		netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("fe80::1"), netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("fe80::1%eth1"),
		netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::100")}
	nets := []netip.Prefix{{}}
	for _, a := range addrs[1:] {
		for _, b := range []int{0, 8, 16, 24, 32} {
			if p, err := a.WithZone("").Prefix(b); err == nil && !slices.Contains(nets, p) {
				nets = append(nets, p)
			}
		}
	}
	texts := [][2]string{{"api", "client-1"}, {"apic", "lient-1"}, {"", "apiclient-1"}, {"apiclient-1", ""}, {"api", "client-2"}, {"web", "client-1"}}
	seen := map[uint64]string{}
	add := func(h uint64, what string) {
		if prev, ok := seen[h]; ok {
			t.Fatalf("%s hashes as %s", what, prev)
		}
		seen[h] = what
	}
	for _, tx := range texts {
		for _, a := range addrs {
			for _, n := range nets {
				add(succOf(tx[0], tx[1], a, n), fmt.Sprintf("succ %q %v %v", tx, a, n))
			}
		}
		for _, c := range []string{"", "K", "client-1", "1"} {
			add(pairOf(tx[0], tx[1], c), fmt.Sprintf("pair %q %q", tx, c))
		}
	}
}
