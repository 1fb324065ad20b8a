package rules_test

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/rules"
)

// leakedKeyLog is the trial's five hours of log: 60 clients calling every
// one to three minutes (20 of them behind one office NAT), a CI job in the
// attacker's /24 failing with an old secret, a spray from 203.0.113.66 at
// 50 minutes with client-0042's working key over 40 other identities (one
// every 30 s), and a brute force on client-0007. client-0042's owner keeps
// calling from 198.51.100.52 all along. With tryOwner the spray's second
// round, with a guessed key, also tries client-0042.
func leakedKeyLog(tryOwner bool) []step {
	rnd := rand.New(rand.NewPCG(7, 42))
	key := func(i int) string { return fmt.Sprintf("sk_live_%04d", i) }
	var s []step
	for i := range 60 {
		ip := fmt.Sprintf("198.51.100.%d", i+10)
		if i >= 20 && i < 40 {
			ip = "192.0.2.50"
		}
		for at := time.Duration(rnd.IntN(120)) * time.Second; at < 5*time.Hour; at += time.Duration(60+rnd.IntN(121)) * time.Second {
			s = append(s, ok(at, ip, fmt.Sprintf("client-%04d", i), key(i)))
		}
	}
	for j := range 8 {
		for at := time.Duration(0); at < 5*time.Hour; at += 10 * time.Minute {
			s = append(s, fail(at+time.Duration(j*5)*time.Second, fmt.Sprintf("203.0.113.%d", 180+j), "client-0051", "sk_live_OLDC"))
		}
	}
	var ids []string
	for i := range 60 {
		if i != 42 {
			ids = append(ids, fmt.Sprintf("client-%04d", i))
		}
	}
	rnd.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	ids = ids[:40]
	at := 50 * time.Minute
	for _, id := range ids {
		s = append(s, fail(at, "203.0.113.66", id, key(42)))
		at += 30 * time.Second
	}
	if tryOwner {
		for _, id := range append(ids, "client-0042") {
			s = append(s, fail(at, "203.0.113.66", id, "sk_live_GUES"))
			at += 30 * time.Second
		}
	}
	for j := range 15 {
		s = append(s, fail(80*time.Minute+time.Duration(j*20)*time.Second, "203.0.113.77", "client-0007", fmt.Sprintf("sk_live_BF%02d", j)))
	}
	sort.SliceStable(s, func(i, j int) bool { return s[i].at < s[j].at })
	return s
}

// The owner of a key an attack sprays over other identities, calling from
// its usual address on its own identity (which the attack never tried), is
// no compromise, even when the log began only 50 minutes before the
// attack: the trial raised a critical compromise of client-0042 every hour
// for three hours.
func TestOwnerOfASprayedKeyIsNoCompromise(t *testing.T) {
	steps := leakedKeyLog(false)
	for name, incs := range map[string][]*detect.Incident{
		"replay": judgeSteps(t, rules.Options{}, steps), "live": runLive(t, steps)} {
		t.Run(name, func(t *testing.T) {
			if c := ofKind(incs, detect.KindCompromise); len(c) > 0 {
				t.Errorf("the key's owner was taken for the attacker: %d compromises, first %q", len(c), c[0].Summary)
			}
			if len(ofKind(incs, detect.KindSpray)) != 1 || len(ofKind(incs, detect.KindBruteForce)) != 1 {
				t.Errorf("want one spray and one brute force, got %s", describe(incs))
			}
		})
	}
}

// When the attack did try the identity, a success with its sprayed key is
// the attacker's by the model, even from the owner's address: one critical
// compromise, which grows while the key stays in use (last seen moves with
// the owner's calls until compromise.within has passed) instead of a new
// critical incident every cooldown.
func TestCompromiseInUseIsOneIncident(t *testing.T) {
	steps := leakedKeyLog(true)
	for name, incs := range map[string][]*detect.Incident{
		"replay": judgeSteps(t, rules.Options{}, steps), "live": runLive(t, steps)} {
		t.Run(name, func(t *testing.T) {
			c := ofKind(incs, detect.KindCompromise)
			if len(c) != 1 {
				t.Fatalf("want one compromise, got %d:%s", len(c), describe(incs))
			}
			if got := c[0].Compromised; len(got) != 1 || got[0] != "client-0042" || c[0].Severity != detect.SeverityCritical {
				t.Errorf("compromise names %v (%s), want client-0042, critical", got, c[0].Severity)
			}
			if d := c[0].LastSeen.Sub(c[0].FirstSeen); d < 2*time.Hour || c[0].Attempts < 40 {
				t.Errorf("the compromise did not grow with the key's use: %d successes over %v", c[0].Attempts, d)
			}
		})
	}
}
