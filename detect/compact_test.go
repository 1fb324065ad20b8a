package detect

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/spraywatch/spraywatch/ingest"
)

// groupState is what a caller can see of a group.
type groupState struct {
	Key      GroupKey
	Hash     uint64
	Last     int64
	Attempts int64
	Route    string
	Entries  []Entry
}

// peek returns the state of k's group without making a compact one full,
// and whether it is compact.
func peek(w *Windows, k GroupKey) (s groupState, compact, ok bool) {
	h := w.hashOf(k)
	r, _ := w.find(k, h)
	switch {
	case r == 0:
		return s, false, false
	case r&compactRef != 0:
		c := w.cat(int32(r &^ compactRef))
		x := c.slot()
		return groupState{Key: w.compactKey(c, w.queues[c.queue-1]), Hash: k.Hash(), Last: int64(c.minute), Attempts: x.attempts(),
			Route: w.routes.str(c.route), Entries: []Entry{w.syms.entry(&x)}}, true, true
	}
	return stateOf(w.at(int32(r) - 1)), false, true
}

func stateOf(g *Group) groupState {
	s := groupState{Key: g.Key(), Hash: g.KeyHash(), Last: g.Last, Attempts: g.Attempts, Route: g.Route}
	for i := range g.Len() {
		s.Entries = append(s.Entries, g.At(i))
	}
	return s
}

// statesOf returns the states of a dirty list, as a judge reads them.
func statesOf(gs []*Group) []groupState {
	var ss []groupState
	for _, g := range gs {
		ss = append(ss, stateOf(g))
	}
	return ss
}

