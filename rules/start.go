package rules

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
)

// The start of input. A rule judges what its window holds, and at the
// start of a replay, or of a daemon that begins reading at a log's end, a
// window reaches back before the first line: it holds only what came
// since. For most rules that only counts an attack late (their counts grow
// with more lines). The rules that want each identity tried at most a few
// times (stuffing's max_tries_per_identity, the distributed spray's
// max_failures_per_identity, low-and-slow's per hour) are the other way
// round: in a window the start cut short every identity has had few
// tries, and a /24 of clients each retrying its own dead key every few
// seconds looks, in its first minute, like stuffing over that network.
//
// So a verdict of those rules made on a window the start cut short is
// held: nothing is raised, and the group is judged again when its window
// has been observed whole (its length since the source's first line, the
// first minute counted as observed; low-and-slow's first whole clock hour,
// as its count is per hour), at that minute, whatever came after. A real
// attack at the start is raised then, with every attempt its group holds,
// at most one window late. The end of a replay (Finish) judges what is
// still held on what there is. A restored daemon's windows hold what came
// before the restart: a source's first line is the first the store holds
// of it, so a daemon restarted days after it first started is not at the
// start of its input, and one restarted a minute after still is.

// cutShort reports whether g's window of length w ending at minute now
// reaches back before its source's first line, and the minute from which
// it no longer does.
func (e *Engine) cutShort(g *detect.Group, w time.Duration, now int64) (due int64, cut bool) {
	if e.holdsOff {
		return 0, false
	}
	first := e.clockOf(g.Source()).first
	if first == 0 {
		return 0, false
	}
	due = first/60 + minutes(w) - 1
	return due, now < due
}

// hold reports whether a verdict on g's window of length w at minute now
// must wait (see above), and if so notes when to judge g again.
func (e *Engine) hold(g *detect.Group, w time.Duration, now int64) bool {
	due, cut := e.cutShort(g, w, now)
	if !cut {
		return false
	}
	e.holdUntil(g, due)
	return true
}

// holdHour is hold for low-and-slow, whose count is per clock hour: it
// waits until the first whole hour after the source's first line is over.
func (e *Engine) holdHour(g *detect.Group, now int64) bool {
	if e.holdsOff {
		return false
	}
	first := e.clockOf(g.Source()).first
	if first == 0 {
		return false
	}
	due := (first/3600+2)*60 - 1
	if now >= due {
		return false
	}
	e.holdUntil(g, due)
	return true
}

// held is a group's held verdict: when to judge it again, and the order
// the verdicts were held in (the first network of a storm to cross the
// threshold is the one its incident is named by).
type held struct {
	due, seq int64
}

func (e *Engine) holdUntil(g *detect.Group, due int64) {
	if e.holds == nil {
		e.holds = map[detect.GroupKey]held{}
	}
	e.holdSeq++ // (on every hold: a held judgement is never a quiet one, see quietMemo)
	h, ok := e.holds[g.Key()]
	if !ok {
		h = held{due: due, seq: e.holdSeq}
	}
	h.due = min(h.due, due)
	e.holds[g.Key()] = h
}

// judgeHeld judges the held groups whose windows are now whole, in the
// order they were held, each at the minute its window became whole (a
// source quiet since then must not have the attempts slid out of the
// window first). With all (the end of input) every held group is judged,
// at its source's time if that is earlier, and nothing is held again.
func (e *Engine) judgeHeld(all bool) {
	if len(e.holds) == 0 {
		return
	}
	if all {
		e.holdsOff = true
		defer func() { e.holdsOff = false }()
	}
	type due struct {
		k   detect.GroupKey
		h   held
		now int64
	}
	var ready []due
	for k, h := range e.holds {
		if now := e.clockOf(k.Source).watermark / 60; now >= h.due || all {
			ready = append(ready, due{k, h, min(now, h.due)})
		}
	}
	slices.SortFunc(ready, func(a, b due) int { return cmp.Compare(a.h.seq, b.h.seq) })
	for _, r := range ready {
		delete(e.holds, r.k)
		if g := e.win.Get(r.k); g != nil {
			e.judge(g, r.now)
		}
	}
}

