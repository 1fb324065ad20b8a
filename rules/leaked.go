package rules

import (
	"hash/maphash"
	"net/netip"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
)

// keyOwners remembers, per source and key, the identity the key last
// started to work for (the owner a spray of a leaked key belongs to), and
// how many identities it worked for: a key that works for many (a
// partner's or an admin's, scanning its clients) is refused on others for
// lack of rights, not guessed. An entry is written when an address's key
// changes, not per line.
type keyOwners struct {
	m map[valueKey]keyOwner
	// many holds the keys that worked for at least manyAt identities.
	many map[valueKey]struct{}
	// floor is at most the earliest time m holds: prune has nothing to
	// do while it is not below stale.
	floor int64
}

type keyOwner struct {
	identity string
	t        int64
	n        int // identities it worked for, while their pairs are remembered
}

// note records that cred worked for identity at t; first is set when the
// pair of identity and cred is new. manyAt is how many identities make a
// key one that works for many.
func (o *keyOwners) note(source, cred, identity string, t int64, first bool, manyAt int) {
	if o.m == nil || len(o.m) > 1<<20 {
		o.m, o.many, o.floor = map[valueKey]keyOwner{}, map[valueKey]struct{}{}, t
	}
	o.floor = min(o.floor, t)
	k := valueKey{source, cred}
	cur := o.m[k]
	cur.identity, cur.t = identity, max(cur.t, t)
	if first {
		if cur.n++; cur.n == manyAt {
			o.many[k] = struct{}{}
		}
	}
	o.m[k] = cur
}

// worksForMany reports whether cred worked for many identities of source.
func (o *keyOwners) worksForMany(source, cred string) bool {
	if len(o.many) == 0 || cred == "" {
		return false
	}
	_, ok := o.many[valueKey{source, cred}]
	return ok
}

// prune forgets keys that have not started to work since stale.
func (o *keyOwners) prune(stale int64) {
	if o.floor >= stale {
		return
	}
	o.floor = stale
	for k, v := range o.m {
		if v.t < stale {
			delete(o.m, k)
			delete(o.many, k)
		} else {
			o.floor = min(o.floor, v.t)
		}
	}
}

// maxLeakedKeys is how many credentials an attack may spray for its
// owners' successes to be looked up: sprays try few keys; stuffing runs,
// which try one per identity, are judged by their groups only.
const maxLeakedKeys = 32

// leakedKeyUse judges the successes from ip, an address of attack tr, with
// a key the attack sprays, on that key's owner, since the compromise window
// (compromise.within, or within_low_and_slow) before the attack began: an
// attacker holding a client's leaked key may use it on
// its owner first, hours before the spray that gives it away, when no
// window retains that success any more. Its owner's own use from its
// usual address is not a compromise (attackers decides).
func (e *Engine) leakedKeyUse(tr *tracked, source string, ip netip.Addr) {
	if !e.cfg.Compromise.Enabled || !attackKind(tr.inc.Kind) || len(tr.creds) > maxLeakedKeys || len(e.keyOwners.m) == 0 {
		return
	}
	w := e.cfg.Compromise.Within
	if tr.inc.Kind == KindLowAndSlow {
		w = e.cfg.Compromise.WithinLowAndSlow
	}
	since := tr.inc.FirstSeen.Unix() - int64(w/time.Second)
	for cred := range tr.creds {
		o, ok := e.keyOwners.m[valueKey{source, cred}]
		if !ok {
			continue
		}
		if _, done := tr.compromised[o.identity]; done {
			continue
		}
		sp, ok := e.succFrom[succOf(source, o.identity, ip, netip.Prefix{})]
		if !ok || sp.cred != maphash.String(pairSeed, cred) || sp.last < since {
			continue
		}
		if e.attackers(tr, source, o.identity, ip, cred) {
			e.compromise(tr, o.identity, ip, cred, ingest.Pos{}, sp.last, true)
		}
	}
}

// ownKeyElsewhere reports whether a failed attempt used a key on an
// identity other than the key's owner, from an address (or network) the
// owner succeeds from: the owner's own client sending a wrong identity (an
// app release that sends "undefined" with each phone's key), not a guess.
// It is applied to the brute force rule only, whose many keys on one
// identity such a bug imitates.
func (e *Engine) ownKeyElsewhere(source string, en *detect.Entry) bool {
	if en.Credential == "" || len(e.keyOwners.m) == 0 {
		return false
	}
	o, ok := e.keyOwners.m[valueKey{source, en.Credential}]
	if !ok || o.identity == en.Identity {
		return false
	}
	if _, ok := e.succFrom[succOf(source, o.identity, en.IP, netip.Prefix{})]; ok {
		return true
	}
	_, ok = e.succNet[succOf(source, o.identity, netip.Addr{}, e.win.NetOf(en.IP))]
	return ok
}
