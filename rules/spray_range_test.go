package rules_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/rules"
)

// sprayShape is how a one-address spray orders its (identity, key) pairs.
type sprayShape int

const (
	shuffled  sprayShape = iota // every key on every identity, in random order
	rounds                      // one key on every identity, then the next key
	onePerKey                   // identity i tried once, with key i mod K
)

func (s sprayShape) String() string {
	return [...]string{"every pair shuffled", "key by key", "one key per identity"}[s]
}

// sprayCase is one generated one-address attack with benign traffic around
// it.
type sprayCase struct {
	seed       uint64
	keys, ids  int
	shape      sprayShape
	every      time.Duration // mean time between the attack's requests
	attackIP   string
	attempts   int
	steps      []step
	background int
}

// newSprayCase writes, from seed, a spray of keys credentials over ids
// identities (some of them active clients whose owners carry on from their
// own addresses), an office NAT whose clients now and then mistype their
// key, and clients calling from home.
func newSprayCase(seed uint64, keys, ids int, shape sprayShape, every time.Duration) *sprayCase {
	rnd := rand.New(rand.NewPCG(seed, 0x5b7a))
	c := &sprayCase{seed: seed, keys: keys, ids: ids, shape: shape, every: every, attackIP: fmt.Sprintf("203.0.113.%d", 10+rnd.IntN(200))}
	victims := rnd.Perm(300)[:ids]
	var pairs [][2]int // (identity, key)
	switch shape {
	case shuffled, rounds:
		for k := range keys {
			for i := range ids {
				pairs = append(pairs, [2]int{i, k})
			}
		}
		if shape == shuffled {
			rnd.Shuffle(len(pairs), func(i, j int) { pairs[i], pairs[j] = pairs[j], pairs[i] })
		}
	case onePerKey:
		for i := range ids {
			pairs = append(pairs, [2]int{i, i % keys})
		}
	}
	// A long list is sent faster: the attack stays within 6 hours.
	every = min(every, 6*time.Hour/time.Duration(len(pairs)))
	c.every = every
	start := 30 * time.Minute
	at := start
	for _, p := range pairs {
		c.steps = append(c.steps, fail(at, c.attackIP, fmt.Sprintf("client-%03d", victims[p[0]]), fmt.Sprintf("sk_live_guess%02d", p[1])))
		at += every/2 + time.Duration(rnd.Int64N(int64(every)+1))
	}
	c.attempts = len(pairs)
	end := at + 30*time.Minute
	// Clients 0-39 call from home with their own key; 40-59 sit behind
	// one office NAT and mistype a key now and then, fixed seconds later.
	for n := range 60 {
		id, key, ip := fmt.Sprintf("client-%03d", n), fmt.Sprintf("sk_live_own%03d", n), fmt.Sprintf("198.51.100.%d", n+1)
		if n >= 40 {
			ip = "192.0.2.10"
		}
		for t := time.Duration(rnd.Int64N(int64(10 * time.Minute))); t < end; t += time.Duration(5+rnd.IntN(20)) * time.Minute {
			if n >= 100 && rnd.IntN(10) == 0 {
				c.steps = append(c.steps, fail(t, ip, id, fmt.Sprintf("sk_live_typo%05d", rnd.IntN(100000))))
				t += time.Duration(2+rnd.IntN(50)) * time.Second
			}
			c.steps = append(c.steps, ok(t, ip, id, key))
			c.background++
		}
	}
	return c
}

func (c *sprayCase) String() string {
	return fmt.Sprintf("seed %d: %d keys over %d identities (%s), one request per %v from %s: %d attempts",
		c.seed, c.keys, c.ids, c.shape, c.every, c.attackIP, c.attempts)
}

// check reports what is wrong with the incidents judged from c: the attack
// must be exactly one incident holding every attempt, and nothing else
// may be raised.
func (c *sprayCase) check(incs []*detect.Incident) []string {
	var problems []string
	var found []*detect.Incident
	for _, inc := range incs {
		switch inc.Kind {
		case detect.KindNoRateLimit:
		case detect.KindSpray, detect.KindStuffing:
			found = append(found, inc)
		default:
			problems = append(problems, fmt.Sprintf("unexpected %s #%d: %s", inc.Kind, inc.ID, inc.Summary))
		}
	}
	if len(found) != 1 {
		return append(problems, fmt.Sprintf("want the attack raised once, got %d incidents:%s", len(found), describe(incs)))
	}
	inc := found[0]
	if len(inc.IPs) != 1 || inc.IPs[0] != c.attackIP {
		problems = append(problems, fmt.Sprintf("incident #%d holds addresses %v, want only %s", inc.ID, inc.IPs, c.attackIP))
	}
	if inc.Attempts != int64(c.attempts) || inc.Identities != c.ids {
		problems = append(problems, fmt.Sprintf("incident #%d (%s, rule %s) holds %d attempts on %d identities, want %d on %d",
			inc.ID, inc.Kind, inc.Rule.Name, inc.Attempts, inc.Identities, c.attempts, c.ids))
	}
	return problems
}

