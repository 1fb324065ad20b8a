package rules

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
)

// pairMemory is how long a successful (identity, credential) pair is
// remembered for stale-key suppression.
const pairMemory = 30 * 24 * time.Hour

// Options configure an Engine.
type Options struct {
	Config Config
	// Allow lists addresses and ranges that are never judged.
	Allow []netip.Prefix
	// NoCredential names sources whose logs carry no credential: spray is
	// still found on identities per address, reported with unknown
	// credentials, and stuffing and brute force are not judged.
	NoCredential map[string]bool
	// MaxGroups caps tracked window groups per grouping (0: no cap).
	MaxGroups int
	// MaxEntries caps retained window entries over all groups (0: no cap).
	MaxEntries int
	// MaxIncidentSet caps the addresses and the identities one incident
	// tracks (0: no cap). Past it the incident still counts attempts, but
	// new addresses and identities are counted in Counters.Untracked
	// instead of listed, so its identity count becomes a lower bound.
	MaxIncidentSet int
	Logger         *slog.Logger
	// FirstID is the ID the first new incident gets (stores pass the next
	// free one).
	FirstID int64
	// DeferRows leaves the work of aggregating counted lines into attempt
	// rows to whoever first reads a batch's aggregate (see
	// detect.NewDeferredAttempts): a replay gathers rows on a goroutine of
	// its own. Pending then counts the lines of the batch, at least its
	// rows.
	DeferRows bool
}

// Counters are the engine's running totals, for metrics and summaries.
type Counters struct {
	Events, Allowed, Stale, Incidents int64
	// TooOld counts lines older than any window still open on their
	// source's clock: stored, but judged by no rule.
	TooOld int64
	// Ahead counts lines dated ahead of their source's other lines (see
	// clock.go) and left out: neither stored nor judged.
	Ahead  int64
	ByKind map[string]int64
	// Untracked counts addresses and identities not added to an incident
	// under Options.MaxIncidentSet.
	Untracked int64
}

// Engine consumes events in event-time order and raises incidents. It is
// not safe for concurrent use.
type Engine struct {
	cfg    Config
	allow  []netip.Prefix
	noCred map[string]bool
	// credSeen holds the sources that have shown a credential: until one
	// does, its lines are judged as a log without credentials (a Flask
	// source whose log holds only werkzeug's access lines, say).
	credSeen map[string]bool
	// credSource is in credSeen (sources are never dropped from it): most
	// lines are of the source the last was.
	credSource string
	log        *slog.Logger

	win       *detect.Windows
	deferRows bool // Options.DeferRows
	attempts  *detect.Attempts
	// spare is a written batch's emptied aggregate, kept for the next
	// batch: a busy daemon fills one a second, and growing a fresh map to a
	// hundred thousand rows each time is garbage the collector must chase.
	spare *detect.Attempts

	open map[openKey]*tracked
	// openKeys counts, by GroupKey.Hash, the incidents open on each key
	// (openN of them): every failed line asks whether its four groups have
	// one, and hashing the key once answers "no" without building an
	// openKey per kind. Restore fills open directly; a count that disagrees
	// with len(open) rebuilds it.
	openKeys map[uint64]int
	openN    int
	live     map[int64]*tracked // every incident not yet closed
	changed  map[int64]*tracked
	// unwritten holds the incidents whose version a batch took but could
	// not write (Requeue): the next batch writes that version again, so a
	// database outage does not raise versions no one ever saw.
	unwritten map[int64]bool
	quiet     map[int64]*tracked // changed, but sinks need not hear of it
	newIdents map[int64][]string
	nextID    int64

	// Each source keeps its own event-time clock, so a source catching up
	// on a backlog is judged on its own time, not on a livelier source's.
	clocks map[string]*clock
	// lastSource's clock, the last one asked for (clocks are never dropped)
	lastSource string
	lastClock  *clock
	watermark  int64 // Unix seconds: the latest event of any source
	lastPrune  int64 // Unix minute

	// claimed holds the attempts an incident has taken in, so that no
	// later incident reports them again.
	claimed map[claimKey]int64 // the claimed attempt's minute, for pruning

	restoring restoring // what Restore gathers while it reads rows

	// pairs holds the first success per (source, identity, credential), by
	// pairOf: eight bytes a key and one hash a lookup. A collision, about
	// one in 2^64 per pair, would take one key's failures for a stale
	// key's.
	pairs map[uint64]int64
	// pairsCut counts the times pairs lost keys (cleared, or stale pairs
	// dropped): a success record's pair is known to be in pairs only while
	// it has not moved.
	pairsCut uint32
	// netCut counts the times succNet was cleared, or the networks of
	// addresses may have changed (SetConfig): a success record's network
	// entry is known to be in succNet only while it has not moved.
	netCut uint32
	// The floors are at most the earliest time in pairs, in succFrom (of
	// the records' last success) and in succNet: a sweep for stale entries
	// is skipped while nothing can be stale.
	pairsFloor, succFloor, netFloor int64
	// Successes per (source, identity, address) and the last per (source,
	// identity, network), keyed by a 64-bit hash of those (succOf): no
	// pointers for the collector to scan, and one hash a lookup. A
	// collision, about one in 2^64 per pair, would take one failure for an
	// owner's mistake.
	//
	// A success from an address whose record has already written its
	// network's entry (see success.net) only raises the record's netLast:
	// succNet's times are read only by prune, which first raises them to
	// the records' (syncNets). This is one cold lookup a success line less.
	succFrom      map[uint64]success
	keyOwners     keyOwners // (leaked.go)
	succNet       map[uint64]int64
	attackedIdent map[valueKey]*tracked
	attackedCred  map[valueKey]*tracked
	attackedIP    map[ipKey]*tracked
	compromiseOf  map[int64]*tracked
	routes        map[valueKey]*routeStats
	findings      map[string]*tracked

	// minAttempts is, per grouping, the fewest failures any of its rules
	// can fire on.
	minAttempts [4]int64
	// maxRetain is the longest retention of any grouping, in seconds.
	maxRetain int64

	// holds are the groups whose verdict waits for a window the start of
	// input cut short, and the minute to judge them again (start.go);
	// holdsOff judges without holding (the end of input).
	holds    map[detect.GroupKey]held
	holdSeq  int64
	holdsOff bool

	scratch scratch
	maxSet  int // Options.MaxIncidentSet
	// maxClaims bounds claimed like the windows' entries (Options.MaxEntries):
	// past it, under a flood, an attempt may be reported by two incidents.
	maxClaims int
	Counters
}

