package rules

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
)

// scratch holds maps reused across judgements so that evaluation does not
// allocate per group.
type scratch struct {
	keys  []detect.GroupKey
	tries map[string]int
	succ  map[string]struct{}
	creds map[string]struct{}
	ips   map[netip.Addr]struct{}
	hours map[identHour]int
	// idents holds the few distinct identities manyIdentities counts;
	// bounds what it found of the groups judged in the current minute.
	idents []string
	bounds identBounds
	quiet  quietMemo // (start.go)
}

// identityBound turns manyIdentities on (tests turn it off to compare).
var identityBound = true

// identBounds remembers, for the groups judged in one event minute, the
// identities found when there were too few: between two prunes and within
// a minute a group's entries are only appended to (a line of the same
// minute, address and identity adds to an entry's count), so a group
// judged again needs only its new entries looked at.
type identBounds struct {
	minute, pruned int64
	m              map[uint64]identBound
}

type identBound struct {
	g      *detect.Group
	n      int      // entries looked at
	idents []string // the distinct identities among them
}

type identHour struct {
	identity string
	hour     int64
}

func (s *scratch) reset() *scratch {
	if s.tries == nil {
		s.tries, s.succ, s.creds, s.ips, s.hours = map[string]int{}, map[string]struct{}{}, map[string]struct{}{}, map[netip.Addr]struct{}{}, map[identHour]int{}
	}
	return s
}

// windowStats are the counts a rule is judged on.
type windowStats struct {
	failedIdentities int // distinct identities with failed attempts
	successIdents    int // distinct identities with successes
	credentials      int // distinct credentials among failed attempts
	ips              int
	attempts         int64
	// fewTries counts failed identities with at most the rule's number of
	// tries.
	fewTries int
}

func (e *Engine) stats(g *detect.Group, from, to int64, maxTries int) windowStats {
	s := e.scratch.reset()
	clear(s.tries)
	clear(s.succ)
	clear(s.creds)
	clear(s.ips)
	var st windowStats
	for i := range g.Len() {
		if m := g.Minute(i); m < from || m > to {
			continue
		}
		en := g.At(i)
		switch {
		case en.Outcome == ingest.Success:
			if en.Identity != "" {
				s.succ[en.Identity] = struct{}{}
			}
		case en.Outcome.Attempt() && !en.Stale && !e.keyOwners.worksForMany(g.Source(), en.Credential) && !e.isClaimed(g.Source(), &en) &&
			!e.ownersMistake(g.Source(), g.Grouping(), &en) && !(g.Grouping() == detect.ByIdentity && e.ownKeyElsewhere(g.Source(), &en)):
			st.attempts += int64(en.Count)
			if en.Identity != "" {
				s.tries[en.Identity] += int(en.Count)
			}
			if en.Credential != "" {
				s.creds[en.Credential] = struct{}{}
			}
			s.ips[en.IP] = struct{}{}
		}
	}
	st.failedIdentities, st.successIdents, st.credentials, st.ips = len(s.tries), len(s.succ), len(s.creds), len(s.ips)
	for _, n := range s.tries {
		if n <= maxTries {
			st.fewTries++
		}
	}
	return st
}

// judge evaluates the rules of one changed group at now (a Unix minute).
func (e *Engine) judge(g *detect.Group, now int64) {
	if g.Attempts < e.minAttempts[g.Grouping()] {
		return // too few failures for any rule of this grouping
	}
	if g.Grouping() != detect.ByNet {
		e.judgeGroup(g, now)
		return
	}
	if !quietNets || g.Len() < quietMin {
		e.judgeGroup(g, now) // (a small network costs less to judge than to remember)
		return
	}
	if e.stillQuiet(g, now) {
		return // judged this minute, and nothing came that could change it
	}
	before := e.quietState(g)
	if e.judgeGroup(g, now) && e.quietState(g) == before {
		e.noteQuiet(g, now)
	}
}

// judgeGroup is judge without the memo of quiet networks (start.go); it
// reports whether g's rules were judged (not left out as too small, or
// already an incident).
func (e *Engine) judgeGroup(g *detect.Group, now int64) bool {
	if e.openOnHash(g.KeyHash()) {
		for _, kind := range kindsOf[g.Grouping()] {
			if e.open[openKey{g.Key(), kind}] != nil {
				return false // the group's attack is already an incident being updated
			}
		}
	}
	if identityBound && g.Grouping() != detect.ByIdentity && !e.manyIdentities(g, now, int(e.minAttempts[g.Grouping()])) {
		return false // too few identities for any rule of this grouping
	}
	switch g.Grouping() {
	case detect.ByIP:
		if !e.judgeSpray(g, now) && !e.judgeStuffing(g, now) {
			e.judgeManySpray(g, now)
		}
	case detect.ByNet:
		if e.credentialless(g.Source()) {
			e.judgeNetSpray(g, now)
		} else {
			e.judgeStuffing(g, now)
		}
	case detect.ByCredential:
		if !e.judgeDistributed(g, now) {
			e.judgeLowAndSlow(g, now)
		}
	case detect.ByIdentity:
		e.judgeBruteForce(g, now)
	}
	return true
}

