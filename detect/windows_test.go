package detect_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
)

func TestWindows(t *testing.T) {
	var o detect.WindowOptions
	o.Retain[detect.ByIP] = 60
	w := detect.NewWindows(o)
	k := detect.GroupKey{Grouping: detect.ByIP, Source: "api", IP: netip.MustParseAddr("203.0.113.7")}
	entry := func(minute int64, id string, out ingest.Outcome) detect.Entry {
		return detect.Entry{Minute: minute, IP: k.IP, Identity: id, Outcome: out, Count: 1}
	}
	// Steady traffic collapses to one entry a minute and never marks dirty.
	for i := 0; i < 5; i++ {
		w.Add(k, entry(100, "c1", ingest.Success))
	}
	g := w.Get(k)
	if g.Len() != 1 || g.At(0).Count != 5 {
		t.Fatalf("%d entries, the first %+v; want one with count 5", g.Len(), g.At(0))
	}
	if d := w.TakeDirty(); len(d) != 0 {
		t.Errorf("successes marked %d groups dirty", len(d))
	}
	w.Add(k, entry(101, "c2", ingest.Failure))
	w.Add(k, entry(130, "c3", ingest.Failure))
	if d := w.TakeDirty(); len(d) != 1 || g.Attempts != 2 {
		t.Errorf("dirty %d, attempts %d; want 1 and 2", len(d), g.Attempts)
	}
	w.Prune(func(string) int64 { return 161 }, nil) // keeps minutes >= 101
	if g.Len() != 2 || g.Attempts != 2 {
		t.Errorf("after prune to 101: %d entries, %d attempts; want 2 and 2", g.Len(), g.Attempts)
	}
	w.Prune(func(string) int64 { return 185 }, nil) // keeps minutes >= 125
	if g.Len() != 1 || g.Attempts != 1 {
		t.Errorf("after prune to 125: %d entries, %d attempts; want 1 and 1", g.Len(), g.Attempts)
	}
	w.Prune(func(string) int64 { return 500 }, nil)
	if w.Get(k) != nil {
		t.Error("an empty group was kept")
	}
	if got := w.NetOf(netip.MustParseAddr("203.0.113.7")); got.String() != "203.0.113.0/24" {
		t.Errorf("NetOf = %s", got)
	}
}