type openKey struct {
	key  detect.GroupKey
	kind string
}

type clock struct {
	watermark int64 // Unix seconds of the source's latest event (or tick)
	// first is the Unix seconds of the source's first event, or of its
	// first stored row after Restore (0 before either): see start.go.
	first    int64
	lastEval int64
	// held are lines dated ahead of the watermark, waiting to be taken or
	// left out (holdAhead).
	held        []ingest.Event
	warnedAhead bool
}

// claimKey is a 64-bit hash of an attempt's (source, identity, credential,
// minute, address): an attacker controls how many there are, and eight
// bytes a claim keep the set small (a collision, about one in 2^64 per
// pair, would only keep one attempt out of a second incident).
type claimKey uint64

var claimSeed = maphash.MakeSeed()

func claimOf(source string, en *detect.Entry) claimKey {
	return claimKey(maphash.Comparable(claimSeed, struct {
		source, identity, credential string
		minute                       int64
		ip                           netip.Addr
	}{source, en.Identity, en.Credential, en.Minute, en.IP}))
}

var pairSeed = maphash.MakeSeed()

func (e *Engine) hasPair(k uint64) bool {
	_, ok := e.pairs[k]
	return ok
}

// setPair remembers pair k's first success at t.
func (e *Engine) setPair(k uint64, t int64) {
	e.pairs[k] = t
	e.pairsFloor = min(e.pairsFloor, t)
}

// pairOf hashes a (source, identity, credential) pair: each string
// hashed where it lies (seeded per process), the three folded in order.
func pairOf(source, identity, credential string) uint64 {
	return fold(fold(maphash.String(pairSeed, identity), maphash.String(pairSeed, credential)), maphash.String(pairSeed, source))
}

var succSeed = maphash.MakeSeed()

// succOf hashes where an identity succeeded: an address, or with net set
// the network of one. It runs for every success line, and folding the
// seeded hashes of the strings with the addresses' bytes is several times
// cheaper than hashing the struct of them.
func succOf(source, identity string, ip netip.Addr, net netip.Prefix) uint64 {
	h := fold(maphash.String(succSeed, identity), maphash.String(succSeed, source))
	h = foldAddr(h, ip)
	return fold(foldAddr(h, net.Addr()), uint64(int64(net.Bits())))
}

// foldAddr folds an address into h (as the windows hash theirs).
func foldAddr(h uint64, ip netip.Addr) uint64 { return detect.HashAddr(h, ip, 0) }

// fold mixes b into a.
func fold(a, b uint64) uint64 { return detect.Mix(a, b) }

// success is where an identity succeeded: the first and last time, in Unix
// seconds, and a hash of the credential of its last success there, whose
// pair is known to be in pairs while pairsCut has not moved since (two
// credentials of one identity and address hashing alike, about one in 2^64,
// would leave the second's pair unremembered).
//
// net is the succNet key the record last wrote, while netCut has not moved
// since: the entry is then known to be in succNet, and netLast is the latest
// success from here since, which syncNets writes into it.
type success struct {
	first, last int64
	cred        uint64
	net         uint64
	netLast     int64
	pairsCut    uint32
	netCut      uint32
}
type valueKey struct{ source, value string }
type ipKey struct {
	source string
	ip     netip.Addr
}

// tracked is an incident with the sets behind its counts.
type tracked struct {
	inc         *detect.Incident
	key         detect.GroupKey
	ips         map[netip.Addr]struct{}
	creds       map[string]struct{}
	idents      map[string]struct{}
	compromised map[string]struct{}
	owners      map[string]struct{} // attacked identities later used by their owners
	// For a compromise: whether some success it holds came from an address
	// the attack did not use, or with a credential it did not use.
	notFromIP, notWithCred bool
	last                   int64 // Unix seconds of the latest activity
	// nets are the networks of a network stuffing incident that other
	// networks joined (a botnet storm), its own included; nil otherwise.
	nets map[netip.Prefix]struct{}
}

// groupKeys returns the groups an incident is open on: the one it was
// raised on and the networks that joined it.
func (tr *tracked) groupKeys() []detect.GroupKey {
	keys := []detect.GroupKey{tr.key}
	for n := range tr.nets {
		if n != tr.key.Net {
			keys = append(keys, detect.GroupKey{Grouping: detect.ByNet, Source: tr.key.Source, Net: n})
		}
	}
	return keys
}

// NewEngine returns an engine with empty windows.
func NewEngine(o Options) *Engine {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.FirstID == 0 {
		o.FirstID = 1
	}
	e := &Engine{
		allow: o.Allow, noCred: o.NoCredential, credSeen: map[string]bool{}, log: o.Logger,
		open: map[openKey]*tracked{}, openKeys: map[uint64]int{}, live: map[int64]*tracked{}, changed: map[int64]*tracked{}, quiet: map[int64]*tracked{},
		newIdents: map[int64][]string{}, nextID: o.FirstID,
		pairsFloor: math.MaxInt64, succFloor: math.MaxInt64, netFloor: math.MaxInt64,
		pairs: map[uint64]int64{}, succFrom: map[uint64]success{}, succNet: map[uint64]int64{}, attackedIdent: map[valueKey]*tracked{}, attackedCred: map[valueKey]*tracked{},
		attackedIP: map[ipKey]*tracked{}, compromiseOf: map[int64]*tracked{}, routes: map[valueKey]*routeStats{},
		findings: map[string]*tracked{}, clocks: map[string]*clock{}, claimed: map[claimKey]int64{},
	}
	e.Counters.ByKind = map[string]int64{}
	e.deferRows = o.DeferRows
	e.attempts = e.newAttempts()
	e.maxSet, e.maxClaims = o.MaxIncidentSet, o.MaxEntries
	e.win = detect.NewWindows(e.windowOptions(o.Config, o.MaxGroups, o.MaxEntries))
	e.setConfig(o.Config, o.Allow)
	return e
}

