package detect

import (
	"net/netip"

	"github.com/spraywatch/spraywatch/ingest"
)

// Most groups of a flood hold one entry for as long as their longest window
// (an address, identity or key seen once): as a group in the slab, each
// costs 192 bytes for a 64-byte entry. Once no caller holds such a group
// (it is not dirty, and the dirty list it was handed out in has been
// replaced), it is moved to a compact record of 48 bytes without pointers:
// its entry, its route and its expiry queue. The key is not stored: it is
// the entry's address, identity or credential, and the queue's source and
// grouping, and only groups whose key is one of those are made compact.
// The index names the record instead of the group (see compactRef), so a
// lookup finds it exactly as it would the group, and the first Add or Get
// that finds it makes it a full group again, with the same entry, route,
// count of attempts and latest minute, before the caller sees it.
//
// What every caller sees is therefore what it would see without compact
// records; Prune hands keep a group made from the record, and keeps it as
// a full empty group when keep says so.

// compactRef marks the ref of a compact group: the index and the expiry
// queues name a group in the slab by its id+1, a compact one by
// compactRef|id.
const compactRef = 1 << 31

// compact is a group of one entry: the entry as a slot holds it, for an
// IPv4 address or none, and a minute that fits 32 bits.
type compact struct {
	offset                           int64
	minute                           int32
	identity, credential, file, node uint32 // symbols, as a slot's
	route                            uint32 // a symbol of Windows.routes
	count                            uint32
	ip                               [4]byte
	queue                            uint16 // its expiry queue's idx; 0: a free record
	ipKind                           uint8  // 0: no address, 4: IPv4
	outcome                          ingest.Outcome
	stale                            bool
	firstSec, lastSec                uint8
}

func (w *Windows) cat(id int32) *compact { return &w.compacts[id/slabChunk][id%slabChunk] }

func (w *Windows) allocCompact() int32 {
	if len(w.cfree) == 0 {
		c := new([slabChunk]compact)
		base := int32(len(w.compacts)) * slabChunk
		for i := slabChunk - 1; i >= 0; i-- {
			w.cfree = append(w.cfree, base+int32(i))
		}
		w.compacts = append(w.compacts, c)
	}
	id := w.cfree[len(w.cfree)-1]
	w.cfree = w.cfree[:len(w.cfree)-1]
	return id
}

func (w *Windows) freeCompact(id int32) {
	w.cat(id).queue = 0
	w.cfree = append(w.cfree, id)
}

func (c *compact) addr() netip.Addr {
	if c.ipKind == 0 {
		return netip.Addr{}
	}
	return netip.AddrFrom4(c.ip)
}

// attempts returns what the entry adds to its group's Attempts.
func (x *slot) attempts() int64 {
	if x.outcome.Attempt() && !x.stale {
		return int64(x.count)
	}
	return 0
}

// compactIs reports whether c is the group of k.
func (w *Windows) compactIs(c *compact, k GroupKey) bool {
	q := w.queues[c.queue-1]
	if q.grouping != k.Grouping || q.source != k.Source {
		return false
	}
	switch k.Grouping {
	case ByIP:
		return c.addr() == k.IP
	case ByIdentity:
		return w.syms.str(c.identity) == k.Value
	case ByCredential:
		return w.syms.str(c.credential) == k.Value
	}
	return false
}

// compactKey returns the key of c, of queue q.
func (w *Windows) compactKey(c *compact, q *expiryQueue) GroupKey {
	k := GroupKey{Grouping: q.grouping, Source: q.source}
	switch q.grouping {
	case ByIP:
		k.IP = c.addr()
	case ByIdentity:
		k.Value = w.syms.str(c.identity)
	case ByCredential:
		k.Value = w.syms.str(c.credential)
	}
	return k
}

// compactRetain is the shortest retention, in minutes, of a grouping whose
// groups are made compact: a group kept for less (an identity's, for the
// brute-force window) costs little in the slab, less than moving it would.
const compactRetain = 30

// compactible reports whether g can be made compact: it has one entry and
// is not dirty, its grouping keeps entries for compactRetain or longer,
// its key can be told from the entry, and the record holds all of it.
func (w *Windows) compactible(g *Group) bool {
	if w.plain || g.Dirty || g.n != 1 || g.queue.idx == 0 || w.opt.Retain[g.grouping] < compactRetain {
		return false
	}
	x := g.slot(0)
	if x.ipKind == 6 || x.minute != g.Last || int64(int32(x.minute)) != x.minute || g.Attempts != x.attempts() {
		return false
	}
	switch g.grouping {
	case ByIP:
		return g.addr == x.addr(w.syms)
	case ByIdentity:
		return g.value == w.syms.str(x.identity)
	case ByCredential:
		return g.value == w.syms.str(x.credential)
	}
	return false
}

