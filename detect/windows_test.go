package detect_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"unsafe"

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
	if len(g.Entries) != 1 || g.Entries[0].Count != 5 {
		t.Fatalf("entries = %+v, want one with count 5", g.Entries)
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
	if len(g.Entries) != 2 || g.Attempts != 2 {
		t.Errorf("after prune to 101: %d entries, %d attempts; want 2 and 2", len(g.Entries), g.Attempts)
	}
	w.Prune(func(string) int64 { return 185 }, nil) // keeps minutes >= 125
	if len(g.Entries) != 1 || g.Attempts != 1 {
		t.Errorf("after prune to 125: %d entries, %d attempts; want 1 and 1", len(g.Entries), g.Attempts)
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
			e := detect.Entry{Minute: minute, IP: ip,
				Identity: fmt.Sprint("id", r.IntN(values)), Credential: fmt.Sprint("k", r.IntN(values/2)), Outcome: ingest.Failure, Count: 1}
			if r.IntN(4) == 0 {
				e.Outcome = ingest.Success
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
			got := w.Add(k, e)
			es, had := m[k]
			full := o.MaxEntries > 0 && entries >= o.MaxEntries
			merged := false
			for i, n := len(es)-1, 0; i >= 0 && n < 4; i, n = i-1, n+1 {
				x := &es[i]
				if x.Minute == e.Minute && x.IP == e.IP && x.Identity == e.Identity && x.Credential == e.Credential && x.Outcome == e.Outcome {
					x.Count += e.Count
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
				keep := func(g *detect.Group) bool { return kept[g.Key] }
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
	for k, es := range m {
		n[k.Grouping]++
		g := w.Get(k)
		if g == nil {
			t.Fatalf("seed %d step %d: group %s lost", seed, step, k)
		}
		var attempts int64
		for _, e := range es {
			if e.Outcome.Attempt() {
				attempts += int64(e.Count)
			}
		}
		if len(g.Entries) != len(es) || g.Attempts != attempts {
			t.Fatalf("seed %d step %d: group %s has %d entries, %d attempts; model %d, %d", seed, step, k, len(g.Entries), g.Attempts, len(es), attempts)
		}
		for i := range es {
			if g.Entries[i].Minute != es[i].Minute || g.Entries[i].Count != es[i].Count {
				t.Fatalf("seed %d step %d: group %s entry %d = %+v, model %+v", seed, step, k, i, g.Entries[i], es[i])
			}
		}
	}
	if w.Len() != n {
		t.Fatalf("seed %d step %d: groups %v, model %v", seed, step, w.Len(), n)
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
// fits 128 bytes: a flood retains max_entries of them.
func TestEntrySecondsAndSize(t *testing.T) {
	if s := unsafe.Sizeof(detect.Entry{}); s > 128 {
		t.Errorf("detect.Entry is %d bytes, want at most 128", s)
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
		if len(g.Entries) != 1 {
			t.Fatalf("%d entries for one minute, want 1", len(g.Entries))
		}
		if en := &g.Entries[0]; en.First() != tc.first || en.Last() != tc.last || en.Minute != tc.first/60 || en.Count != 3 {
			t.Errorf("entry minute %d, first %d, last %d, count %d; want %d, %d, %d, 3", en.Minute, en.First(), en.Last(), en.Count, tc.first/60, tc.first, tc.last)
		}
	}
}