func (e *Engine) windowOptions(c Config, maxGroups, maxEntries int) detect.WindowOptions {
	var o detect.WindowOptions
	o.Retain[detect.ByIP] = minutes(maxWindow(append([]time.Duration{c.Stuffing.Window}, c.Spray.Windows...)...))
	o.Retain[detect.ByNet] = minutes(c.Stuffing.Window)
	o.Retain[detect.ByCredential] = minutes(maxWindow(c.DistributedSpray.Window, c.LowAndSlow.Window))
	o.Retain[detect.ByIdentity] = minutes(c.BruteForce.Window)
	o.NetBitsV4, o.NetBits6 = c.Stuffing.NetBitsV4, c.Stuffing.NetBitsV6
	o.MaxGroups, o.MaxEntries = maxGroups, maxEntries
	return o
}

// SetConfig swaps the thresholds (on reload), keeping windows and incidents.
func (e *Engine) SetConfig(c Config, allow []netip.Prefix) {
	e.win.SetOptions(e.windowOptions(c, e.win.Options().MaxGroups, e.win.Options().MaxEntries))
	e.setConfig(c, allow)
}

func (e *Engine) setConfig(c Config, allow []netip.Prefix) {
	// The networks of addresses may change: success records write their
	// network entries afresh.
	e.syncNets()
	e.netCut++
	e.cfg, e.allow = c, allow
	e.maxRetain = 0
	for _, r := range e.win.Options().Retain {
		e.maxRetain = max(e.maxRetain, r*60)
	}
	e.minAttempts[detect.ByIP] = int64(min(c.Spray.MinIdentities, c.Stuffing.MinIdentities))
	e.minAttempts[detect.ByNet] = int64(c.Stuffing.MinIdentities)
	e.minAttempts[detect.ByCredential] = int64(min(c.DistributedSpray.MinIdentities, c.LowAndSlow.MinIdentities))
	e.minAttempts[detect.ByIdentity] = int64(min(c.BruteForce.MinFailures, c.BruteForce.MinCredentials))
}

// Windows exposes the window state (for metrics and tests).
func (e *Engine) Windows() *detect.Windows { return e.win }

// Watermark is the latest event time seen from any source.
func (e *Engine) Watermark() time.Time { return time.Unix(e.watermark, 0) }

// SourceWatermark is the latest event time of one source.
func (e *Engine) SourceWatermark(source string) time.Time {
	return time.Unix(e.clockOf(source).watermark, 0)
}

func (e *Engine) clockOf(source string) *clock {
	if c := e.lastClock; c != nil && source == e.lastSource {
		return c // most lines, and the groups judged after them, are of one source
	}
	c := e.clocks[source]
	if c == nil {
		c = &clock{} // a source's time starts with its first line
		e.clocks[source] = c
	}
	e.lastSource, e.lastClock = source, c
	return c
}

func (e *Engine) allowed(ip netip.Addr) bool {
	for _, p := range e.allow {
		if p.Contains(ip.Unmap()) {
			return true
		}
	}
	return false
}

// Observe takes one event. Events should come in (roughly) time order.
func (e *Engine) Observe(ev *ingest.Event) {
	if !e.holdAhead(ev) {
		e.observeLine(ev)
	}
}

// observeLine judges one line and counts it for the store.
func (e *Engine) observeLine(ev *ingest.Event) {
	if e.observe(ev, 1, true) {
		e.attempts.AddRoutine(ev)
	} else {
		e.attempts.Add(ev)
	}
}

// ObserveRow takes one per-minute attempt row as a fleet's agent wrote it
// (count events of one key in one minute, judged at the minute's start),
// from node. The row is already stored: it is not counted for a flush.
// Statuses, latencies and whole keys are not in rows, so the findings
// judged from them (enumeration oracles, raw credentials) are not made
// from rows.
func (e *Engine) ObserveRow(node string, k detect.AttemptKey, c detect.AttemptCount) {
	if c.Count <= 0 {
		return
	}
	ev := ingest.Event{Time: time.Unix(k.Minute*60, 0), Source: k.Source, IP: k.IP, Identity: k.Identity,
		Credential: k.Credential, Outcome: k.Outcome, Pos: c.Pos}
	ev.Pos.Node = node
	e.observe(&ev, c.Count, false)
}