// TestPruneModel checks Prune, which visits only the groups whose oldest
// entry expired, against a model that walks every group, on random adds
// from two sources with their own clocks, late entries, caps and kept
// groups.
func TestPruneModel(t *testing.T) {
	for seed := uint64(1); seed <= 200; seed++ {
		r := rand.New(rand.NewPCG(seed, 0x9e3779b9))
		var o detect.WindowOptions
		o.Retain = [4]int64{10, 15, 60, 5}
		if seed%3 == 0 {
			o.MaxEntries = 40 + r.IntN(40)
		}
		w := detect.NewWindows(o)
		if seed%5 == 0 {
			// Few hash values: groups are found through colliding keys.
			detect.SetGroupHash(w, func(k detect.GroupKey) uint64 { return k.Hash() % 7 })
		}
		m := map[detect.GroupKey][]detect.Entry{}
		sources := []string{"a", "b"}
		clock := map[string]int64{"a": 1000, "b": 900}
		kept := map[detect.GroupKey]bool{}
		entries := 0
		// Half the seeds are a flood: many groups, many in one minute.
		hosts, values, ticks := 8, 6, 1
		if seed%2 == 0 {
			hosts, values, ticks = 250, 100, 8
		}
		for step := 0; step < 600; step++ {
			src := sources[r.IntN(2)]
			if r.IntN(ticks) == 0 {
				clock[src] += int64(r.IntN(3))
			}
			minute := clock[src] - int64(r.IntN(4)) // some arrive late
			ip := netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(3)), byte(r.IntN(hosts))})
			switch r.IntN(8) {
			case 0: // the same address, mapped: another address
				ip = netip.AddrFrom16(ip.As16())
			case 1:
				// Few addresses, told apart by their zones only.
				ip = netip.AddrFrom16([16]byte{0xfe, 0x80, 15: byte(r.IntN(2))})
				if z := r.IntN(3); z > 0 {
					ip = ip.WithZone(fmt.Sprint("eth", z))
				}
			case 2:
				ip = netip.Addr{}
			}
			e := detect.Entry{Minute: minute, IP: ip,
				Identity: fmt.Sprint("id", r.IntN(values)), Credential: fmt.Sprint("k", r.IntN(values/2)), Outcome: ingest.Failure, Count: 1,
				Pos:      ingest.Pos{File: fmt.Sprint("access.log.", r.IntN(3)), Inode: uint64(r.IntN(3)), Offset: int64(step) * 100},
				FirstSec: uint8(r.IntN(60))}
			e.LastSec = e.FirstSec
			switch r.IntN(8) {
			case 0:
				e.Outcome = ingest.Success
			case 1:
				e.Identity = ""
			case 2:
				e.Credential, e.Pos.Node = "", "node-b"
			case 3:
				e.Stale = true
			}
			g := detect.Grouping(r.IntN(4))
			k := detect.GroupKey{Grouping: g, Source: src}
			switch g {
			case detect.ByIP:
				k.IP = ip
			case detect.ByNet:
				k.Net = w.NetOf(ip)
			case detect.ByCredential:
				k.Value = e.Credential
			default:
				k.Value = e.Identity
			}
			// The model: merge into one of the last four entries, else
			// append unless the cap is reached.
			var got *detect.Group
			if r.IntN(2) == 0 {
				got = w.Add(k, e)
			} else {
				// Prefetch reads the index and groups only, whatever is
				// there; AddHashed is Add.
				h := w.HashOf(k)
				w.Prefetch(h, w.HashOf(detect.GroupKey{Grouping: detect.ByIP, Source: src, IP: ip}), uint64(r.Uint32())<<32)
				got = w.AddHashed(k, h, e)
			}
			es, had := m[k]
			full := o.MaxEntries > 0 && entries >= o.MaxEntries
			merged := false
			for i, n := len(es)-1, 0; i >= 0 && n < 4; i, n = i-1, n+1 {
				x := &es[i]
				if x.Minute == e.Minute && x.IP == e.IP && x.Identity == e.Identity && x.Credential == e.Credential && x.Outcome == e.Outcome && x.Stale == e.Stale {
					x.Count += e.Count
					x.FirstSec, x.LastSec = min(x.FirstSec, e.FirstSec), max(x.LastSec, e.LastSec)
					merged = true
					break
				}
			}
			switch {
			case !had && full:
				if got != nil {
					t.Fatalf("seed %d step %d: a new group was tracked past the entry cap", seed, step)
				}
				continue
			case !merged && !full:
				es = append(es, e)
				entries++
			}
			m[k] = es
			w.TakeDirty()
			if r.IntN(5) == 0 {
				kept[k] = r.IntN(2) == 0
			}
			if r.IntN(10) == 0 {
				now := func(s string) int64 { return clock[s] }
				keep := func(g *detect.Group) bool { return kept[g.Key()] }
				w.Prune(now, keep)
				for k, es := range m {
					cut := clock[k.Source] - o.Retain[k.Grouping]
					i := 0
					for i < len(es) && es[i].Minute < cut {
						i++
					}
					if i == 0 {
						continue
					}
					entries -= i
					es = es[i:]
					m[k] = es
					if len(es) == 0 && !kept[k] {
						delete(m, k)
					}
				}
				compareWindows(t, seed, step, w, m, entries)
			}
		}
	}
}