// TestCompactModel runs random sequences of Add (with routes set), Get,
// TakeDirty and Prune (with random keep answers) on windows with compact
// groups and on plain windows, and compares what a caller sees after every
// step: every group's key, hash, latest minute, attempts, route and
// entries, the dirty lists, the counts, entries and symbols. Keys come from
// small pools (so that one-entry groups get a second entry, after being
// made compact or not) over IPv4, IPv6 and no address, and strings shared
// or equal at other addresses; some seeds force hash collisions, some cap
// groups or entries.
func TestCompactModel(t *testing.T) {
	hashes := []func(GroupKey) uint64{
		nil,
		func(k GroupKey) uint64 { return k.Hash() % 7 },                 // whole hashes collide
		func(k GroupKey) uint64 { return k.Hash()&0xffff | 0xabcd<<32 }, // tags collide
	}
	compacted, promoted := 0, 0
	for seed := uint64(1); seed <= 40; seed++ {
		r := rand.New(rand.NewPCG(seed, 17))
		o := WindowOptions{Retain: [numGroupings]int64{ByIP: 60, ByNet: 15, ByCredential: 1440, ByIdentity: 10 + 30*int64(seed%2)}}
		switch seed % 5 {
		case 3:
			o.MaxEntries = 40 + r.IntN(40)
		case 4:
			o.MaxGroups = 10 + r.IntN(20)
		}
		a, b := NewWindows(o), NewWindows(o)
		b.plain = true
		if h := hashes[seed%3]; h != nil {
			a.hash, b.hash = h, h
		}
		var keys []GroupKey // every key ever added
		seen := map[GroupKey]bool{}
		kept := map[GroupKey]bool{}
		clock := map[string]int64{"api": 1000, "web": 1000}
		ips := []netip.Addr{{}, netip.MustParseAddr("2001:db8::7"), netip.MustParseAddr("::ffff:192.0.2.9")}
		for i := range 40 {
			ips = append(ips, netip.AddrFrom4([4]byte{10, 0, byte(i / 8), byte(i)}))
		}
		pool := 5 + r.IntN(60)
		var ids, creds []string // one string each, as the parser hands out
		for i := range pool {
			ids, creds = append(ids, fmt.Sprint("id", i)), append(creds, fmt.Sprint("k", i))
		}
		for step := range 1200 {
			src := []string{"api", "web"}[r.IntN(2)]
			switch op := r.IntN(20); {
			case op < 12:
				clock[src] += int64(r.IntN(3))
				e := EntryAt(clock[src]*60 - int64(r.IntN(3)*60) + int64(r.IntN(60)))
				e.IP = ips[r.IntN(len(ips))]
				e.Identity, e.Credential = ids[r.IntN(pool)], creds[r.IntN(pool)]
				if r.IntN(4) == 0 { // equal strings at other addresses
					e.Identity, e.Credential = strings.Clone(e.Identity), strings.Clone(e.Credential)
				}
				e.Count = uint32(1 + r.IntN(2))
				e.Pos = ingest.Pos{File: fmt.Sprint("access.log.", r.IntN(2)), Inode: uint64(r.IntN(2)), Offset: int64(step)}
				e.Outcome = []ingest.Outcome{ingest.Failure, ingest.Failure, ingest.Success, ingest.Throttled}[r.IntN(4)]
				switch r.IntN(8) {
				case 0:
					e.Identity = ""
				case 1:
					e.Credential, e.Pos.Node = "", "node-b"
				case 2:
					e.Stale = true
				}
				k := GroupKey{Grouping: Grouping(r.IntN(int(numGroupings))), Source: src}
				switch k.Grouping {
				case ByIP:
					k.IP = e.IP
				case ByNet:
					k.Net = a.NetOf(e.IP)
				case ByCredential:
					k.Value = e.Credential
				default:
					k.Value = e.Identity
				}
				if r.IntN(10) == 0 { // a key its entry does not tell
					k.Value = "other"
				}
				if !seen[k] {
					seen[k] = true
					keys = append(keys, k)
				}
				_, wasCompact, _ := peek(a, k)
				ga, gb := a.Add(k, e), b.Add(k, e)
				if (ga == nil) != (gb == nil) {
					t.Fatalf("seed %d step %d: Add %s: compact windows gave %v, plain %v", seed, step, k, ga != nil, gb != nil)
				}
				if ga != nil && wasCompact {
					promoted++
				}
				if ga != nil && e.Outcome != ingest.Success {
					route := fmt.Sprint("/r", r.IntN(3))
					ga.Route, gb.Route = route, route
				}
			case op < 14 && len(keys) > 0:
				k := keys[r.IntN(len(keys))]
				ga, gb := a.Get(k), b.Get(k)
				if (ga == nil) != (gb == nil) {
					t.Fatalf("seed %d step %d: Get %s: compact windows gave %v, plain %v", seed, step, k, ga != nil, gb != nil)
				}
			case op < 18:
				da, db := statesOf(a.TakeDirty()), statesOf(b.TakeDirty())
				if !slices.EqualFunc(da, db, func(x, y groupState) bool {
					return x.Key == y.Key && x.Hash == y.Hash && x.Last == y.Last && x.Attempts == y.Attempts && x.Route == y.Route &&
						slices.Equal(x.Entries, y.Entries)
				}) {
					t.Fatalf("seed %d step %d: dirty %v, plain %v", seed, step, da, db)
				}
			default:
				for range min(3, len(keys)) {
					k := keys[r.IntN(len(keys))]
					kept[k] = r.IntN(2) == 0
				}
				now := func(s string) int64 { return clock[s] }
				var asked []GroupKey
				keep := func(g *Group) bool {
					if g.KeyHash() != g.Key().Hash() && a.hash == nil {
						t.Fatalf("seed %d step %d: keep sees hash %x for %s", seed, step, g.KeyHash(), g.Key())
					}
					asked = append(asked, g.Key())
					return kept[g.Key()]
				}
				a.Prune(now, keep)
				na := len(asked)
				b.Prune(now, keep)
				if na != len(asked)-na {
					t.Fatalf("seed %d step %d: keep asked %d times, plain %d", seed, step, na, len(asked)-na)
				}
			}
			n := 0
			var held, heldFiles int        // the symbols' references the tracked entries hold
			counted := map[GroupKey]bool{} // keys that differ in what their grouping ignores name one group
			for _, k := range keys {
				sa, ca, oka := peek(a, k)
				for _, e := range sa.Entries {
					if counted[sa.Key] {
						break
					}
					for _, v := range []string{e.Identity, e.Credential, e.Pos.Node, e.IP.Zone()} {
						if v != "" {
							held++
						}
					}
					if e.Pos.File != "" || e.Pos.Inode != 0 {
						heldFiles++
					}
				}
				counted[sa.Key] = oka
				sb, _, okb := peek(b, k)
				if oka != okb {
					t.Fatalf("seed %d step %d: %s tracked %v, plain %v", seed, step, k, oka, okb)
				}
				if ca {
					n++
				}
				if oka && (sa.Key != sb.Key || sa.Hash != sb.Hash || sa.Last != sb.Last || sa.Attempts != sb.Attempts ||
					sa.Route != sb.Route || !slices.Equal(sa.Entries, sb.Entries)) {
					t.Fatalf("seed %d step %d: %s (compact %v) is %+v, plain %+v", seed, step, k, ca, sa, sb)
				}
			}
			compacted = max(compacted, n)
			// Equal strings may share a symbol in one and not the other
			// (a symbol freed and taken again for an equal string is
			// found by a stale recent word), so the symbols are checked
			// against the references the entries hold, not the plain
			// windows' count.
			for _, w := range []*Windows{a, b} {
				if r, rf := symbolRefs(w.syms), symbolRefs(w.syms.files); r != held || rf != heldFiles {
					t.Fatalf("seed %d step %d: symbols hold %d and %d references, the entries %d and %d", seed, step, r, rf, held, heldFiles)
				}
			}
			if a.Len() != b.Len() || a.Entries() != b.Entries() ||
				a.Dropped != b.Dropped || a.DroppedEntries != b.DroppedEntries {
				t.Fatalf("seed %d step %d: groups %v, entries %d, strings %d, dropped %d, %d; plain %v, %d, %d, %d, %d", seed, step,
					a.Len(), a.Entries(), a.Strings(), a.Dropped, a.DroppedEntries, b.Len(), b.Entries(), b.Strings(), b.Dropped, b.DroppedEntries)
			}
		}
	}
	// The sequences reach both ways.
	if compacted < 10 || promoted < 100 {
		t.Fatalf("at most %d compact groups at once and %d made full again: the model does not exercise them", compacted, promoted)
	}
	t.Logf("up to %d compact groups at once, %d made full again", compacted, promoted)
}

// symbolRefs returns the references counted by s's symbols, and fails on
// a symbol in use by none that is not free.
func symbolRefs(s *symbols) int {
	n, used := 0, 0
	for _, y := range s.syms[1:] {
		n += int(y.refs)
		if y.refs > 0 {
			used++
		}
	}
	if used != len(s.syms)-1-len(s.free) {
		return -1
	}
	return n
}