// observe counts n events like ev; line says they come from a log line
// (with status, latency and the raw-key flag) rather than a stored row. It
// reports whether ev is a routine success, stored hourly (see
// detect.RoutineMinutes): no group it belongs to holds failed attempts and
// no attack tracks its address, credential or identity.
func (e *Engine) observe(ev *ingest.Event, n int64, line bool) (routine bool) {
	e.Events += n
	t := ev.Time.Unix()
	c := e.clockOf(ev.Source)
	if c.first == 0 {
		c.first = t
	}
	if t > c.watermark {
		c.watermark = t
		e.watermark = max(e.watermark, t)
		// Close what went quiet before this line can extend it, as a
		// live tick would have.
		e.closeIdle()
	}
	if e.allowed(ev.IP) {
		e.Allowed += n
		return false
	}
	if t < c.watermark-e.maxRetain {
		e.TooOld += n // no window reaches back to it: it could only distort one
		return false
	}
	if ev.Credential != "" && !ev.SchemeOnly && (ev.Source != e.credSource || len(e.credSeen) == 0) {
		e.credSeen[ev.Source] = true
		e.credSource = ev.Source
	}
	if line && ev.RawCredential {
		e.rawCredentialFinding(ev)
	}
	entry := detect.EntryAt(t)
	entry.IP, entry.Identity, entry.Credential, entry.Outcome, entry.Count, entry.Pos =
		ev.IP, ev.Identity, ev.Credential, ev.Outcome, uint32(min(n, 1<<32-1)), ev.Pos
	if ev.SchemeOnly {
		entry.Credential = "" // a bare scheme prefix cannot tell keys apart
	}
	switch {
	case ev.Outcome == ingest.Success:
		pair := "" // the credential, when the pair is remembered for stale keys
		if e.cfg.StaleKey && ev.Identity != "" && entry.Credential != "" {
			if len(e.pairs) > 1<<20 {
				clear(e.pairs)
				e.pairsCut++
			}
			pair = entry.Credential
		}
		net := e.win.NetOf(ev.IP)
		kip, knet := detect.GroupKey{Grouping: detect.ByIP, Source: ev.Source, IP: ev.IP}, detect.GroupKey{Grouping: detect.ByNet, Source: ev.Source, Net: net}
		hip, hnet := e.win.HashOf(kip), e.win.HashOf(knet)
		e.win.Prefetch(hip, hnet) // their misses overlap the success record's
		e.rememberSuccess(ev.Source, ev.Identity, ev.IP, net, t, pair)
		attacked := e.checkCompromise(ev, t)
		gip := e.win.AddHashed(kip, hip, entry)
		gnet := e.win.AddHashed(knet, hnet, entry)
		routine = !attacked && gip != nil && gip.Attempts == 0 && gnet != nil && gnet.Attempts == 0
		// An identity's and a credential's successes matter only next to
		// their failures (an attack that got in): benign identities and
		// keys keep no entries.
		if k := (detect.GroupKey{Grouping: detect.ByIdentity, Source: ev.Source, Value: ev.Identity}); ev.Identity != "" {
			if g := e.win.Get(k); g != nil && g.Attempts > 0 {
				e.win.Add(k, entry)
				routine = false
			}
		}
		if k := (detect.GroupKey{Grouping: detect.ByCredential, Source: ev.Source, Value: entry.Credential}); entry.Credential != "" {
			if g := e.win.Get(k); g != nil && g.Attempts > 0 {
				e.win.Add(k, entry)
				routine = false
			}
		}
	case ev.Outcome.Attempt():
		if e.cfg.StaleKey && entry.Credential != "" {
			if e.hasPair(pairOf(ev.Source, ev.Identity, entry.Credential)) {
				entry.Stale = true
				e.Stale += n
			}
		}
		keys := e.keysOf(ev.Source, &entry)
		var hashes, found [4]uint64 // of keys: as their groups know them, and as the windows find them
		for i, k := range keys {
			found[i] = e.win.HashOf(k)
		}
		e.win.Prefetch(found[:len(keys)]...)
		for i, k := range keys {
			if k.Grouping == detect.ByIP || k.Grouping == detect.ByNet || !entry.Stale {
				if g := e.win.AddHashed(k, found[i], entry); g != nil {
					g.Route = ev.Route
					hashes[i] = g.KeyHash()
				}
			}
		}
		if !entry.Stale && len(e.open) > 0 {
			for i, k := range keys {
				if hashes[i] == 0 {
					hashes[i] = k.Hash()
				}
			}
			e.absorbLive(keys, hashes[:len(keys)], &entry, t)
		}
		if line && ev.Outcome != ingest.Throttled {
			e.observeRoute(ev, t)
		}
	case ev.Outcome == ingest.MissingCredential && line:
		// No guess, but a known identity's answer for the oracle.
		e.observeRoute(ev, t)
	}
	if t > c.lastEval {
		e.evaluate()
	}
	return routine
}

// rememberSuccess notes that identity succeeded from ip (and its network
// net) at t: its failures from there are its owner's mistakes, not an
// attack. With a credential, the pair is remembered in pairs too, from its
// first success: the address's record holds a hash of the credential it
// last did so for, and while no pair has been dropped since, the lookup in
// pairs is spared (a client keeps its address and key, and this is one
// cache miss a line).
func (e *Engine) rememberSuccess(source, identity string, ip netip.Addr, net netip.Prefix, t int64, cred string) {
	if identity == "" {
		return
	}
	if len(e.succFrom) > succCap {
		e.syncNets() // the records' network times would be lost
		clear(e.succFrom)
	}
	if len(e.succNet) > succCap {
		clear(e.succNet)
		e.netCut++
	}
	k := succOf(source, identity, ip, netip.Prefix{})
	sp, ok := e.succFrom[k]
	if ok {
		sp.last = max(sp.last, t)
		sp.first = min(sp.first, t)
	} else {
		sp = success{first: t, last: t}
		e.succFloor = min(e.succFloor, t)
	}
	if cred != "" {
		if ch := maphash.String(pairSeed, cred); !ok || sp.cred != ch || sp.pairsCut != e.pairsCut {
			first := false
			if pair := pairOf(source, identity, cred); !e.hasPair(pair) {
				e.setPair(pair, t)
				first = true
			}
			sp.cred, sp.pairsCut = ch, e.pairsCut
			e.keyOwners.note(source, cred, identity, t, first, e.cfg.Spray.MinIdentities)
		}
	}
	if ok && sp.netCut == e.netCut {
		sp.netLast = max(sp.netLast, t) // succNet[sp.net] exists: syncNets raises it
	} else {
		n := succOf(source, identity, netip.Addr{}, net)
		v, had := e.succNet[n]
		if !had {
			e.netFloor = min(e.netFloor, max(0, t))
		}
		e.succNet[n] = max(v, t)
		sp.net, sp.netLast, sp.netCut = n, t, e.netCut
	}
	e.succFrom[k] = sp
}

// succCap is how many entries succFrom and succNet hold before they are
// cleared (a variable for tests).
var succCap = 1 << 20

// syncNets raises succNet's times to the latest successes the records
// hold since they last wrote them (see success).
func (e *Engine) syncNets() {
	for _, sp := range e.succFrom {
		if sp.netCut != e.netCut {
			continue
		}
		if v, ok := e.succNet[sp.net]; ok && sp.netLast > v {
			e.succNet[sp.net] = sp.netLast
		}
	}
}