func (e *Engine) judgeSpray(g *detect.Group, now int64) bool {
	r := e.cfg.Spray
	if !r.Enabled {
		return false
	}
	for _, w := range r.Windows {
		st := e.stats(g, now-minutes(w)+1, now, 1<<30)
		if st.failedIdentities < r.MinIdentities || st.failedIdentities <= st.successIdents {
			continue
		}
		// Without credentials (or with only unknowable ones) a spray is
		// still many identities from one address.
		if st.credentials > 0 && (st.credentials > r.MaxCredentials || float64(st.failedIdentities)/float64(st.credentials) < r.MinRatio) {
			continue
		}
		e.raise(g, KindSpray, detect.SeverityHigh, detect.Rule{Name: "spray_single_source", Window: durString(w),
			Thresholds: map[string]any{"min_identities": r.MinIdentities, "max_credentials": r.MaxCredentials, "min_identities_per_credential": r.MinRatio}})
		return true
	}
	return false
}

// judgeManySpray reports the one-address sprays that the spray rule's few
// credentials and stuffing's one credential per identity leave between
// them: a list of keys or passwords tried across identities. It is judged
// after both, so it never takes one of theirs. With at least
// spray.min_identities failed identities (failed outnumbering successful
// ones), it fires when
//   - each credential failed on spray.min_identities_per_credential
//     identities on average, however many credentials there are;
//   - or identities were tried with two or more credentials, and
//     credentials on two or more identities, on average: a list of keys
//     sprayed over a few identities;
//   - or at least credential_stuffing.min_identities failed with fewer
//     credentials than stuffing's credential_stuffing.min_credentials_per_identity:
//     the credentials repeat, so these are no leaked pairs.
//
// A client's own key fails on its own identity only, so benign failures
// (stale keys, revoked integrations, owners' typos) are about one
// credential per identity and one identity per credential, and meet none
// of these.
func (e *Engine) judgeManySpray(g *detect.Group, now int64) bool {
	r := e.cfg.Spray
	if !r.Enabled || e.credentialless(g.Source()) {
		return false
	}
	// A shorter window holds no more identities than the longest: most
	// addresses judged here are answered by one count.
	if e.stats(g, now-minutes(maxWindow(r.Windows...))+1, now, 1<<30).failedIdentities < r.MinIdentities {
		return false
	}
	for _, w := range r.Windows {
		from := now - minutes(w) + 1
		st := e.stats(g, from, now, 1<<30)
		if st.failedIdentities < r.MinIdentities || st.failedIdentities <= st.successIdents || st.credentials == 0 {
			continue
		}
		pairs := float64(e.failedPairs(g, from, now))
		ids, creds := float64(st.failedIdentities), float64(st.credentials)
		perCred, perIdent := pairs/creds, pairs/ids
		if perCred < r.MinRatio && (perCred < 2 || perIdent < 2) &&
			(st.failedIdentities < e.cfg.Stuffing.MinIdentities || creds/ids >= e.cfg.Stuffing.MinRatio) {
			continue
		}
		e.raise(g, KindSpray, detect.SeverityHigh, detect.Rule{Name: "spray_many_credentials", Window: durString(w),
			Thresholds: map[string]any{"min_identities": r.MinIdentities, "min_identities_per_credential": r.MinRatio,
				"stuffing_min_identities": e.cfg.Stuffing.MinIdentities, "stuffing_min_credentials_per_identity": e.cfg.Stuffing.MinRatio}})
		return true
	}
	return false
}

// failedPairs counts the distinct (identity, credential) pairs of the
// failed attempts stats counts in g between minutes from and to.
func (e *Engine) failedPairs(g *detect.Group, from, to int64) int {
	seen := map[[2]string]struct{}{}
	for i := range g.Len() {
		if m := g.Minute(i); m < from || m > to {
			continue
		}
		en := g.At(i)
		if en.Identity == "" || en.Credential == "" || !en.Outcome.Attempt() || en.Stale || e.keyOwners.worksForMany(g.Source(), en.Credential) ||
			e.isClaimed(g.Source(), &en) || e.ownersMistake(g.Source(), g.Grouping(), &en) {
			continue
		}
		seen[[2]string{en.Identity, en.Credential}] = struct{}{}
	}
	return len(seen)
}

func (e *Engine) judgeStuffing(g *detect.Group, now int64) bool {
	r := e.cfg.Stuffing
	if !r.Enabled || e.credentialless(g.Source()) {
		return false
	}
	st := e.stats(g, now-minutes(r.Window)+1, now, r.MaxTriesPerIdentity)
	if st.failedIdentities < r.MinIdentities || st.credentials == 0 || st.failedIdentities <= st.successIdents {
		return false
	}
	if float64(st.credentials)/float64(st.failedIdentities) < r.MinRatio || st.fewTries*2 <= st.failedIdentities {
		return false
	}
	if g.Grouping() == detect.ByNet {
		if st.ips < 2 {
			return false // a single address is judged as itself
		}
		for ip := range e.scratch.ips {
			k := detect.GroupKey{Grouping: detect.ByIP, Source: g.Source(), IP: ip}
			if e.openOn(k) && (e.open[openKey{k, KindStuffing}] != nil || e.open[openKey{k, KindSpray}] != nil) {
				return false
			}
		}
	}
	if e.retried(g, now-minutes(r.Window)+1, now, r.MaxTriesPerIdentity) {
		return false // the identities' keys were retried before the window (start.go)
	}
	if e.hold(g, r.Window, now) {
		return true // judged again when the window is whole (start.go)
	}
	if g.Grouping() == detect.ByNet {
		if tr := e.storm(g); tr != nil {
			e.join(g, tr)
			return true
		}
	}
	e.raise(g, KindStuffing, detect.SeverityHigh, detect.Rule{Name: "credential_stuffing_" + g.Grouping().String(), Window: durString(r.Window),
		Thresholds: map[string]any{"min_identities": r.MinIdentities, "min_credentials_per_identity": r.MinRatio, "max_tries_per_identity": r.MaxTriesPerIdentity}})
	return true
}