func compareWindows(t *testing.T, seed uint64, step int, w *detect.Windows, m map[detect.GroupKey][]detect.Entry, entries int) {
	t.Helper()
	if w.Entries() != entries {
		t.Fatalf("seed %d step %d: %d entries, model %d", seed, step, w.Entries(), entries)
	}
	var n [4]int
	strs := map[string]bool{} // the distinct strings retained entries hold
	held := 0                 // and how many times they hold one
	for k, es := range m {
		n[k.Grouping]++
		g := w.Get(k)
		if g == nil {
			t.Fatalf("seed %d step %d: group %s lost", seed, step, k)
		}
		var attempts int64
		for _, e := range es {
			if e.Outcome.Attempt() && !e.Stale {
				attempts += int64(e.Count)
			}
		}
		if g.Len() != len(es) || g.Attempts != attempts {
			t.Fatalf("seed %d step %d: group %s has %d entries, %d attempts; model %d, %d", seed, step, k, g.Len(), g.Attempts, len(es), attempts)
		}
		for i := range es {
			if got := g.At(i); got != es[i] || g.Minute(i) != es[i].Minute {
				t.Fatalf("seed %d step %d: group %s entry %d = %+v, model %+v", seed, step, k, i, got, es[i])
			}
			for _, s := range []string{es[i].Identity, es[i].Credential, es[i].Pos.File, es[i].Pos.Node, es[i].IP.Zone()} {
				if s != "" {
					strs[s] = true
					held++
				}
			}
		}
	}
	if w.Len() != n {
		t.Fatalf("seed %d step %d: groups %v, model %v", seed, step, w.Len(), n)
	}
	// Entries of different groups share symbols; none outlives its entries.
	if w.Strings() < len(strs) || w.Strings() > held {
		t.Fatalf("seed %d step %d: %d symbols for %d distinct strings held %d times", seed, step, w.Strings(), len(strs), held)
	}
}

// Keys that differ in any field hash differently; equal keys alike.
func TestGroupKeyHash(t *testing.T) {
	a4, a6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	keys := []detect.GroupKey{
		{Grouping: detect.ByIP, Source: "api", IP: a4},
		{Grouping: detect.ByIP, Source: "api2", IP: a4},
		{Grouping: detect.ByIP, Source: "api", IP: netip.AddrFrom16(a4.As16())}, // ::ffff:192.0.2.1
		{Grouping: detect.ByIP, Source: "api", IP: a6},
		{Grouping: detect.ByIP, Source: "api", IP: a6.WithZone("eth0")},
		{Grouping: detect.ByIP, Source: "api"},
		{Grouping: detect.ByNet, Source: "api", Net: netip.PrefixFrom(a4, 24).Masked()},
		{Grouping: detect.ByNet, Source: "api", Net: netip.PrefixFrom(a4, 16).Masked()},
		{Grouping: detect.ByNet, Source: "api", Net: netip.PrefixFrom(a6, 64).Masked()},
		{Grouping: detect.ByCredential, Source: "api", Value: "sk_live_1"},
		{Grouping: detect.ByIdentity, Source: "api", Value: "sk_live_1"},
		{Grouping: detect.ByIdentity, Source: "api", Value: ""},
		{Grouping: detect.ByIdentity, Source: "", Value: "api"},
	}
	seen := map[uint64]detect.GroupKey{}
	for _, k := range keys {
		h := k.Hash()
		if o, ok := seen[h]; ok {
			t.Errorf("%+v and %+v hash alike", k, o)
		}
		seen[h] = k
		c := k
		c.Source = string([]byte(k.Source)) // equal, not the same bytes
		if c.Hash() != h {
			t.Errorf("equal keys %+v hash differently", k)
		}
	}
}