// ownersMistake reports whether a failed attempt is on an identity that
// succeeds from the same address (for network groups, and for the identity's
// own group, the same network):
// an owner's typo or stale worker behind a NAT or on a busy network, not a
// victim. Successes are remembered as long as key ownership is.
func (e *Engine) ownersMistake(source string, g detect.Grouping, en *detect.Entry) bool {
	if en.Identity == "" {
		return false
	}
	_, fromIP := e.succFrom[succOf(source, en.Identity, en.IP, netip.Prefix{})]
	if g == detect.ByNet || g == detect.ByIdentity && !fromIP {
		// Network rules judge networks; and an identity's own failures
		// from its network are its owner's too (a second server of the
		// same client, still sending a rotated key).
		_, ok := e.succNet[succOf(source, en.Identity, netip.Addr{}, e.win.NetOf(en.IP))]
		return ok
	}
	return fromIP
}

// succeededFrom reports whether identity succeeded from ip before t.
func (e *Engine) succeededFrom(source, identity string, ip netip.Addr, t int64) bool {
	sp, ok := e.succFrom[succOf(source, identity, ip, netip.Prefix{})]
	return ok && sp.first < t
}

// Remember takes an event from before the period being judged (a replay's
// --since): it teaches who owns which key, for stale-key and owner
// suppression, and nothing else.
func (e *Engine) Remember(ev *ingest.Event) {
	if ev.Outcome != ingest.Success || ev.Identity == "" || ev.Credential == "" || ev.SchemeOnly || e.allowed(ev.IP) {
		return
	}
	k := pairOf(ev.Source, ev.Identity, ev.Credential)
	if t, ok := e.pairs[k]; !ok || ev.Time.Unix() < t {
		e.setPair(k, ev.Time.Unix())
	}
	e.rememberSuccess(ev.Source, ev.Identity, ev.IP, e.win.NetOf(ev.IP), ev.Time.Unix(), "")
}

// keysOf returns the groups an attempt belongs to.
func (e *Engine) keysOf(source string, en *detect.Entry) []detect.GroupKey {
	keys := e.scratch.keys[:0]
	keys = append(keys,
		detect.GroupKey{Grouping: detect.ByIP, Source: source, IP: en.IP},
		detect.GroupKey{Grouping: detect.ByNet, Source: source, Net: e.win.NetOf(en.IP)})
	if en.Credential != "" {
		keys = append(keys, detect.GroupKey{Grouping: detect.ByCredential, Source: source, Value: en.Credential})
	}
	if en.Identity != "" {
		keys = append(keys, detect.GroupKey{Grouping: detect.ByIdentity, Source: source, Value: en.Identity})
	}
	e.scratch.keys = keys
	return keys
}

var kindsOf = [...][]string{
	detect.ByIP:         {KindSpray, KindStuffing},
	detect.ByNet:        {KindStuffing, KindSpray}, // spray: logs without credentials
	detect.ByCredential: {KindDistributedSpray, KindLowAndSlow},
	detect.ByIdentity:   {KindBruteForce},
}

// Kind names re-exported for readability inside the package.
const (
	KindSpray            = detect.KindSpray
	KindDistributedSpray = detect.KindDistributedSpray
	KindLowAndSlow       = detect.KindLowAndSlow
	KindBruteForce       = detect.KindBruteForce
	KindStuffing         = detect.KindStuffing
	KindCompromise       = detect.KindCompromise
	KindEnumeration      = detect.KindEnumeration
	KindRawCredentials   = detect.KindRawCredentials
	KindNoRateLimit      = detect.KindNoRateLimit
)

// absorbLive adds an attempt to the first open incident of its groups (of
// the given Hash), in
// the order address, network, credential, identity: one attempt is reported
// by one incident.
func (e *Engine) absorbLive(keys []detect.GroupKey, hashes []uint64, en *detect.Entry, t int64) {
	for i, k := range keys {
		if !e.openOnHash(hashes[i]) {
			continue
		}
		for _, kind := range kindsOf[k.Grouping] {
			if tr := e.open[openKey{k, kind}]; tr != nil && e.fits(k, kind, en) {
				_, known := tr.ips[en.IP]
				e.absorb(tr, en, t, t)
				if !known {
					e.lookBack(tr, k.Source, en.IP)
				}
				return
			}
		}
	}
}

// lookBack judges the successes an address made since its attack began,
// when the address joins the attack after them (an attacker spreading a
// stuffing run over a network may get in from an address before its first
// failure is seen).
func (e *Engine) lookBack(tr *tracked, source string, ip netip.Addr) {
	if !e.cfg.Compromise.Enabled || !attackKind(tr.inc.Kind) {
		return
	}
	if g := e.win.Get(detect.GroupKey{Grouping: detect.ByIP, Source: source, IP: ip}); g != nil {
		e.judgeSuccesses(tr, g)
	}
	e.leakedKeyUse(tr, source, ip)
}

// absorb adds an entry's attempts to an incident.
func (e *Engine) absorb(tr *tracked, en *detect.Entry, first, last int64) {
	inc := tr.inc
	inc.Attempts += int64(en.Count)
	// Only attacks mark what they touched for compromise checks and claim
	// their attempts; findings and compromises themselves do not.
	attack := attackKind(inc.Kind)
	if attack && (e.maxClaims == 0 || len(e.claimed) < e.maxClaims) {
		e.claimed[claimOf(inc.Source, en)] = en.Minute
	}
	if en.Outcome == ingest.Throttled {
		inc.Throttled = true
	}
	if _, ok := tr.ips[en.IP]; !ok && en.IP.IsValid() && e.room(len(tr.ips)) {
		tr.ips[en.IP] = struct{}{}
		inc.IPs = append(inc.IPs, en.IP.String())
		if attack {
			e.attackedIP[ipKey{inc.Source, en.IP}] = tr
		}
	}
	if _, ok := tr.creds[en.Credential]; !ok && en.Credential != "" {
		tr.creds[en.Credential] = struct{}{}
		inc.Credentials = append(inc.Credentials, en.Credential)
		if attack {
			e.attackedCred[valueKey{inc.Source, en.Credential}] = tr
		}
	}
	if _, ok := tr.idents[en.Identity]; !ok && en.Identity != "" && e.room(len(tr.idents)) {
		tr.idents[en.Identity] = struct{}{}
		inc.Identities++
		if len(inc.IdentitySample) < detect.MaxIdentitySample {
			inc.IdentitySample = append(inc.IdentitySample, en.Identity)
		}
		e.newIdents[inc.ID] = append(e.newIdents[inc.ID], en.Identity)
		if attack {
			e.attackedIdent[valueKey{inc.Source, en.Identity}] = tr
		}
	}
	if len(inc.Evidence) < detect.MaxEvidence && en.Pos.File != "" {
		inc.Evidence = append(inc.Evidence, en.Pos)
	}
	ft, lt := time.Unix(first, 0).UTC(), time.Unix(last, 0).UTC()
	if inc.FirstSeen.IsZero() || ft.Before(inc.FirstSeen) {
		inc.FirstSeen = ft
	}
	if lt.After(inc.LastSeen) {
		inc.LastSeen = lt
	}
	tr.last = max(tr.last, last)
	e.changed[inc.ID] = tr
}

