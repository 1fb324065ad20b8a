package rules_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/rules"
)

// leakedKeyCase is an attacker holding one client's working key: it first
// uses the key on its owner from an address the owner never used, then
// sprays the key over other identities, slowly, from many addresses, the
// first of them that one. The owner keeps working from its own address.
type leakedKeyCase struct {
	steps     []step
	attackers int
	firstUse  time.Duration // the attacker's successes before its first failure
	every     time.Duration
}

func leakedKeyCaseOf(seed uint64) *leakedKeyCase {
	rnd := rand.New(rand.NewPCG(seed, 0x1eaced))
	c := &leakedKeyCase{attackers: 5 + rnd.IntN(40), every: time.Duration(5+rnd.IntN(25)) * time.Minute}
	// Up to five of the spray's intervals before it (an address that used
	// the key longer before an attack is taken for one the attack shares
	// with the key's owner: see ownerMargin).
	c.firstUse = time.Duration(1+rnd.Int64N(int64(5*c.every/time.Minute))) * time.Minute
	const key, owner, ownerIP = "sk_live_0aaf", "client-2735", "198.18.10.236"
	start := 30 * time.Hour
	// the owner, before, during and after the attack
	for at := time.Duration(0); at < start+40*time.Hour; at += time.Duration(20+rnd.IntN(200)) * time.Minute {
		c.steps = append(c.steps, ok(at, ownerIP, owner, key))
	}
	// benign clients, each with its own key and address
	for i := range 40 {
		ip, id, k := fmt.Sprintf("198.18.20.%d", i+1), fmt.Sprintf("client-%04d", i), fmt.Sprintf("sk_live_%04x", 0x1000+i)
		for at := time.Duration(rnd.IntN(60)) * time.Minute; at < start+40*time.Hour; at += time.Duration(30+rnd.IntN(300)) * time.Minute {
			c.steps = append(c.steps, ok(at, ip, id, k))
		}
	}
	first := "45.181.148.56"
	for i := range 1 + rnd.IntN(5) {
		c.steps = append(c.steps, ok(start-c.firstUse+time.Duration(i)*time.Minute, first, owner, key))
	}
	for i := range 60 {
		ip := first // (the first and the last: an attack's own address)
		if i > 0 && i < 59 {
			ip = fmt.Sprintf("45.%d.%d.%d", 7+rnd.IntN(240), rnd.IntN(256), 1+rnd.IntN(250))
		}
		if i >= c.attackers && i < 59 {
			ip = fmt.Sprintf("45.7.%d.%d", i%c.attackers, 1+i%c.attackers)
		}
		c.steps = append(c.steps, fail(start+time.Duration(i)*c.every, ip, fmt.Sprintf("client-x%05d", 90000+i), key))
	}
	return c
}

// An attacker who used a client's leaked key on its owner, and then
// sprayed the key, got in: the spray is found and the owner's identity is
// a critical compromise, however long before the spray's first failure
// the attacker used the key (here up to five of its intervals: hours for
// a slow one, longer than any window still holds that success). The
// owner's own successes from its usual address are not. (The address must
// be one of the attack's: one whose only failures left the windows before
// the attack was raised is not known as the attacker's.)
func TestLeakedKeyUsedOnItsOwnerBeforeTheSpray(t *testing.T) {
	base, n := uint64(time.Now().UnixNano()), 40
	if s := os.Getenv("LEAKED_SEED"); s != "" {
		base, _ = strconv.ParseUint(s, 10, 64)
		n = 1
	}
	t.Logf("seeds %d..%d (LEAKED_SEED=<seed> runs one)", base, base+uint64(n)-1)
	for i := range n {
		seed := base + uint64(i)
		c := leakedKeyCaseOf(seed)
		incs := judgeSteps(t, rules.Options{}, c.steps)
		var attack *detect.Incident
		for _, inc := range incs {
			if inc.Kind == detect.KindLowAndSlow || inc.Kind == detect.KindDistributedSpray || inc.Kind == detect.KindSpray {
				if attack != nil {
					t.Errorf("seed %d: a second attack incident %d (%s)", seed, inc.ID, inc.Kind)
				}
				attack = inc
			}
		}
		if attack == nil {
			t.Errorf("seed %d (%d addresses, one every %v): no spray found: %v", seed, c.attackers, c.every, kindsOf(incs))
			continue
		}
		if os.Getenv("LEAKED_DEBUG") != "" {
			t.Logf("attack %s first %v last %v ips %v attempts %d", attack.Kind, attack.FirstSeen, attack.LastSeen, attack.IPs, attack.Attempts)
		}
		comps := ofKind(incs, detect.KindCompromise)
		if len(comps) != 1 || comps[0].Related != attack.ID || comps[0].Severity != detect.SeverityCritical ||
			!slices.Equal(comps[0].Compromised, []string{"client-2735"}) {
			t.Errorf("seed %d (%d addresses, key used %v before, one every %v): want one critical compromise of client-2735 related to %s #%d, got %s",
				seed, c.attackers, c.firstUse, c.every, attack.Kind, attack.ID, describeAll(comps))
		}
	}
}

func kindsOf(incs []*detect.Incident) []string {
	var out []string
	for _, inc := range incs {
		out = append(out, inc.Kind)
	}
	return out
}

func describeAll(incs []*detect.Incident) string {
	var out []string
	for _, inc := range incs {
		out = append(out, fmt.Sprintf("#%d %s %s related %d compromised %v", inc.ID, inc.Kind, inc.Severity, inc.Related, inc.Compromised))
	}
	return fmt.Sprint(out)
}