// judgeNetSpray reports, for a log without credentials, many failing
// identities from several addresses of one network: spray and stuffing
// cannot be told apart there, so it is reported as a spray of the network.
func (e *Engine) judgeNetSpray(g *detect.Group, now int64) bool {
	r := e.cfg.Spray
	if !r.Enabled {
		return false
	}
	w := e.cfg.Stuffing.Window // what a network group retains
	st := e.stats(g, now-minutes(w)+1, now, 1<<30)
	if st.failedIdentities < r.MinIdentities || st.failedIdentities <= st.successIdents || st.ips < 2 {
		return false
	}
	for ip := range e.scratch.ips {
		k := detect.GroupKey{Grouping: detect.ByIP, Source: g.Source(), IP: ip}
		if e.openOn(k) && e.open[openKey{k, KindSpray}] != nil {
			return false // a single address is judged as itself
		}
	}
	e.raise(g, KindSpray, detect.SeverityHigh, detect.Rule{Name: "spray_network", Window: durString(w),
		Thresholds: map[string]any{"min_identities": r.MinIdentities}})
	return true
}

func (e *Engine) judgeDistributed(g *detect.Group, now int64) bool {
	r := e.cfg.DistributedSpray
	if !r.Enabled {
		return false
	}
	st := e.stats(g, now-minutes(r.Window)+1, now, r.MaxPerIdentity)
	if st.fewTries < r.MinIdentities || st.ips < r.MinIPs {
		return false
	}
	if e.hold(g, r.Window, now) {
		return true // judged again when the window is whole (start.go)
	}
	e.raise(g, KindDistributedSpray, detect.SeverityHigh, detect.Rule{Name: "distributed_spray", Window: durString(r.Window),
		Thresholds: map[string]any{"min_identities": r.MinIdentities, "min_ips": r.MinIPs, "max_failures_per_identity": r.MaxPerIdentity}})
	return true
}

func (e *Engine) judgeLowAndSlow(g *detect.Group, now int64) bool {
	r := e.cfg.LowAndSlow
	if !r.Enabled {
		return false
	}
	if tr := e.attackedCred[valueKey{g.Source(), g.Key().Value}]; tr != nil && tr.inc.State == detect.StateOpen {
		return false // a faster spray with this credential is already reported
	}
	s := e.scratch.reset()
	clear(s.hours)
	clear(s.ips)
	clear(s.tries) // identity -> 0 when every hour stays under the limit, -1 otherwise
	from := now - minutes(r.Window) + 1
	for i := range g.Len() {
		if m := g.Minute(i); m < from || m > now {
			continue
		}
		en := g.At(i)
		if en.Identity == "" || !en.Outcome.Attempt() || en.Stale || e.keyOwners.worksForMany(g.Source(), en.Credential) ||
			e.isClaimed(g.Source(), &en) || e.ownersMistake(g.Source(), g.Grouping(), &en) {
			continue
		}
		s.hours[identHour{en.Identity, en.Minute / 60}] += int(en.Count)
		if _, seen := s.tries[en.Identity]; !seen {
			s.tries[en.Identity] = 0
		}
		s.ips[en.IP] = struct{}{}
	}
	// A distributed spray slowed down to a day: from several addresses, as
	// the distributed rule wants; one address is the spray rule's.
	if len(s.ips) < e.cfg.DistributedSpray.MinIPs {
		return false
	}
	for k, n := range s.hours {
		if n > r.MaxPerIdentityPerHour {
			s.tries[k.identity] = -1
		}
	}
	ok := 0
	for _, n := range s.tries {
		if n >= 0 {
			ok++
		}
	}
	if ok < r.MinIdentities {
		return false
	}
	if e.holdHour(g, now) {
		return true // judged again when the first whole hour is over (start.go)
	}
	e.raise(g, KindLowAndSlow, detect.SeverityHigh, detect.Rule{Name: "low_and_slow_spray", Window: durString(r.Window),
		Thresholds: map[string]any{"min_identities": r.MinIdentities, "max_failures_per_identity_per_hour": r.MaxPerIdentityPerHour}})
	return true
}

// manyIdentities reports whether the attempts g retains up to minute now
// name at least n identities: every rule but the brute force's counts
// identities among them (in its window, of those it counts), so a group
// with fewer is judged by none. It comes before the costlier tests rules
// apply to each entry (owners' mistakes, claims, stale keys): a key
// failing on one identity all day (an integration left with a dead key)
// is judged at each of its failures, and a scan of its day of entries
// with a map lookup each made such a log judged 20 to 40 times slower
// than others. At most n identities are kept, so the bound costs a
// compare or two an entry, and within a minute only new entries.
func (e *Engine) manyIdentities(g *detect.Group, now int64, n int) bool {
	b := &e.scratch.bounds
	if b.minute != now || b.pruned != e.lastPrune || b.m == nil {
		if b.m == nil || len(b.m) > 0 {
			b.m = map[uint64]identBound{}
		}
		b.minute, b.pruned = now, e.lastPrune
	}
	h := g.KeyHash()
	seen, start := e.scratch.idents[:0], 0
	if prev, ok := b.m[h]; ok && prev.g == g && prev.n <= g.Len() {
		seen, start = prev.idents, prev.n
	}
	for i := start; i < g.Len(); i++ {
		if g.Minute(i) > now {
			continue
		}
		id, attempt := g.Identity(i)
		if id == "" || !attempt || slices.Contains(seen, id) {
			continue
		}
		if seen = append(seen, id); len(seen) >= n {
			delete(b.m, h)
			if start == 0 {
				e.scratch.idents = seen[:0]
			}
			return true
		}
	}
	if start == 0 {
		seen = slices.Clone(seen) // (the scratch slice is reused)
	}
	b.m[h] = identBound{g: g, n: g.Len(), idents: seen}
	return false
}