// attackKind reports whether incidents of a kind are attacks, as opposed to
// a compromise or a finding about the API or its logs.
func attackKind(kind string) bool {
	switch kind {
	case KindSpray, KindDistributedSpray, KindLowAndSlow, KindBruteForce, KindStuffing:
		return true
	}
	return false
}

// room reports whether an incident's set of n addresses or identities may
// grow, counting what the cap keeps out.
func (e *Engine) room(n int) bool {
	if e.maxSet > 0 && n >= e.maxSet {
		e.Untracked++
		return false
	}
	return true
}

// newIncident starts tracking an incident.
func (e *Engine) newIncident(kind, severity, source string, key detect.GroupKey, rule detect.Rule) *tracked {
	inc := &detect.Incident{ID: e.nextID, Kind: kind, Severity: severity, Source: source, Group: key.String(),
		State: detect.StateOpen, Rule: rule, CredentialsKnown: !e.credentialless(source),
		IPs: []string{}, Credentials: []string{}, IdentitySample: []string{}, Compromised: []string{}, Evidence: []ingest.Pos{},
		Raised: time.Unix(e.clockOf(source).watermark, 0).UTC()}
	e.nextID++
	tr := &tracked{inc: inc, key: key, ips: map[netip.Addr]struct{}{}, creds: map[string]struct{}{},
		idents: map[string]struct{}{}, compromised: map[string]struct{}{}}
	e.live[inc.ID] = tr
	e.changed[inc.ID] = tr
	e.Incidents++
	e.ByKind[kind]++
	e.log.Info("incident raised", "id", inc.ID, "kind", kind, "source", source, "group", inc.Group)
	return tr
}

// evaluate judges the groups changed since the last call, each on its
// source's clock, closes idle incidents and prunes old window entries.
func (e *Engine) evaluate() {
	for _, c := range e.clocks {
		c.lastEval = c.watermark
	}
	e.judgeHeld(false)
	e.judgeDirty()
	e.closeIdle()
	if now := e.watermark / 60; now > e.lastPrune {
		e.lastPrune = now
		e.prune(now)
	}
}

func (e *Engine) judgeDirty() {
	for _, g := range e.win.TakeDirty() {
		e.judge(g, e.clockOf(g.Source()).watermark/60)
	}
}

// closeIdle closes attack incidents quiet for longer than the cooldown on
// their source's clock.
func (e *Engine) closeIdle() {
	cooldown := int64(e.cfg.Cooldown / time.Second)
	for id, tr := range e.live {
		if tr.inc.Kind == KindRawCredentials || tr.inc.Kind == KindEnumeration || tr.inc.Kind == KindNoRateLimit {
			continue
		}
		if e.clockOf(tr.inc.Source).watermark-tr.last > cooldown {
			e.rateLimitFinding(tr)
			tr.inc.State = detect.StateClosed
			e.changed[id] = tr
			delete(e.live, id)
			for _, k := range tr.groupKeys() {
				e.unsetOpen(k, tr.inc.Kind)
			}
		}
	}
}

// setOpen notes that incident tr is open on group k.
func (e *Engine) setOpen(k detect.GroupKey, kind string, tr *tracked) {
	ok := openKey{k, kind}
	if _, had := e.open[ok]; !had {
		e.openOn(k) // brings openKeys up to date first
		e.openKeys[k.Hash()]++
		e.openN++
	}
	e.open[ok] = tr
}

// unsetOpen notes that no incident of kind is open on k any more.
func (e *Engine) unsetOpen(k detect.GroupKey, kind string) {
	ok := openKey{k, kind}
	if _, had := e.open[ok]; !had {
		return
	}
	e.openOn(k)
	delete(e.open, ok)
	h := k.Hash()
	if e.openKeys[h]--; e.openKeys[h] <= 0 {
		delete(e.openKeys, h)
	}
	e.openN--
}

// openOn reports whether some incident may be open on k (a hash collision
// answers yes: the caller looks k up by kind next).
func (e *Engine) openOn(k detect.GroupKey) bool {
	if len(e.open) == 0 {
		return false
	}
	return e.openOnHash(k.Hash())
}

// openOnHash is openOn given the key's Hash (a group's KeyHash).
func (e *Engine) openOnHash(h uint64) bool {
	if len(e.open) == 0 {
		return false
	}
	if e.openN != len(e.open) {
		clear(e.openKeys)
		for ok := range e.open {
			e.openKeys[ok.key.Hash()]++
		}
		e.openN = len(e.open)
	}
	return e.openKeys[h] > 0
}