// compact moves g, compactible, to a compact record and frees its slot.
// Its entry's symbols pass to the record. The record takes the group's ref
// in its queue when that is among the last few of its bucket; else it is
// queued anew, and the slot's ref, left there, is passed over by expiry.
func (w *Windows) compact(g *Group) {
	id := w.allocCompact()
	c := w.cat(id)
	x := g.slot(0)
	*c = compact{offset: x.offset, minute: int32(x.minute), identity: x.identity, credential: x.credential, file: x.file, node: x.node,
		route: w.routes.ref(0, g.Route), count: x.count, ip: [4]byte(x.ip[12:]), queue: g.queue.idx, ipKind: x.ipKind,
		outcome: x.outcome, stale: x.stale, firstSec: x.firstSec, lastSec: x.lastSec}
	r := compactRef | uint32(id)
	w.index.replace(g.hash, uint32(g.id+1), r)
	if !g.queue.replace(x.minute, uint32(g.id+1), r) {
		g.queue.push(x.minute, r)
	}
	g.hash, g.Last, g.Attempts = 0, 0, 0
	g.drop()
	w.free = append(w.free, g.id)
}

// slot returns c's entry as a group stores it.
func (c *compact) slot() slot {
	x := slot{minute: int64(c.minute), identity: c.identity, credential: c.credential, file: c.file, node: c.node,
		count: c.count, offset: c.offset, ipKind: c.ipKind, outcome: c.outcome, stale: c.stale, firstSec: c.firstSec, lastSec: c.lastSec}
	if c.ipKind == 4 {
		x.ip = netip.AddrFrom4(c.ip).As16()
	}
	return x
}

// promote makes the compact group of ref r, key k and hash h, whose word
// is the i-th of the index, a full group again, and returns it.
func (w *Windows) promote(r uint32, i uint64, k GroupKey, h uint64) *Group {
	id := int32(r &^ compactRef)
	c := w.cat(id)
	g := w.allocGroup()
	g.setKey(k)
	g.hash, g.queue, g.Dirty = h, w.queues[c.queue-1], false
	g.Route = w.routes.str(c.route)
	w.routes.unref(c.route)
	g.empty()
	g.one[0], g.n = c.slot(), 1
	g.Last, g.Attempts = int64(c.minute), g.one[0].attempts()
	w.index.slots[i] = w.index.slots[i]>>32<<32 | uint64(g.id+1)
	g.queue.push(g.Last, uint32(g.id+1))
	w.freeCompact(id)
	return g
}

// expireCompact drops the entry of the compact group of ref r, taken from
// queue q's bucket of minute (before Prune's cut), and the group unless
// keep says so. A ref that no longer names a record of q and minute is an
// old one, passed over.
func (w *Windows) expireCompact(r uint32, minute int64, q *expiryQueue, keep func(*Group) bool) {
	id := int32(r &^ compactRef)
	c := w.cat(id)
	if c.queue == 0 || c.queue != q.idx || int64(c.minute) != minute {
		return
	}
	k := w.compactKey(c, q)
	h := w.hashOf(k)
	route := w.routes.str(c.route)
	w.syms.unref(c.identity)
	w.syms.unref(c.credential)
	w.syms.files.unref(c.file)
	w.syms.unref(c.node)
	w.routes.unref(c.route)
	w.entries--
	w.freeCompact(id)
	if keep != nil {
		s := &w.scratch
		s.setKey(k)
		s.hash, s.queue, s.Route, s.Last, s.Attempts = h, q, route, minute, 0
		kept := keep(s)
		*s = Group{}
		if kept {
			g := w.allocGroup()
			g.setKey(k)
			g.hash, g.queue, g.Route, g.Last, g.Attempts, g.Dirty = h, q, route, minute, 0, false
			g.empty()
			w.index.replace(h, r, uint32(g.id+1))
			return
		}
	}
	w.index.remove(h, r)
	if p := w.present[q.grouping]; p != nil {
		p.remove(h)
	}
	w.counts[q.grouping]--
}