// An entry keeps its events' first and last second through merges, and
// is stored in 64 bytes (a cache line) without pointers: a flood retains
// max_entries of them. A group in the slab is 192 bytes, three lines: its
// header, its first entry, its key; a compact one (a one-off address,
// identity or key of a flood) 48, and a string's symbol 12.
func TestEntrySecondsAndSize(t *testing.T) {
	if s := detect.SlotSize; s > 64 {
		t.Errorf("a stored entry is %d bytes, want at most 64", s)
	}
	if s := detect.GroupSize; s != 192 {
		t.Errorf("a group is %d bytes, want 192", s)
	}
	if s := detect.CompactSize; s != 48 {
		t.Errorf("a compact group is %d bytes, want 48", s)
	}
	if s := detect.SymbolSize; s != 12 {
		t.Errorf("a symbol is %d bytes, want 12", s)
	}
	for _, tc := range []struct{ first, last int64 }{{1764324000, 1764324000}, {1764324007, 1764324059}, {1764324059, 1764324059}} {
		w := detect.NewWindows(detect.WindowOptions{})
		k := detect.GroupKey{Grouping: detect.ByIP, Source: "api", IP: netip.MustParseAddr("192.0.2.1")}
		for _, at := range []int64{tc.last, tc.first, (tc.first + tc.last) / 2} {
			e := detect.EntryAt(at)
			e.IP, e.Outcome, e.Count = k.IP, ingest.Failure, 1
			w.Add(k, e)
		}
		g := w.Get(k)
		if g.Len() != 1 {
			t.Fatalf("%d entries for one minute, want 1", g.Len())
		}
		if en := g.At(0); en.First() != tc.first || en.Last() != tc.last || en.Minute != tc.first/60 || en.Count != 3 {
			t.Errorf("entry minute %d, first %d, last %d, count %d; want %d, %d, %d, 3", en.Minute, en.First(), en.Last(), en.Count, tc.first/60, tc.first, tc.last)
		}
	}
}

// Addresses told apart only by their family or zone stay apart in a
// group's entries and come back as they went in.
func TestEntryAddresses(t *testing.T) {
	v4, v6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("fe80::1")
	addrs := []netip.Addr{{}, v4, netip.AddrFrom16(v4.As16()), v6, v6.WithZone("eth0"), v6.WithZone("eth1"),
		netip.MustParseAddr("::"), netip.MustParseAddr("0.0.0.0")}
	for _, a := range addrs {
		for _, b := range addrs {
			w := detect.NewWindows(detect.WindowOptions{})
			k := detect.GroupKey{Grouping: detect.ByIdentity, Source: "api", Value: "c1"}
			for _, ip := range []netip.Addr{a, b} {
				w.Add(k, detect.Entry{Minute: 10, IP: ip, Identity: "c1", Outcome: ingest.Failure, Count: 1})
			}
			g := w.Get(k)
			want := []netip.Addr{a, b}
			if a == b {
				want = want[:1]
			}
			if g.Len() != len(want) {
				t.Fatalf("%v then %v: %d entries, want %d", a, b, g.Len(), len(want))
			}
			for i, ip := range want {
				if got := g.At(i).IP; got != ip {
					t.Errorf("%v then %v: entry %d has %v", a, b, i, got)
				}
			}
		}
	}
}

// The entries of one client over many minutes share the symbols of its
// identity and key when the parser hands the same strings (one per value):
// the table holds a few strings, not a few per minute. Equal strings at
// other addresses still come back as they went in.
func TestSymbolsShared(t *testing.T) {
	w := detect.NewWindows(detect.WindowOptions{Retain: [4]int64{1000, 1000, 1000, 1000}})
	ids := []string{"client-1", "client-2"}
	keys := []string{"sk_live_1", "sk_live_2"}
	for m := range int64(200) {
		for c := range 2 {
			ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(c)})
			e := detect.Entry{Minute: 1000 + m, IP: ip, Identity: ids[c], Credential: keys[c], Outcome: ingest.Success, Count: 1,
				Pos: ingest.Pos{File: "access.log", Offset: m}}
			w.Add(detect.GroupKey{Grouping: detect.ByIP, Source: "api", IP: ip}, e)
		}
	}
	if n := w.Strings(); n > 8 {
		t.Errorf("%d symbols for 400 entries of 2 clients, want at most 8", n)
	}
	k := detect.GroupKey{Grouping: detect.ByIP, Source: "api", IP: netip.AddrFrom4([4]byte{192, 0, 2, 1})}
	w.Add(k, detect.Entry{Minute: 2000, IP: k.IP, Identity: strings.Clone(ids[1]), Credential: "other", Outcome: ingest.Success, Count: 1})
	g := w.Get(k)
	for i := range g.Len() {
		e := g.At(i)
		want := keys[1]
		if i == g.Len()-1 {
			want = "other"
		}
		if e.Identity != ids[1] || e.Credential != want {
			t.Fatalf("entry %d: %q, %q; want %q, %q", i, e.Identity, e.Credential, ids[1], want)
		}
	}
}