func (e *Engine) prune(now int64) {
	e.win.Prune(func(source string) int64 { return e.clockOf(source).watermark / 60 }, func(g *detect.Group) bool {
		if !e.openOnHash(g.KeyHash()) {
			return false
		}
		for _, kind := range kindsOf[g.Grouping()] {
			if e.open[openKey{g.Key(), kind}] != nil {
				return true
			}
		}
		return false
	})
	horizon := e.watermark - int64(maxWindow(e.cfg.Compromise.Within, e.cfg.Compromise.WithinLowAndSlow)/time.Second)
	if now%15 == 0 { // every 15 event-minutes is plenty for these maps
		for k, tr := range e.attackedIdent {
			if tr.inc.State == detect.StateClosed && tr.last < horizon {
				delete(e.attackedIdent, k)
			}
		}
		for k, tr := range e.attackedCred {
			if tr.inc.State == detect.StateClosed && tr.last < horizon {
				delete(e.attackedCred, k)
			}
		}
		for k, tr := range e.attackedIP {
			if tr.inc.State == detect.StateClosed && tr.last < horizon {
				delete(e.attackedIP, k)
			}
		}
		var retain int64
		for _, r := range e.win.Options().Retain {
			retain = max(retain, r)
		}
		for k, minute := range e.claimed {
			if minute < now-retain {
				delete(e.claimed, k)
			}
		}
		e.dropStale(e.watermark - int64(pairMemory/time.Second))
	}
}

// dropStale forgets the pairs and successes last seen before stale, when
// the floors say some may be. The records raise their networks' times
// first (syncNets), so succNet's times are what every success wrote; a
// record kept whose network entry may have been dropped writes it afresh
// with its next success.
func (e *Engine) dropStale(stale int64) {
	if e.pairsFloor < stale {
		e.pairsFloor = math.MaxInt64
		for k, t := range e.pairs {
			if t < stale {
				delete(e.pairs, k)
				e.pairsCut++
			} else {
				e.pairsFloor = min(e.pairsFloor, t)
			}
		}
	}
	e.keyOwners.prune(stale)
	if e.succFloor >= stale && e.netFloor >= stale {
		return // a record's times are at least its floor: nothing raised is stale either
	}
	e.syncNets()
	e.succFloor, e.netFloor = math.MaxInt64, math.MaxInt64
	for k, t := range e.succNet {
		if t < stale {
			delete(e.succNet, k)
		} else {
			e.netFloor = min(e.netFloor, t)
		}
	}
	for k, sp := range e.succFrom {
		switch {
		case sp.last < stale:
			delete(e.succFrom, k)
			continue
		case sp.netCut == e.netCut && sp.netLast < stale:
			// Its network entry may be gone (its time was below stale):
			// the record's next success writes it afresh.
			sp.netCut--
			e.succFrom[k] = sp
		}
		e.succFloor = min(e.succFloor, sp.last)
	}
}

// Finish judges everything still pending, as at the end of a replay, and
// audits the routes of the attacks still open.
func (e *Engine) Finish() {
	for _, c := range e.clocks {
		c.lastEval = c.watermark
	}
	e.judgeDirty()
	e.takeAllHeld()
	e.judgeHeld(true)
	ids := make([]int64, 0, len(e.live))
	for id := range e.live {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		e.rateLimitFinding(e.live[id])
	}
}

// Tick lets a live daemon judge pending groups and close quiet incidents
// when no new line has moved event time forward. now is event time: the
// daemon passes a source's latest event time plus the wall time elapsed
// since it was read. Tick moves every source's clock to now; TickSource
// moves one.
func (e *Engine) Tick(now time.Time) {
	t := now.Unix()
	for _, c := range e.clocks {
		c.watermark = max(c.watermark, t)
	}
	e.watermark = max(e.watermark, t)
	e.takeHeldReached()
	e.evaluate()
}

// TickSource is Tick for one source, for a daemon that knows which sources
// have caught up with their files: a source still reading a backlog must
// not have its clock moved to the others' time.
func (e *Engine) TickSource(source string, now time.Time) {
	c := e.clockOf(source)
	c.watermark = max(c.watermark, now.Unix())
	e.watermark = max(e.watermark, c.watermark)
	e.takeHeldReached()
	e.evaluate()
}

// setUpdated stamps a changed incident with its source's event time (not
// another source's: one may be reading a backlog), never before its last
// line: a judge's clock moves in whole minutes of rows, while a finding a
// node reported carries its lines' seconds.
func (e *Engine) setUpdated(inc *detect.Incident) {
	inc.Updated = time.Unix(e.clockOf(inc.Source).watermark, 0).UTC()
	if inc.LastSeen.After(inc.Updated) {
		inc.Updated = inc.LastSeen.UTC()
	}
}