func (e *Engine) judgeBruteForce(g *detect.Group, now int64) bool {
	r := e.cfg.BruteForce
	if !r.Enabled {
		return false
	}
	// Failures from addresses where the identity succeeds are its owner's
	// (a stale client fails from where it used to succeed): stats leaves
	// them out. Without credentials, many failures are all there is.
	from := now - minutes(r.Window) + 1
	st := e.stats(g, from, now, 1<<30)
	if e.credentialless(g.Source()) {
		st.attempts = e.guesses(g, from, now)
	}
	if st.attempts < int64(r.MinFailures) || !e.credentialless(g.Source()) && st.credentials < r.MinCredentials {
		return false
	}
	e.raise(g, KindBruteForce, detect.SeverityMedium, detect.Rule{Name: "brute_force", Window: durString(r.Window),
		Thresholds: map[string]any{"min_credentials": r.MinCredentials, "min_failures": r.MinFailures}})
	return true
}

// guesses counts, for a log without credentials, the failures on an
// identity group from addresses that tried it more often than a spray tries
// an identity (distributed_spray.max_failures_per_identity): a spray's or
// stuffing run's stray try on the identity is not a guess at its key.
func (e *Engine) guesses(g *detect.Group, from, to int64) int64 {
	per := map[netip.Addr]int64{}
	for i := range g.Len() {
		en := g.At(i)
		if en.Minute >= from && en.Minute <= to && en.Outcome.Attempt() && !en.Stale && !e.isClaimed(g.Source(), &en) &&
			!e.ownersMistake(g.Source(), g.Grouping(), &en) {
			per[en.IP] += int64(en.Count)
		}
	}
	var n int64
	for _, c := range per {
		if c > int64(e.cfg.DistributedSpray.MaxPerIdentity) {
			n += c
		}
	}
	return n
}

// storm returns the open network stuffing incident of g's source on g's
// route (the oldest, if several), or nil. A botnet spread over many
// networks crosses the threshold in each of them: that is one attack, and
// each further network joins the incident instead of raising its own.
func (e *Engine) storm(g *detect.Group) *tracked {
	var best *tracked
	for _, tr := range e.live {
		if tr.inc.Kind != KindStuffing || tr.key.Grouping != detect.ByNet || tr.key.Source != g.Source() ||
			tr.inc.State != detect.StateOpen || tr.inc.Route != "" && g.Route != "" && tr.inc.Route != g.Route {
			continue
		}
		if best == nil || tr.inc.ID < best.inc.ID {
			best = tr
		}
	}
	return best
}

// join adds network group g to the storm incident tr, as raise would have
// opened an incident on it.
func (e *Engine) join(g *detect.Group, tr *tracked) {
	if tr.nets == nil {
		tr.nets = map[netip.Prefix]struct{}{tr.key.Net: {}}
	}
	tr.nets[g.Key().Net] = struct{}{}
	e.setOpen(g.Key(), KindStuffing, tr)
	e.absorbGroup(tr, g, KindStuffing)
	e.changed[tr.inc.ID] = tr
}

// raise opens an incident for g and absorbs every attempt the group still
// retains: the attack began before the threshold was crossed.
func (e *Engine) raise(g *detect.Group, kind, severity string, rule detect.Rule) {
	tr := e.newIncident(kind, severity, g.Source(), g.Key(), rule)
	tr.inc.Route = g.Route
	e.setOpen(g.Key(), kind, tr)
	e.absorbGroup(tr, g, kind)
}

// absorbGroup takes into tr every attempt g still retains that no incident
// has claimed, then judges the successes among the attack's groups: one
// from an attacking address or with an attacking credential is a
// compromise already; on an attacked identity otherwise, its owner.
func (e *Engine) absorbGroup(tr *tracked, g *detect.Group, kind string) {
	key := g.Key()
	for i := range g.Len() {
		en := g.At(i)
		if en.Outcome.Attempt() && !en.Stale && !e.isClaimed(key.Source, &en) && e.fits(key, kind, &en) {
			e.absorb(tr, &en, en.First(), en.Last())
		}
	}
	for _, sg := range e.attackGroups(g, tr) {
		e.judgeSuccesses(tr, sg)
	}
	if e.cfg.Compromise.Enabled && attackKind(kind) && len(tr.creds) <= maxLeakedKeys {
		for ip := range tr.ips {
			e.leakedKeyUse(tr, key.Source, ip)
		}
	}
}