// retried reports whether most of the failed identities stats counted in
// g's window (in e.scratch.tries) are not few-tries identities after all,
// counted over their credentials' whole retained history (a day) rather
// than the window: a client retrying its own dead key slowly (backing off
// to a try every eight minutes) has at most two tries in any window of
// fifteen minutes, but a stuffing run tries a leaked pair once or twice,
// not over and over. It is asked only once a window's verdict says
// stuffing, and stops counting a pair past the limit.
func (e *Engine) retried(g *detect.Group, from, to int64, maxTries int) bool {
	type pair struct{ identity, credential string }
	seen := map[pair]bool{}
	tries := map[string]int{} // identity -> tries of its pairs, up to past maxTries
	source := g.Source()
	for i := range g.Len() {
		if m := g.Minute(i); m < from || m > to {
			continue
		}
		en := g.At(i)
		if en.Identity == "" || en.Credential == "" || !e.counted(g, &en) {
			continue
		}
		p := pair{en.Identity, en.Credential}
		if seen[p] || tries[en.Identity] > maxTries {
			continue
		}
		seen[p] = true
		cg := e.win.Get(detect.GroupKey{Grouping: detect.ByCredential, Source: source, Value: en.Credential})
		if cg == nil {
			continue
		}
		for j := range cg.Len() {
			if cg.Minute(j) > to {
				continue
			}
			ce := cg.At(j)
			if ce.Identity != en.Identity || !ce.Outcome.Attempt() || ce.Stale || e.isClaimed(source, &ce) {
				continue
			}
			if tries[en.Identity] += int(ce.Count); tries[en.Identity] > maxTries {
				break
			}
		}
	}
	many := 0
	for _, n := range tries {
		if n > maxTries {
			many++
		}
	}
	failed := len(e.scratch.tries)
	return (failed-many)*2 <= failed
}

// counted is what stats counts as a failed attempt of g.
func (e *Engine) counted(g *detect.Group, en *detect.Entry) bool {
	return en.Outcome.Attempt() && !en.Stale && !e.keyOwners.worksForMany(g.Source(), en.Credential) && !e.isClaimed(g.Source(), en) &&
		!e.ownersMistake(g.Source(), g.Grouping(), en) && !(g.Grouping() == detect.ByIdentity && e.ownKeyElsewhere(g.Source(), en))
}

// maxHold is the longest a verdict is held after a source's first line.
func (e *Engine) maxHold() int64 {
	return max(minutes(e.cfg.Stuffing.Window), minutes(e.cfg.DistributedSpray.Window), 120) * 60
}

// rejudgeRestored judges again, after Restore, the restored groups of
// sources whose stored history is shorter than the longest hold: a verdict
// held before the restart is not stored, and a group no new line comes to
// would never be judged again. (The others' verdicts were made before the
// restart; a restored source is at its start only while the store holds
// less than that of it.)
func (e *Engine) rejudgeRestored(dirty []*detect.Group) {
	var again []*detect.Group
	for _, g := range dirty {
		if c := e.clockOf(g.Source()); c.first != 0 && c.watermark-c.first < e.maxHold() {
			again = append(again, g)
		}
	}
	for _, g := range again {
		e.judge(g, e.clockOf(g.Source()).watermark/60)
	}
}

// quietMemo remembers, for the network groups judged in one event minute,
// a judgement that raised and held nothing. A /24 of clients retrying
// dead keys several times a second is judged at every second, each time
// a scan of fifteen minutes of its entries; judged again in the same
// minute with only new lines of the (address, identity, credential) shapes
// it counted, and successes of identities that succeeded there, and
// nothing new about claims, shared keys or incidents, stuffing's verdict
// (and the network spray's) is the same: only tries grew, and those rules
// want few. So the new entries are looked at instead of the window.
//
// quietNets turns the memo on (tests turn it off to compare).
var quietNets = true