// TakeBatch hands over everything pending (attempt counts, changed
// incidents as snapshots, new incident identities) merged into extra, so the
// caller can write it with a Flusher, from another goroutine if it
// likes, and retry it if the database is locked or full: nothing pending is
// lost. It also returns the snapshots for the sinks.
func (e *Engine) TakeBatch(extra detect.Batch) (detect.Batch, []detect.Incident) {
	b := extra
	b.Attempts = e.attempts
	if e.spare != nil {
		e.attempts, e.spare = e.spare, nil
	} else {
		e.attempts = e.newAttempts()
	}
	b.Identities = e.newIdents
	e.newIdents = map[int64][]string{}
	ids := make([]int64, 0, len(e.changed))
	for id := range e.changed {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	snaps := make([]detect.Incident, 0, len(ids))
	for _, id := range ids {
		tr := e.changed[id]
		tr.inc.Summary = summary(tr) + ownersLine(tr.inc)
		e.setUpdated(tr.inc)
		if e.unwritten[id] {
			delete(e.unwritten, id)
		} else {
			tr.inc.Version++
		}
		snap := *tr.inc
		// Clones of empty lists stay empty lists, not null, in JSON.
		snap.IPs = append([]string{}, tr.inc.IPs...)
		snap.Credentials = append([]string{}, tr.inc.Credentials...)
		snap.IdentitySample = append([]string{}, tr.inc.IdentitySample...)
		snap.Compromised = append([]string{}, tr.inc.Compromised...)
		snap.Evidence = append([]ingest.Pos{}, tr.inc.Evidence...)
		snaps = append(snaps, snap)
	}
	for i := range snaps {
		b.Incidents = append(b.Incidents, &snaps[i])
	}
	for id, tr := range e.quiet {
		if _, ok := e.changed[id]; !ok {
			if attackKind(tr.inc.Kind) {
				tr.inc.Summary = summary(tr) + ownersLine(tr.inc)
			}
			e.setUpdated(tr.inc)
			snap := *tr.inc
			b.Quiet = append(b.Quiet, &snap)
		}
	}
	clear(e.changed)
	clear(e.quiet)
	return b, snaps
}

// Flusher writes a batch in one transaction: detect.Store (SQLite) and
// postgres.Store do.
type Flusher interface {
	Flush(ctx context.Context, b detect.Batch) error
}

// Flush takes the pending batch and writes it in one transaction. When the
// write fails (database locked or full) the batch goes back into the engine,
// merged with what came since, for the next Flush: nothing is lost.
func (e *Engine) Flush(ctx context.Context, s Flusher, extra detect.Batch) ([]detect.Incident, error) {
	b, snaps := e.TakeBatch(extra)
	if err := s.Flush(ctx, b); err != nil {
		e.Requeue(b)
		return nil, err
	}
	e.Recycle(b.Attempts)
	return snaps, nil
}

// Requeue puts back a batch from TakeBatch that could not be written,
// merged with what came since, for the next batch: nothing pending is lost.
func (e *Engine) Requeue(b detect.Batch) {
	b.Attempts.Absorb(e.attempts)
	e.attempts = b.Attempts
	for id, idents := range b.Identities {
		e.newIdents[id] = append(idents, e.newIdents[id]...)
	}
	for _, inc := range b.Quiet {
		if tr := e.live[inc.ID]; tr != nil {
			e.quiet[inc.ID] = tr
		}
	}
	for _, inc := range b.Incidents {
		if e.unwritten == nil {
			e.unwritten = map[int64]bool{}
		}
		e.unwritten[inc.ID] = true
		if tr := e.live[inc.ID]; tr != nil {
			e.changed[inc.ID] = tr
		} else if _, ok := e.changed[inc.ID]; !ok {
			// closed since: write the snapshot as it was taken
			snap := *inc
			e.changed[inc.ID] = &tracked{inc: &snap}
		}
	}
}

// Recycle hands back the aggregate of a batch from TakeBatch once it is
// written (and so empty), to hold the rows of a later batch.
func (e *Engine) Recycle(a *detect.Attempts) {
	if a != nil && a.Len() == 0 && a != e.attempts {
		e.spare = a
	}
}

// Pending reports how many attempt rows wait for a flush (with
// Options.DeferRows, how many lines: at least as many).
func (e *Engine) Pending() int { return e.attempts.MaxLen() }

func (e *Engine) newAttempts() *detect.Attempts {
	if e.deferRows {
		return detect.NewDeferredAttempts()
	}
	return detect.NewAttempts()
}

func summary(tr *tracked) string {
	inc := tr.inc
	creds := "unknown credentials"
	if len(inc.Credentials) > 0 {
		creds = fmt.Sprintf("%d credential(s) %s", len(inc.Credentials), short(inc.Credentials, 3))
	}
	switch inc.Kind {
	case KindSpray:
		return fmt.Sprintf("%s sprayed %s across %d identities (%d attempts)", short(inc.IPs, 3), creds, inc.Identities, inc.Attempts)
	case KindDistributedSpray:
		return fmt.Sprintf("%s failed on %d identities from %d addresses (%d attempts)", creds, inc.Identities, len(inc.IPs), inc.Attempts)
	case KindLowAndSlow:
		return fmt.Sprintf("low-and-slow: %s tried on %d identities from %d addresses, each rarely (%d attempts)", creds, inc.Identities, len(inc.IPs), inc.Attempts)
	case KindBruteForce:
		if len(inc.Credentials) == 0 {
			return fmt.Sprintf("%d failed attempts against %s from %d address(es), with unknown credentials", inc.Attempts, short(inc.IdentitySample, 1), len(inc.IPs))
		}
		return fmt.Sprintf("%d credentials tried against %s from %d address(es) (%d attempts)", len(inc.Credentials), short(inc.IdentitySample, 1), len(inc.IPs), inc.Attempts)
	case KindStuffing:
		s := fmt.Sprintf("%s tried %d identities with about one credential each (%d credentials, %d attempts)", short(inc.IPs, 3), inc.Identities, len(inc.Credentials), inc.Attempts)
		if len(tr.nets) > 1 {
			s += fmt.Sprintf("; a storm from %d networks, %d addresses", len(tr.nets), len(inc.IPs))
		}
		return s
	case KindCompromise:
		who := short(inc.Compromised, 5)
		switch {
		case len(inc.Compromised) == 1 && inc.Compromised[0] == detect.IdentityNotInLog:
			who = "a request whose identity is not in this log"
		case len(inc.Compromised) == 1:
			who = "identity " + who
		default:
			who = fmt.Sprintf("%d identities (%s)", len(inc.Compromised), who)
		}
		how := "from an attacking address or with an attacking credential"
		switch {
		case !tr.notFromIP && !tr.notWithCred:
			how = "from an attacking address with an attacking credential"
		case !tr.notFromIP:
			how = "from an attacking address"
		case !tr.notWithCred:
			how = "with an attacking credential"
		}
		s := fmt.Sprintf("%s succeeded %s after incident %d", who, how, inc.Related)
		if len(inc.KeysKnown) > 0 {
			s += fmt.Sprintf("; the working key of %s was among the attacking credentials: attackers know it, rotate it", short(inc.KeysKnown, 5))
		}
		return s
	}
	return inc.Summary
}

// ownersLine is the line an attack's summary gets for the attacked
// identities their owners used afterwards.
func ownersLine(inc *detect.Incident) string {
	if inc.OwnersReturned == 0 {
		return ""
	}
	return fmt.Sprintf("; %d attacked identit%s later used by their owners", inc.OwnersReturned, plural(inc.OwnersReturned, "y was", "ies were"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func short(xs []string, n int) string {
	if len(xs) <= n {
		return strings.Join(xs, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(xs[:n], ", "), len(xs)-n)
}

func durString(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// credentialless reports whether source is judged as a log without
// credentials: configured so, or no line of it has shown one yet.
func (e *Engine) credentialless(source string) bool {
	return e.noCred[source] || !e.credSeen[source]
}