// judgeSuccesses judges the successes g holds since the attack tr began:
// the attacker's are compromises, the others on attacked identities their
// owners returning.
func (e *Engine) judgeSuccesses(tr *tracked, g *detect.Group) {
	first := tr.inc.FirstSeen.Unix()
	for i := range g.Len() {
		en := g.At(i)
		if en.Outcome != ingest.Success || en.Last() < first {
			continue
		}
		_, onIdent := tr.idents[en.Identity]
		switch {
		case e.attackers(tr, g.Source(), en.Identity, en.IP, en.Credential):
			e.compromise(tr, en.Identity, en.IP, en.Credential, en.Pos, en.Last(), true)
		case onIdent:
			e.ownerReturned(tr, en.Identity)
		}
	}
}

// attackGroups lists the groups that hold the successes an attack raised
// on g may have had before it was raised: g's own, and those of its
// addresses and credentials. A success from another address with the
// sprayed key, seen in the second the spray crossed its threshold (or the
// line that made the engine judge that second), is in no group of the
// attack's own grouping but in its credential's.
func (e *Engine) attackGroups(g *detect.Group, tr *tracked) []*detect.Group {
	out := []*detect.Group{g}
	own := g.Key()
	add := func(k detect.GroupKey) {
		if k == own {
			return
		}
		if sg := e.win.Get(k); sg != nil {
			out = append(out, sg)
		}
	}
	for ip := range tr.ips {
		add(detect.GroupKey{Grouping: detect.ByIP, Source: g.Source(), IP: ip})
	}
	for cred := range tr.creds {
		add(detect.GroupKey{Grouping: detect.ByCredential, Source: g.Source(), Value: cred})
	}
	return out
}

// fits reports whether a failed attempt belongs to an incident of kind
// raised on group k: not an owner's mistake, and for a brute force on one
// identity, not another attack's attempt that happened to try it (its
// credential or its address failed on other identities too).
func (e *Engine) fits(k detect.GroupKey, kind string, en *detect.Entry) bool {
	if e.ownersMistake(k.Source, k.Grouping, en) {
		return false
	}
	if kind != KindBruteForce {
		return true
	}
	others := func(g *detect.Group) bool {
		if g == nil {
			return false
		}
		for i := range g.Len() {
			x := g.At(i)
			if x.Outcome.Attempt() && x.Identity != "" && x.Identity != en.Identity && !e.ownersMistake(k.Source, detect.ByIP, &x) {
				return true
			}
		}
		return false
	}
	if en.Credential != "" && others(e.win.Get(detect.GroupKey{Grouping: detect.ByCredential, Source: k.Source, Value: en.Credential})) {
		return false
	}
	if others(e.win.Get(detect.GroupKey{Grouping: detect.ByIP, Source: k.Source, IP: en.IP})) {
		return false
	}
	if !e.credentialless(k.Source) {
		return true
	}
	// Without credentials, only an address that tried the identity more
	// often than a spray would is guessing its key.
	var n int64
	if g := e.win.Get(k); g != nil {
		for i := range g.Len() {
			if x := g.At(i); x.IP == en.IP && x.Outcome.Attempt() && !x.Stale {
				n += int64(x.Count)
			}
		}
	}
	return n > int64(e.cfg.DistributedSpray.MaxPerIdentity)
}

// attackers reports whether a success is the attack's: from an attacking
// address (where the identity's owner did not succeed before), or with an
// attacking credential on an identity the attack tried
// or on a request whose identity the log does not hold. With an attacking
// credential on an identity the attack did not try, it is the attacker's
// unless that identity used that key from that address before the attack,
// by more than the attack's window (an attacker's first try may succeed
// before the failures that give it away): then it is its owner, whose key
// the attack happened to send elsewhere.
func (e *Engine) attackers(tr *tracked, source, identity string, ip netip.Addr, cred string) bool {
	before := tr.inc.FirstSeen.Unix() - int64(e.window(tr.inc.Kind)/time.Second)
	if _, ok := tr.ips[ip]; ok {
		// Unless the identity's owner succeeded from that address before
		// the attack: an address the attack shares with owners (an office
		// NAT, a carrier's pool) is not the attacker's alone.
		if identity == "" || !e.succeededFrom(source, identity, ip, before) {
			return true
		}
	}
	if _, ok := tr.creds[cred]; !ok || cred == "" {
		return false
	}
	if _, tried := tr.idents[identity]; tried || identity == "" {
		return true
	}
	return !e.ownerKey(tr, source, identity, cred) || !e.succeededFrom(source, identity, ip, tr.inc.FirstSeen.Unix()-e.ownerMargin(tr))
}

// ownerMargin is how long before an attack began an identity must have
// used its key from an address for a later success there, on an identity
// the attack did not try, to be its owner's: ten of the attack's mean
// intervals between attempts (an attacker's first try may succeed about
// one interval before the failures that give it away), at least 15
// minutes and at most the attack's window. A log that begins less than
// that before the attack cannot tell the owner from the attacker there.
func (e *Engine) ownerMargin(tr *tracked) int64 {
	w := int64(e.window(tr.inc.Kind) / time.Second)
	gap := (tr.inc.LastSeen.Unix() - tr.inc.FirstSeen.Unix()) / max(1, tr.inc.Attempts-1)
	return min(w, max(15*60, 10*gap))
}