// sprayRegressions are cases that once failed.
var sprayRegressions = []uint64{}

// TestOneAddressSprayOfAnyWidth: a one-address spray with 1 to 30 keys
// over 10 to 200 identities, in any order and at one request per second to
// one per half minute, among benign traffic (owners carrying on, an office
// NAT with typos), is raised exactly once, holding all its attempts, and
// nothing else is. A key tried once per identity is stuffing's shape when
// the keys hardly repeat, and is generated from stuffing's 15 identities
// on (below them it is under every threshold). SPRAY_SEED=<seed> replays
// one case, SPRAY_N sets how many random ones run.
func TestOneAddressSprayOfAnyWidth(t *testing.T) {
	n := 60
	if testing.Short() {
		n = 15
	}
	if v, err := strconv.Atoi(os.Getenv("SPRAY_N")); err == nil {
		n = v
	}
	base := rand.Uint64()
	seeds := append([]uint64(nil), sprayRegressions...)
	if v, err := strconv.ParseUint(os.Getenv("SPRAY_SEED"), 10, 64); err == nil {
		seeds, n = []uint64{v}, 0
	}
	for i := range n {
		seeds = append(seeds, base+uint64(i))
	}
	t.Logf("%d regression seeds, then %d random cases from seed %d (replay one with SPRAY_SEED=<seed>)", len(sprayRegressions), n, base)
	failed := 0
	for _, seed := range seeds {
		c := sprayCaseOf(seed)
		if problems := c.check(judgeSteps(t, rules.Options{}, c.steps)); len(problems) > 0 {
			failed++
			t.Errorf("%s:\n  %s", c, strings.Join(problems, "\n  "))
		}
	}
	if failed > 0 {
		t.Logf("%d of %d cases failed", failed, len(seeds))
	}
}

// sprayCaseOf draws a case's width, shape and rate from its seed.
func sprayCaseOf(seed uint64) *sprayCase {
	rnd := rand.New(rand.NewPCG(seed, 0xca5e))
	keys, ids := 1+rnd.IntN(30), 10+rnd.IntN(191)
	shape := sprayShape(rnd.IntN(3))
	if shape == onePerKey && ids < 15 {
		ids = 15 + rnd.IntN(186)
	}
	every := time.Duration(1+rnd.IntN(30)) * time.Second
	return newSprayCase(seed, keys, ids, shape, every)
}

// TestOneAddressSprayCorners runs the widths at the edges of the spray and
// stuffing rules, and the widths the old rules left between them.
func TestOneAddressSprayCorners(t *testing.T) {
	type corner struct {
		keys, ids int
		shape     sprayShape
		every     time.Duration
	}
	var corners []corner
	for _, k := range []int{1, 3, 4, 5, 8, 10, 11, 12, 20, 30} {
		for _, n := range []int{10, 14, 15, 40, 200} {
			for _, every := range []time.Duration{time.Second, 30 * time.Second} {
				corners = append(corners, corner{k, n, shuffled, every}, corner{k, n, rounds, every})
				if n >= 15 {
					corners = append(corners, corner{k, n, onePerKey, every})
				}
			}
		}
	}
	for i, c := range corners {
		sc := newSprayCase(uint64(i+1), c.keys, c.ids, c.shape, c.every)
		if problems := sc.check(judgeSteps(t, rules.Options{}, sc.steps)); len(problems) > 0 {
			t.Errorf("%s:\n  %s", sc, strings.Join(problems, "\n  "))
		}
	}
}

// The trial's case: one address, 5 keys, 40 identities, the pairs
// shuffled, one request per 15 s, 200 failures over 50 minutes among 100
// clients' routine calls raised nothing; it is one spray.
func TestSprayOfFiveKeysOverFortyIdentities(t *testing.T) {
	c := newSprayCase(9, 5, 40, shuffled, 15*time.Second)
	incs := judgeSteps(t, rules.Options{}, c.steps)
	if problems := c.check(incs); len(problems) > 0 {
		t.Fatalf("%s:\n  %s", c, strings.Join(problems, "\n  "))
	}
	if s := ofKind(incs, detect.KindSpray); len(s) != 1 || s[0].Rule.Name != "spray_many_credentials" || len(s[0].Credentials) != 5 {
		t.Errorf("want one spray_many_credentials with 5 credentials, got %+v", s)
	}
}