// quietMin is the fewest entries a network needs to be remembered.
const quietMin = 64

type quietMemo struct {
	minute int64
	m      map[uint64]*quietNet
}

type quietNet struct {
	// dead: a line of a new shape came this minute (a busy network's lines
	// keep bringing them): the memo is not built again until the next
	// minute, so such a network costs at most one more scan a minute.
	dead bool
	// once: judged once this minute, no memo built yet: a network judged
	// once a minute (most are) never pays for one.
	once   bool
	state  quietState
	n      int // entries looked at
	shapes map[quietShape]struct{}
	succ   map[string]struct{}
}

type quietShape struct {
	ip                   netip.Addr
	identity, credential string
}

// quietState is what, besides a network's own entries, its judgement
// depends on.
type quietState struct {
	g                         *detect.Group
	claims, live, many, creds int
	nextID, pruned, holdSeq   int64
	netCut, pairsCut          uint32
	holdsOff                  bool
}

func (e *Engine) quietState(g *detect.Group) quietState {
	return quietState{g: g, claims: len(e.claimed), live: len(e.live), many: len(e.keyOwners.many), creds: len(e.credSeen),
		nextID: e.nextID, pruned: e.lastPrune, holdSeq: e.holdSeq, netCut: e.netCut, pairsCut: e.pairsCut, holdsOff: e.holdsOff}
}

func (q *quietMemo) at(now int64) map[uint64]*quietNet {
	if q.minute != now || q.m == nil {
		if q.m == nil || len(q.m) > 0 {
			q.m = map[uint64]*quietNet{}
		}
		q.minute = now
	}
	return q.m
}

// stillQuiet reports whether network g, judged quiet earlier in minute
// now, got only lines that cannot change that.
func (e *Engine) stillQuiet(g *detect.Group, now int64) bool {
	m := e.scratch.quiet.at(now)
	h := g.KeyHash()
	q := m[h]
	if q == nil || q.dead || q.once {
		return false
	}
	if q.state != e.quietState(g) || q.n > g.Len() {
		delete(m, h) // (the minute's prune, say: built again)
		return false
	}
	for i := q.n; i < g.Len(); i++ {
		if g.Minute(i) > now {
			continue
		}
		en := g.At(i)
		switch {
		case en.Outcome == ingest.Success:
			if _, ok := q.succ[en.Identity]; !ok && en.Identity != "" {
				q.dead = true
				return false
			}
		case en.Outcome.Attempt():
			if _, ok := q.shapes[quietShape{en.IP, en.Identity, en.Credential}]; !ok && e.counted(g, &en) {
				q.dead = true
				return false
			}
		}
	}
	q.n = g.Len()
	return true
}

// noteQuiet remembers network g's judgement at now, which raised and held
// nothing, from its second such judgement in the minute.
func (e *Engine) noteQuiet(g *detect.Group, now int64) {
	m := e.scratch.quiet.at(now)
	h := g.KeyHash()
	switch q := m[h]; {
	case q == nil:
		m[h] = &quietNet{once: true}
		return
	case q.dead:
		return
	}
	q := &quietNet{state: e.quietState(g), n: g.Len(), shapes: map[quietShape]struct{}{}, succ: map[string]struct{}{}}
	from := now - minutes(e.cfg.Stuffing.Window) + 1
	for i := range g.Len() {
		if mi := g.Minute(i); mi < from || mi > now {
			continue
		}
		en := g.At(i)
		switch {
		case en.Outcome == ingest.Success:
			q.succ[en.Identity] = struct{}{}
		case en.Outcome.Attempt() && e.counted(g, &en):
			q.shapes[quietShape{en.IP, en.Identity, en.Credential}] = struct{}{}
		}
	}
	m[h] = q
}