// window is the longest window the rule of an attack kind judges.
func (e *Engine) window(kind string) time.Duration {
	switch kind {
	case KindSpray:
		return maxWindow(e.cfg.Spray.Windows...)
	case KindDistributedSpray:
		return e.cfg.DistributedSpray.Window
	case KindLowAndSlow:
		return e.cfg.LowAndSlow.Window
	case KindBruteForce:
		return e.cfg.BruteForce.Window
	}
	return e.cfg.Stuffing.Window
}

// rateLimitFinding reports, once per route, an attack its route answered
// without ever throttling: the remediation a rate limit per key and per
// identity would have been.
func (e *Engine) rateLimitFinding(tr *tracked) {
	inc := tr.inc
	if !attackKind(inc.Kind) || tr.inc.Throttled || inc.Attempts == 0 {
		return
	}
	k := KindNoRateLimit + "\x00" + inc.Source + "\x00" + tr.inc.Route
	if e.findings[k] != nil {
		return
	}
	route := tr.inc.Route
	if route == "" {
		route = "(all routes)"
	}
	key := detect.GroupKey{Grouping: detect.ByIdentity, Source: inc.Source, Value: "norate " + route}
	f := e.newIncident(KindNoRateLimit, detect.SeverityMedium, inc.Source, key, detect.Rule{Name: "no_rate_limit"})
	f.inc.Group = "route=" + route
	f.inc.Related = inc.ID
	f.inc.Attempts = inc.Attempts
	f.inc.FirstSeen, f.inc.LastSeen = inc.FirstSeen, inc.LastSeen
	f.inc.IPs = append(f.inc.IPs, inc.IPs...)
	f.inc.Evidence = append(f.inc.Evidence, inc.Evidence[:min(len(inc.Evidence), 10)]...)
	addrs := fmt.Sprintf("%d addresses", len(inc.IPs))
	if len(inc.IPs) == 1 {
		addrs = "one address"
	}
	span := "within a minute"
	if d := inc.LastSeen.Sub(inc.FirstSeen).Round(time.Minute); d > 0 {
		span = "in " + durString(d)
	}
	f.inc.Summary = fmt.Sprintf("route %s of %s answered %d failed attempts from %s %s and never throttled (no HTTP 429, incident %d): rate-limit per key and per identity",
		route, inc.Source, inc.Attempts, addrs, span, inc.ID)
	e.findings[k] = f
}

// isClaimed reports whether an incident already reported the entry's
// attempts.
func (e *Engine) isClaimed(source string, en *detect.Entry) bool {
	if len(e.claimed) == 0 {
		return false
	}
	_, ok := e.claimed[claimOf(source, en)]
	return ok
}

// checkCompromise judges a success after an attack. From an attacking
// address, or with an attacking credential on an identity the attack tried
// (or on a request whose identity the log does not hold), it is the
// attacker's: a critical compromise, even when that credential has worked
// for that identity before. On an attacked identity with a credential and
// from an address the attack did not use, it is the owner carrying on: a
// line on the attack's incident, not an alert. It reports whether the
// success was on an address, credential or identity under attack.
func (e *Engine) checkCompromise(ev *ingest.Event, t int64) (attacked bool) {
	if !e.cfg.Compromise.Enabled || len(e.attackedIdent)+len(e.attackedCred)+len(e.attackedIP) == 0 {
		return false
	}
	cred := ev.Credential
	if ev.SchemeOnly {
		cred = "" // a bare scheme prefix is no attacking credential
	}
	if tr := e.attackedIP[ipKey{ev.Source, ev.IP}]; tr != nil && e.within(tr, t) {
		attacked = true
		if e.attackers(tr, ev.Source, ev.Identity, ev.IP, cred) {
			e.compromise(tr, ev.Identity, ev.IP, cred, ev.Pos, t, true)
			return true
		}
	}
	if cred != "" {
		if tr := e.attackedCred[valueKey{ev.Source, cred}]; tr != nil && e.within(tr, t) {
			attacked = true
			if e.attackers(tr, ev.Source, ev.Identity, ev.IP, cred) {
				e.compromise(tr, ev.Identity, ev.IP, cred, ev.Pos, t, true)
				return true
			}
		}
	}
	if ev.Identity == "" {
		return attacked
	}
	if tr := e.attackedIdent[valueKey{ev.Source, ev.Identity}]; tr != nil && e.within(tr, t) {
		e.ownerReturned(tr, ev.Identity)
		return true
	}
	return attacked
}

// ownerReturned counts, once per identity, an attacked identity used by its
// owner after the attack.
func (e *Engine) ownerReturned(tr *tracked, identity string) {
	if tr.owners == nil {
		tr.owners = map[string]struct{}{}
	}
	if _, ok := tr.owners[identity]; ok {
		return
	}
	if _, ok := tr.compromised[identity]; ok {
		return
	}
	tr.owners[identity] = struct{}{}
	tr.inc.OwnersReturned++
	if _, ok := e.changed[tr.inc.ID]; !ok {
		e.quiet[tr.inc.ID] = tr
	}
}

// ownerKey reports whether the identity already succeeded with cred by the
// time the attack began (logs have whole seconds, so the same second counts).
func (e *Engine) ownerKey(tr *tracked, source, identity, cred string) bool {
	t, ok := e.pairs[pairOf(source, identity, cred)]
	return ok && cred != "" && t <= tr.inc.FirstSeen.Unix()
}

