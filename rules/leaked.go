package rules

import (
	"hash/maphash"
	"net/netip"
	"time"

	"github.com/spraywatch/spraywatch/ingest"
)

// keyOwners remembers, per source and key, the identity the key last
// started to work for: the owner a spray of a leaked key belongs to.
// An entry is written when an address's key changes, not per line.
type keyOwners map[valueKey]keyOwner

type keyOwner struct {
	identity string
	t        int64
}

// note records that cred worked for identity at t.
func (o *keyOwners) note(source, cred, identity string, t int64) {
	if *o == nil {
		*o = keyOwners{}
	}
	if len(*o) > 1<<20 {
		clear(*o)
	}
	k := valueKey{source, cred}
	if cur, ok := (*o)[k]; !ok || cur.identity != identity || cur.t < t {
		(*o)[k] = keyOwner{identity, t}
	}
}

// prune forgets keys that have not started to work since stale.
func (o keyOwners) prune(stale int64) {
	for k, v := range o {
		if v.t < stale {
			delete(o, k)
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
	if !e.cfg.Compromise.Enabled || !attackKind(tr.inc.Kind) || len(tr.creds) > maxLeakedKeys || len(e.keyOwners) == 0 {
		return
	}
	w := e.cfg.Compromise.Within
	if tr.inc.Kind == KindLowAndSlow {
		w = e.cfg.Compromise.WithinLowAndSlow
	}
	since := tr.inc.FirstSeen.Unix() - int64(w/time.Second)
	for cred := range tr.creds {
		o, ok := e.keyOwners[valueKey{source, cred}]
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
