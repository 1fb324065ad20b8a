package rules

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
)

// History is what Restore reads back from a store.
type History interface {
	MaxIncidentID(ctx context.Context) (int64, error)
	LastAttemptMinute(ctx context.Context) (int64, bool, error)
	SourceMinutes(ctx context.Context) (map[string]int64, error)
	Incidents(ctx context.Context, f detect.IncidentFilter) ([]*detect.Incident, error)
	IncidentIdentities(ctx context.Context, id int64) ([]string, error)
	LoadAttempts(ctx context.Context, sinceMinute int64, fn func(detect.AttemptKey, detect.AttemptCount) error) error
	SuccessPairs(ctx context.Context, sinceMinute int64, fn func(source, identity, credential string, minute int64)) error
}

// Store is a store the engine writes to and restores from.
type Store interface {
	Flusher
	History
}

// Restore rebuilds the engine after a restart, so that counts go on exactly
// where the last flush left them: the windows from the stored attempt rows
// (within the longest retention before each source's latest row: a source
// reading a backlog a day behind another keeps its own), the incidents
// still open re-linked to their groups with the identity sets behind their
// counts, and recently closed ones kept for compromise detection. Call it
// on a new engine, before the first Observe. The rows it reads are not
// written again.
func (e *Engine) Restore(ctx context.Context, s History) error {
	maxID, err := s.MaxIncidentID(ctx)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	e.nextID = max(e.nextID, maxID+1)
	last, ok, err := s.LastAttemptMinute(ctx)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if !ok {
		return nil
	}
	e.watermark = max(e.watermark, last*60)
	var retain int64
	for _, r := range e.win.Options().Retain {
		retain = max(retain, r)
	}
	// Each source from its own latest row; a source quiet for longer
	// than stale-key memory is not restored (retired, most likely).
	bySource, err := s.SourceMinutes(ctx)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	lastOf := func(source string) (int64, bool) {
		m, ok := bySource[source]
		if !ok {
			return last, true
		}
		return m, m >= last-int64(pairMemory/time.Minute)
	}
	earliest := last
	for source := range bySource {
		if m, ok := lastOf(source); ok {
			earliest = min(earliest, m)
		}
	}
	keep := maxWindow(e.cfg.Compromise.Within, e.cfg.Compromise.WithinLowAndSlow, e.cfg.Cooldown)
	incs, err := s.Incidents(ctx, detect.IncidentFilter{Since: time.Unix(earliest*60, 0).Add(-keep)})
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	for _, inc := range incs {
		if m, ok := lastOf(inc.Source); !ok || inc.LastSeen.Before(time.Unix(m*60, 0).Add(-keep)) {
			continue
		}
		idents, err := s.IncidentIdentities(ctx, inc.ID)
		if err != nil {
			return fmt.Errorf("restore incident %d: %w", inc.ID, err)
		}
		if err := e.relink(inc, idents); err != nil {
			e.log.Warn("incident not restored", "id", inc.ID, "err", err)
		}
	}
	e.restoring.reached = map[valueKey]int64{}
	err = s.LoadAttempts(ctx, earliest-retain, func(k detect.AttemptKey, c detect.AttemptCount) error {
		if m, ok := lastOf(k.Source); ok && k.Minute >= m-retain {
			e.restoreRow(k, c)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	e.restoreOwners()
	// Stale-key suppression remembers successful pairs for 30 days, far
	// beyond the windows: load them on their own.
	if e.cfg.StaleKey {
		err = s.SuccessPairs(ctx, earliest-int64(pairMemory/time.Minute), func(source, identity, credential string, minute int64) {
			if m, ok := lastOf(source); !ok || minute < m-int64(pairMemory/time.Minute) {
				return
			}
			k := pairOf(source, identity, credential)
			if t, ok := e.pairs[k]; !ok || minute*60 < t {
				e.setPair(k, minute*60)
			}
		})
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	}
	dirty := e.win.TakeDirty() // judged before the restart
	for _, c := range e.clocks {
		c.lastEval = c.watermark
	}
	e.lastPrune = e.watermark / 60
	e.reclaim()
	e.rejudgeRestored(dirty)
	return nil
}

// reclaim marks the restored attempts that restored attack incidents
// already reported, as absorb did before the restart, so that no new
// incident reports them again.
func (e *Engine) reclaim() {
	seen := map[*tracked]bool{}
	for _, m := range []map[valueKey]*tracked{e.attackedIdent, e.attackedCred} {
		for _, tr := range m {
			seen[tr] = true
		}
	}
	for _, tr := range e.attackedIP {
		seen[tr] = true
	}
	for tr := range seen {
		for _, k := range tr.groupKeys() {
			if g := e.win.Get(k); g != nil {
				e.reclaimGroup(tr, g)
			}
		}
	}
}

// reclaimGroup claims the attempts of g that restored incident tr took in.
func (e *Engine) reclaimGroup(tr *tracked, g *detect.Group) {
	from, to := tr.inc.FirstSeen.Unix()/60, tr.inc.LastSeen.Unix()/60
	for i := range g.Len() {
		en := g.At(i)
		if !en.Outcome.Attempt() || en.Minute < from || en.Minute > to {
			continue
		}
		_, byIdent := tr.idents[en.Identity]
		_, byIP := tr.ips[en.IP]
		if byIdent || (en.Identity == "" && byIP) {
			e.claimed[claimOf(tr.inc.Source, &en)] = en.Minute
		}
	}
}

// relink tracks a stored incident again.
func (e *Engine) relink(inc *detect.Incident, idents []string) error {
	tr := &tracked{inc: inc, ips: map[netip.Addr]struct{}{}, creds: map[string]struct{}{},
		idents: map[string]struct{}{}, compromised: map[string]struct{}{}, last: inc.LastSeen.Unix()}
	key, err := incidentKey(inc)
	if err != nil {
		return err
	}
	tr.key = key
	for _, s := range inc.IPs {
		if ip, err := netip.ParseAddr(s); err == nil {
			tr.ips[ip] = struct{}{}
		}
	}
	for _, c := range inc.Credentials {
		tr.creds[c] = struct{}{}
	}
	for _, id := range idents {
		tr.idents[id] = struct{}{}
	}
	for _, id := range inc.Compromised {
		tr.compromised[id] = struct{}{}
	}
	open := inc.State == detect.StateOpen
	if open {
		e.live[inc.ID] = tr
	}
	switch inc.Kind {
	case KindRawCredentials:
		e.findings[KindRawCredentials+"\x00"+inc.Source] = tr
		return nil
	case KindEnumeration:
		route := strings.TrimPrefix(key.Value, "route ")
		if route == "(all routes)" {
			route = ""
		}
		e.findings[KindEnumeration+"\x00"+inc.Source+"\x00"+route] = tr
		e.routes[valueKey{inc.Source, route}] = &routeStats{raised: true}
		return nil
	case KindNoRateLimit:
		route := strings.TrimPrefix(key.Value, "norate ")
		if route == "(all routes)" {
			route = ""
		}
		e.findings[KindNoRateLimit+"\x00"+inc.Source+"\x00"+route] = tr
		return nil
	case KindCompromise:
		if inc.Related != 0 {
			e.compromiseOf[inc.Related] = tr
		}
		return nil
	}
	if key.Grouping == detect.ByNet && inc.Kind == KindStuffing {
		// The networks that joined a storm are those of its addresses.
		for ip := range tr.ips {
			if n := e.win.NetOf(ip); n != key.Net {
				if tr.nets == nil {
					tr.nets = map[netip.Prefix]struct{}{key.Net: {}}
				}
				tr.nets[n] = struct{}{}
			}
		}
	}
	if open {
		for _, k := range tr.groupKeys() {
			e.open[openKey{k, inc.Kind}] = tr
		}
	}
	for ip := range tr.ips {
		e.attackedIP[ipKey{inc.Source, ip}] = tr
	}
	for c := range tr.creds {
		e.attackedCred[valueKey{inc.Source, c}] = tr
	}
	for id := range tr.idents {
		e.attackedIdent[valueKey{inc.Source, id}] = tr
	}
	return nil
}

// incidentKey returns the group key an incident was raised for. Findings
// and compromises name their group for people (source=, route=,
// incident=); attacks carry GroupKey.String.
func incidentKey(inc *detect.Incident) (detect.GroupKey, error) {
	k := detect.GroupKey{Source: inc.Source}
	kind, v, _ := strings.Cut(inc.Group, "=")
	switch {
	case inc.Kind == KindRawCredentials:
		k.Grouping, k.Value = detect.ByCredential, "raw"
		return k, nil
	case inc.Kind == KindEnumeration && kind == "route":
		k.Grouping, k.Value = detect.ByIdentity, "route "+v
		return k, nil
	case inc.Kind == KindCompromise:
		k.Grouping, k.Value = detect.ByIdentity, fmt.Sprintf("incident-%d", inc.Related)
		return k, nil
	case inc.Kind == KindNoRateLimit && kind == "route":
		k.Grouping, k.Value = detect.ByIdentity, "norate "+v
		return k, nil
	}
	return parseGroupKey(inc.Source, inc.Group)
}

// parseGroupKey reads GroupKey.String back.
func parseGroupKey(source, s string) (detect.GroupKey, error) {
	kind, v, ok := strings.Cut(s, "=")
	if !ok {
		return detect.GroupKey{}, fmt.Errorf("group %q: no '='", s)
	}
	k := detect.GroupKey{Source: source}
	switch kind {
	case "ip":
		ip, err := netip.ParseAddr(v)
		if err != nil {
			return k, fmt.Errorf("group %q: %w", s, err)
		}
		k.Grouping, k.IP = detect.ByIP, ip
	case "net":
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return k, fmt.Errorf("group %q: %w", s, err)
		}
		k.Grouping, k.Net = detect.ByNet, p
	case "credential":
		k.Grouping, k.Value = detect.ByCredential, v
	case "identity":
		k.Grouping, k.Value = detect.ByIdentity, v
	default:
		return k, fmt.Errorf("group %q: unknown grouping", s)
	}
	return k, nil
}

// restoreRow puts one stored row back in the windows, as Observe did,
// without counting it again or absorbing it into incidents (their stored
// counts hold it already).
func (e *Engine) restoreRow(k detect.AttemptKey, c detect.AttemptCount) {
	if e.allowed(k.IP) {
		return
	}
	t := k.Minute * 60
	c0 := e.clockOf(k.Source)
	c0.watermark = max(c0.watermark, t)
	if c0.first == 0 || t < c0.first {
		c0.first = t // the store's first of the source (start.go)
	}
	entry := detect.Entry{Minute: k.Minute, IP: k.IP, Identity: k.Identity, Credential: k.Credential,
		Outcome: k.Outcome, Count: uint32(min(c.Count, 1<<32-1)), Pos: c.Pos}
	if ingest.IsSchemePrefix(entry.Credential) {
		entry.Credential = ""
	}
	if entry.Credential != "" {
		e.credSeen[k.Source] = true
	}
	switch {
	case k.Outcome == ingest.Success:
		pair := "" // as Observe remembers it (the pair, the key's owner)
		if e.cfg.StaleKey && k.Identity != "" && entry.Credential != "" {
			pair = entry.Credential
		}
		e.rememberSuccess(k.Source, k.Identity, k.IP, e.win.NetOf(k.IP), t, pair)
		e.restoreOwner(k, entry.Credential, true)
		e.win.Add(detect.GroupKey{Grouping: detect.ByIP, Source: k.Source, IP: k.IP}, entry)
		e.win.Add(detect.GroupKey{Grouping: detect.ByNet, Source: k.Source, Net: e.win.NetOf(k.IP)}, entry)
		if k.Identity != "" {
			e.win.Add(detect.GroupKey{Grouping: detect.ByIdentity, Source: k.Source, Value: k.Identity}, entry)
		}
	case k.Outcome.Attempt():
		e.restoreOwner(k, entry.Credential, false)
		if e.cfg.StaleKey && k.Credential != "" {
			if first, ok := e.pairs[pairOf(k.Source, k.Identity, k.Credential)]; ok && first < t {
				entry.Stale = true
			}
		}
		for _, key := range e.keysOf(k.Source, &entry) {
			if key.Grouping == detect.ByIP || key.Grouping == detect.ByNet || !entry.Stale {
				e.win.Add(key, entry)
			}
		}
	}
}

// ownerSeen is a stored success on an attacked identity, from an address
// and with a key the attack did not use: its owner's, if it came after the
// attack reached the identity.
type ownerSeen struct {
	tr       *tracked
	identity valueKey
	minute   int64
}

// restoring is what Restore gathers from the rows to decide after reading
// them all.
type restoring struct {
	owners  []ownerSeen
	reached map[valueKey]int64 // the first minute an attack reached an identity
}

// restoreOwner notes a stored success that may be an owner's return (see
// restoreOwners); a stored failure of an attacked identity from the attack
// notes the minute the attack reached it.
func (e *Engine) restoreOwner(k detect.AttemptKey, cred string, success bool) {
	if k.Identity == "" {
		return
	}
	tr := e.attackedIdent[valueKey{k.Source, k.Identity}]
	if tr == nil || k.Minute < tr.inc.FirstSeen.Unix()/60 {
		return
	}
	_, byIP := tr.ips[k.IP]
	_, byCred := tr.creds[cred]
	byCred = byCred && cred != ""
	if !success {
		if byIP || byCred {
			v := valueKey{k.Source, k.Identity}
			if m, ok := e.restoring.reached[v]; !ok || k.Minute < m {
				e.restoring.reached[v] = k.Minute
			}
		}
		return
	}
	if !byIP && !byCred {
		e.restoring.owners = append(e.restoring.owners, ownerSeen{tr, valueKey{k.Source, k.Identity}, k.Minute})
	}
}

// restoreOwners marks again the attacked identities whose owners came back
// before the restart, as ownerReturned did: the incident's stored count
// holds them, so they are not counted again. An owner counts once the
// attack reached the identity and the incident was raised. Rows keep no
// order within a minute, so a success in the very minute of either may have
// come just before it (an owner at work as the attack began). Such owners
// are marked unless the owners strictly after already make up the
// stored count (then they came before, and their return after the
// restart counts). A restart so errs by counting an owner's later return
// not at all, never twice, and only when the stored count cannot tell.
// Rows before the windows' retention are not read.
func (e *Engine) restoreOwners() {
	after := map[*tracked]map[string]bool{} // identity: its success was strictly after
	for _, o := range e.restoring.owners {
		m, ok := e.restoring.reached[o.identity]
		raised := o.tr.inc.Raised.Unix() / 60
		if !ok || o.minute < m || o.minute < raised {
			continue // before the attack reached it, or before it was seen as one
		}
		if _, ok := o.tr.compromised[o.identity.value]; ok {
			continue
		}
		ids := after[o.tr]
		if ids == nil {
			ids = map[string]bool{}
			after[o.tr] = ids
		}
		ids[o.identity.value] = ids[o.identity.value] || (o.minute > m && o.minute > raised)
	}
	for tr, ids := range after {
		if tr.owners == nil {
			tr.owners = map[string]struct{}{}
		}
		var unsure []string
		for id, strict := range ids {
			if strict {
				tr.owners[id] = struct{}{}
			} else {
				unsure = append(unsure, id)
			}
		}
		if len(tr.owners) >= tr.inc.OwnersReturned {
			continue // the stored count is all strictly after: these came before
		}
		for _, id := range unsure {
			tr.owners[id] = struct{}{}
		}
	}
	e.restoring = restoring{}
}