func (e *Engine) within(tr *tracked, t int64) bool {
	w := e.cfg.Compromise.Within
	if tr.inc.Kind == KindLowAndSlow {
		w = e.cfg.Compromise.WithinLowAndSlow
	}
	return t >= tr.inc.FirstSeen.Unix() && t <= tr.last+int64(w/time.Second)
}

// compromise records that the attack tr got into identity (empty when the
// log does not name it). Every compromise is the attacker's, so critical.
func (e *Engine) compromise(tr *tracked, identity string, ip netip.Addr, cred string, pos ingest.Pos, t int64, critical bool) {
	parent := tr.inc
	known := identity != "" && e.ownerKey(tr, parent.Source, identity, cred)
	if identity == "" {
		identity = detect.IdentityNotInLog
	}
	c := e.compromiseOf[parent.ID]
	if e.compromiseGoesOn(tr, c, identity, ip, cred, pos, t, known) {
		return
	}
	if c == nil || c.inc.State == detect.StateClosed { // a closed incident is history: start another
		key := detect.GroupKey{Grouping: detect.ByIdentity, Source: parent.Source, Value: fmt.Sprintf("incident-%d", parent.ID)}
		c = e.newIncident(KindCompromise, detect.SeverityHigh, parent.Source, key, detect.Rule{Name: "compromise_after_attack",
			Window: durString(e.cfg.Compromise.Within), Thresholds: map[string]any{"within": durString(e.cfg.Compromise.Within), "within_low_and_slow": durString(e.cfg.Compromise.WithinLowAndSlow)}})
		c.inc.Related = parent.ID
		c.inc.Group = fmt.Sprintf("incident=%d", parent.ID)
		e.compromiseOf[parent.ID] = c
	}
	if _, ok := c.compromised[identity]; ok {
		if known && !slices.Contains(c.inc.KeysKnown, identity) {
			c.inc.KeysKnown = append(c.inc.KeysKnown, identity)
			e.changed[c.inc.ID] = c
		}
		return
	}
	c.compromised[identity] = struct{}{}
	if _, ok := tr.ips[ip]; !ok {
		c.notFromIP = true
	}
	if _, ok := tr.creds[cred]; !ok {
		c.notWithCred = true
	}
	if critical { // critical identities lead the list
		c.inc.Severity = detect.SeverityCritical
		c.inc.Compromised = slices.Insert(c.inc.Compromised, c.inc.CompromisedCritical, identity)
		c.inc.CompromisedCritical++
	} else {
		c.inc.Compromised = append(c.inc.Compromised, identity)
	}
	if known {
		c.inc.KeysKnown = append(c.inc.KeysKnown, identity)
	}
	if _, ok := tr.compromised[identity]; !ok {
		tr.compromised[identity] = struct{}{}
		parent.Compromised = append(parent.Compromised, identity)
		if _, ok := tr.owners[identity]; ok {
			delete(tr.owners, identity) // not its owner after all
			parent.OwnersReturned--
		}
		e.changed[parent.ID] = tr
	}
	e.absorb(c, &detect.Entry{IP: ip, Identity: identity, Credential: cred, Count: 1, Pos: pos}, t, t)
	e.log.Info("identity compromised after attack", "incident", c.inc.ID, "after", parent.ID, "critical", critical)
}

// compromiseGoesOn takes a further success on an identity the attack tr
// is already known to have got into, and reports whether it did: one
// attack, one compromise per identity, however long the key stays in use
// (by the attacker, or by an owner who cannot be told from it). While the
// compromise c naming it is open, the success joins it: its counts and
// last seen move, so it stays open while the identity is used, and sinks
// hear of it only when it comes from an address or with a credential c
// did not hold (or shows the key is the identity's own). Once c is
// closed, the identity was reported: nothing new is raised. A request
// whose identity the log does not hold may be another identity's: after c
// closed it starts another incident.
func (e *Engine) compromiseGoesOn(tr, c *tracked, identity string, ip netip.Addr, cred string, pos ingest.Pos, t int64, known bool) bool {
	if _, ok := tr.compromised[identity]; !ok {
		return false
	}
	if c == nil || c.inc.State == detect.StateClosed {
		return identity != detect.IdentityNotInLog
	}
	if _, ok := c.compromised[identity]; !ok {
		return identity != detect.IdentityNotInLog // named by an earlier, closed compromise
	}
	if known && !slices.Contains(c.inc.KeysKnown, identity) {
		c.inc.KeysKnown = append(c.inc.KeysKnown, identity)
		e.changed[c.inc.ID] = c
	}
	_, knownIP := c.ips[ip]
	_, knownCred := c.creds[cred]
	if !knownIP && ip.IsValid() || !knownCred && cred != "" {
		if _, ok := tr.ips[ip]; !ok {
			c.notFromIP = true
		}
		if _, ok := tr.creds[cred]; !ok {
			c.notWithCred = true
		}
		e.absorb(c, &detect.Entry{IP: ip, Identity: identity, Credential: cred, Count: 1, Pos: pos}, t, t)
		return true
	}
	if t <= c.last {
		return true // no later than what c holds: the same success seen through another group, or an older one
	}
	c.inc.Attempts++
	if lt := time.Unix(t, 0).UTC(); lt.After(c.inc.LastSeen) {
		c.inc.LastSeen = lt
	}
	c.last = max(c.last, t)
	if len(c.inc.Evidence) < detect.MaxEvidence && pos.File != "" {
		c.inc.Evidence = append(c.inc.Evidence, pos)
	}
	if _, ok := e.changed[c.inc.ID]; !ok {
		e.quiet[c.inc.ID] = c
	}
	return true
}

