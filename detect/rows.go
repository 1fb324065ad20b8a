package detect

import (
	"net/netip"

	"github.com/spraywatch/spraywatch/ingest"
)

// RoutineMinutes is how many minutes one row of routine successes covers.
//
// At thousands of clients nearly every line is a benign success of its own
// (address, identity, credential) in its minute, so per-minute rows are
// one row a line, and rows are what a replay spends most of its time on.
// A routine success is one on an address, network, identity and
// credential none of which has failed attempts in its window, nor is
// under an attack. It is context, never evidence: what the store must keep
// of it is when the identity first used its key (stale-key ownership), that it
// used it from that address (an owner's later typos are not an attack),
// and its latest use (windows restored after a restart count who
// succeeded recently). One row an hour per (address, identity,
// credential) keeps all three: its minute is the hour's first routine
// success and last_minute the hour's last. Every other row, and every
// success next to failures, stays per minute.
const RoutineMinutes = 60

// routineKey identifies a row of one hour's routine successes.
type routineKey struct {
	source     string
	hour       int64 // Unix minute / RoutineMinutes
	ip         netip.Addr
	identity   string
	credential string
}

// routineCount is such a row: its count, its first and last minutes and
// its first line.
type routineCount struct {
	count       int64
	first, last int64 // Unix minutes
	pos         ingest.Pos
}

// AddRoutine counts a routine success (see RoutineMinutes): the engine
// judged that nothing around it failed.
func (a *Attempts) AddRoutine(ev *ingest.Event) {
	m := ev.Time.Unix() / 60
	k := routineKey{ev.Source, hourOf(m), ev.IP, ev.Identity, ev.Credential}
	if c := a.r[k]; c != nil {
		c.count++
		c.first, c.last = min(c.first, m), max(c.last, m)
		return
	}
	if a.r == nil {
		a.r = map[routineKey]*routineCount{}
	}
	if len(a.rslab) == cap(a.rslab) {
		a.rslab = make([]routineCount, 0, 256)
	}
	a.rslab = append(a.rslab, routineCount{count: 1, first: m, last: m, pos: ev.Pos})
	a.r[k] = &a.rslab[len(a.rslab)-1]
}

// hourOf is the routine row a Unix minute belongs to (floored, also before
// 1970).
func hourOf(minute int64) int64 {
	h := minute / RoutineMinutes
	if minute%RoutineMinutes < 0 {
		h--
	}
	return h
}

// Each calls fn with every pending row, in no particular order, for stores
// outside this package. A row of routine successes over several minutes
// comes as two per-minute rows, one for its first minute (count 1) and one
// for its last (the rest), so a store without a last_minute column keeps
// what restore needs of it.
func (a *Attempts) Each(fn func(AttemptKey, AttemptCount)) {
	for k, c := range a.m {
		fn(k, *c)
	}
	for k, c := range a.r {
		key := AttemptKey{Source: k.source, Minute: c.first, IP: k.ip, Identity: k.identity, Credential: k.credential, Outcome: ingest.Success}
		n, last, pos := c.count, c.last, c.pos
		if last == key.Minute {
			fn(key, AttemptCount{Count: n, Pos: pos})
			continue
		}
		fn(key, AttemptCount{Count: 1, Pos: pos})
		key.Minute = last
		fn(key, AttemptCount{Count: n - 1, Pos: pos})
	}
}

// Clear drops the pending rows, once a store has written them. The maps
// keep their room, for a caller that reuses the aggregate.
func (a *Attempts) Clear() {
	clear(a.m)
	clear(a.r)
	a.slab, a.rslab = nil, nil
}

// Take removes n from row k's count (a store found those written after
// all), dropping the row when nothing is left of it. k is a row as Each
// gave it: a success's count is taken from its per-minute row first, then
// from its hour's routine row.
func (a *Attempts) Take(k AttemptKey, n int64) {
	if c := a.m[k]; c != nil {
		took := min(n, c.Count)
		if c.Count -= took; c.Count <= 0 {
			delete(a.m, k)
		}
		n -= took
	}
	if n <= 0 || k.Outcome != ingest.Success {
		return
	}
	rk := routineKey{k.Source, hourOf(k.Minute), k.IP, k.Identity, k.Credential}
	if c := a.r[rk]; c != nil {
		if c.count -= n; c.count <= 0 {
			delete(a.r, rk)
		}
	}
}

// absorbRoutine adds newer's routine rows to a's, keeping a's first lines.
func (a *Attempts) absorbRoutine(newer *Attempts) {
	for k, c := range newer.r {
		mine := a.r[k]
		if mine == nil {
			if a.r == nil {
				a.r = map[routineKey]*routineCount{}
			}
			a.r[k] = c
			continue
		}
		mine.count += c.count
		mine.first, mine.last = min(mine.first, c.first), max(mine.last, c.last)
	}
}