// rawCredentialFinding reports, once per source, that a log holds whole keys.
func (e *Engine) rawCredentialFinding(ev *ingest.Event) {
	k := KindRawCredentials + "\x00" + ev.Source
	tr := e.findings[k]
	if tr == nil {
		key := detect.GroupKey{Grouping: detect.ByCredential, Source: ev.Source, Value: "raw"}
		tr = e.newIncident(KindRawCredentials, detect.SeverityMedium, ev.Source, key, detect.Rule{Name: "raw_credentials_in_logs"})
		tr.inc.Group = "source=" + ev.Source
		tr.inc.Summary = fmt.Sprintf("source %s logs whole API keys; spraywatch fingerprints them, but the log itself is a secret store: log a prefix instead", ev.Source)
		e.findings[k] = tr
	}
	// Count and store every line, but tell the sinks again at most once
	// an hour of event time.
	t := ev.Time.Unix()
	if t-tr.last < 3600 {
		tr.inc.Attempts++
		tr.inc.LastSeen = ev.Time.UTC()
		e.quiet[tr.inc.ID] = tr
		return
	}
	en := detect.Entry{IP: ev.IP, Credential: ev.Credential, Count: 1, Pos: ev.Pos}
	if len(tr.inc.Credentials) >= 20 {
		en.Credential = "" // keep the finding small: a count, not a key list
	}
	e.absorb(tr, &en, t, t)
}

// routeStats compares how a route answers unknown identities and wrong
// credentials, over tumbling windows.
type routeStats struct {
	start                  int64
	unknown, wrong         map[int]int
	unknownLat, wrongLat   time.Duration
	unknownLatN, wrongLatN int
	raised                 bool
}

func (e *Engine) observeRoute(ev *ingest.Event, t int64) {
	r := e.cfg.Enumeration
	if !r.Enabled || (ev.Outcome != ingest.Failure && ev.Outcome != ingest.UnknownIdentity && ev.Outcome != ingest.MissingCredential) {
		return
	}
	k := valueKey{ev.Source, ev.Route}
	rs := e.routes[k]
	if rs == nil {
		rs = &routeStats{start: t, unknown: map[int]int{}, wrong: map[int]int{}}
		e.routes[k] = rs
	}
	if rs.raised {
		return
	}
	if t-rs.start > int64(r.Window/time.Second) {
		*rs = routeStats{start: t, unknown: map[int]int{}, wrong: map[int]int{}}
	}
	if ev.Outcome == ingest.UnknownIdentity {
		rs.unknown[ev.Status]++
		if ev.HasLatency {
			rs.unknownLat += ev.Latency
			rs.unknownLatN++
		}
	} else { // a wrong credential, or none, on an identity that exists
		rs.wrong[ev.Status]++
		if ev.HasLatency {
			rs.wrongLat += ev.Latency
			rs.wrongLatN++
		}
	}
	nu, nw := total(rs.unknown), total(rs.wrong)
	if nu < r.MinSamples || nw < r.MinSamples {
		return
	}
	su, sw := dominant(rs.unknown), dominant(rs.wrong)
	var why string
	switch {
	case su != sw:
		why = fmt.Sprintf("unknown identities get HTTP %d, wrong credentials get HTTP %d", su, sw)
	case rs.unknownLatN >= r.MinSamples && rs.wrongLatN >= r.MinSamples:
		mu, mw := rs.unknownLat/time.Duration(rs.unknownLatN), rs.wrongLat/time.Duration(rs.wrongLatN)
		lo, hi := min(mu, mw), max(mu, mw)
		if hi-lo >= r.MinLatencyGap && float64(hi) >= r.LatencyRatio*float64(max(lo, time.Microsecond)) {
			why = fmt.Sprintf("unknown identities answer in %v on average, wrong credentials in %v", mu, mw)
		}
	}
	if why == "" {
		return
	}
	rs.raised = true
	route := ev.Route
	if route == "" {
		route = "(all routes)"
	}
	key := detect.GroupKey{Grouping: detect.ByIdentity, Source: ev.Source, Value: "route " + route}
	tr := e.newIncident(KindEnumeration, detect.SeverityMedium, ev.Source, key, detect.Rule{Name: "enumeration_oracle", Window: durString(r.Window),
		Thresholds: map[string]any{"min_samples": r.MinSamples, "latency_ratio": r.LatencyRatio, "min_latency_gap": r.MinLatencyGap.String()}})
	tr.inc.Group = "route=" + route
	tr.inc.Summary = fmt.Sprintf("route %s of %s tells whether an identity exists: %s (%d unknown-identity and %d wrong-credential answers); answer both alike (CWE-204)", route, ev.Source, why, nu, nw)
	tr.inc.Attempts = int64(nu + nw)
	tr.inc.FirstSeen = time.Unix(rs.start, 0).UTC()
	tr.inc.LastSeen = time.Unix(t, 0).UTC()
	tr.inc.Evidence = append(tr.inc.Evidence, ev.Pos)
	e.findings[KindEnumeration+"\x00"+ev.Source+"\x00"+ev.Route] = tr
}

func total(m map[int]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func dominant(m map[int]int) int {
	best, bn := 0, -1
	for s, n := range m {
		if n > bn || (n == bn && s < best) {
			best, bn = s, n
		}
	}
	return best
}
