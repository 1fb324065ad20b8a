package rules_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/rules"
)

// judgeSteps feeds steps (sorted by time) to an engine with options o and
// returns the last snapshot of every incident, by ID.
func judgeSteps(t *testing.T, o rules.Options, steps []step) []*detect.Incident {
	t.Helper()
	steps = append([]step(nil), steps...)
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].at < steps[j].at })
	if o.Config.Cooldown == 0 {
		o.Config = rules.DefaultConfig()
	}
	e := rules.NewEngine(o)
	last := map[int64]detect.Incident{}
	for i, s := range steps {
		ev := ingest.Event{Time: t0.Add(s.at), Source: "api", IP: netip.MustParseAddr(s.ip), Identity: s.id, Credential: s.cred,
			Outcome: s.outcome, Status: s.status, Route: "/api/v1/clients/{identity}/", Pos: ingest.Pos{File: "test.log", Offset: int64(i * 100)}}
		if s.id == "" {
			ev.Route = "/api/v1/"
		}
		e.Observe(&ev)
	}
	e.Finish()
	b, snaps := e.TakeBatch(detect.Batch{})
	for _, s := range snaps {
		last[s.ID] = s
	}
	for _, q := range b.Quiet {
		if _, ok := last[q.ID]; !ok {
			last[q.ID] = *q
		}
	}
	out := make([]*detect.Incident, 0, len(last))
	for _, inc := range last {
		out = append(out, &inc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func ofKind(incs []*detect.Incident, kind string) []*detect.Incident {
	var out []*detect.Incident
	for _, inc := range incs {
		if inc.Kind == kind {
			out = append(out, inc)
		}
	}
	return out
}

// attacks leaves out findings about the API (no_rate_limit).
func attacks(incs []*detect.Incident) []*detect.Incident {
	var out []*detect.Incident
	for _, inc := range incs {
		if inc.Kind != detect.KindNoRateLimit {
			out = append(out, inc)
		}
	}
	return out
}

// Owners returning after an attack, with a key and from an address the
// attack did not use, raise nothing, whether or not they were seen before.
func TestOwnersReturningAreNoCompromise(t *testing.T) {
	for _, history := range []bool{false, true} {
		t.Run(fmt.Sprintf("history=%v", history), func(t *testing.T) {
			var steps []step
			attack := spray(0, "203.0.113.66", 40, "sk_live_dead")
			steps = append(steps, attack...)
			for i := 0; i < 40; i++ {
				id, ip, key := fmt.Sprintf("victim-%03d", i), fmt.Sprintf("198.51.100.%d", i+1), fmt.Sprintf("own-%03d", i)
				if history {
					steps = append(steps, ok(-time.Duration(i+1)*time.Minute, ip, id, key))
				}
				steps = append(steps, ok(10*time.Minute+time.Duration(i)*time.Minute, ip, id, key), ok(2*time.Hour, ip, id, key))
			}
			incs := judgeSteps(t, rules.Options{}, steps)
			if c := ofKind(incs, detect.KindCompromise); len(c) > 0 {
				t.Fatalf("owners raised a compromise: %s", c[0].Summary)
			}
			s := ofKind(incs, detect.KindSpray)
			if len(s) != 1 || s[0].OwnersReturned != 40 || !strings.Contains(s[0].Summary, "40 attacked identities were later used by their owners") {
				t.Fatalf("want one spray with 40 owners returned, got %s", describe(incs))
			}
		})
	}
}

// A success by the attacker is a critical compromise even when the key has
// worked for that identity before: the key is known to attackers.
func TestAttackersSuccessWithAKnownKeyIsCritical(t *testing.T) {
	const realKey = "sk_live_0042"
	owner := []step{ok(-2*time.Hour, "198.51.100.42", "victim-005", realKey), ok(-time.Hour, "198.51.100.42", "victim-005", realKey)}
	tests := []struct {
		name  string
		steps []step
	}{
		{"a spray hits a real key from its address", concat(owner, spray(0, "203.0.113.66", 30, realKey, "sk_live_dead"),
			[]step{ok(25*time.Second, "203.0.113.66", "victim-005", realKey)})},
		{"a distributed spray hits a real key from a fresh address", concat(owner, func() []step {
			var s []step
			for i := 0; i < 30; i++ {
				s = append(s, fail(time.Duration(i)*time.Minute, fmt.Sprintf("100.64.%d.1", i%6), fmt.Sprintf("d-%03d", i), realKey))
			}
			return append(s, ok(31*time.Minute, "100.99.0.1", "victim-005", realKey))
		}())},
		{"a brute force finds the key", concat(owner, brute(0, 20), []step{ok(5*time.Minute+time.Second, "198.51.100.77", "victim-007", "guess-020")})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			incs := judgeSteps(t, rules.Options{}, tc.steps)
			c := ofKind(incs, detect.KindCompromise)
			if len(c) != 1 || c[0].Severity != detect.SeverityCritical || c[0].CompromisedCritical != len(c[0].Compromised) {
				t.Fatalf("want one critical compromise, got %s", describe(incs))
			}
			if strings.Contains(tc.name, "real key") && (!slices.Contains(c[0].KeysKnown, "victim-005") || !strings.Contains(c[0].Summary, "attackers know it, rotate it")) {
				t.Errorf("a sprayed key that is victim-005's own does not say so: %+v", c[0])
			}
		})
	}
	t.Run("the owner whose key was sprayed elsewhere, from its own address, is no compromise", func(t *testing.T) {
		steps := concat(owner, spray(0, "203.0.113.66", 30, realKey), []step{ok(time.Hour, "198.51.100.42", "victim-005", realKey)})
		steps = slices.DeleteFunc(steps, func(s step) bool { return s.id == "victim-005" && s.outcome == ingest.Failure })
		if c := ofKind(judgeSteps(t, rules.Options{}, steps), detect.KindCompromise); len(c) > 0 {
			t.Fatalf("owner flagged: %s", c[0].Summary)
		}
	})
}

// brute is a brute force on victim-007 from one address, n guesses 15 s
// apart, starting at start.
func brute(start time.Duration, n int) []step {
	var out []step
	for i := 0; i < n; i++ {
		out = append(out, fail(start+time.Duration(i)*15*time.Second, "198.51.100.77", "victim-007", fmt.Sprintf("guess-%03d", i)))
	}
	return out
}

// A success whose identity the log does not hold, with the attacking key or
// from an attacking address, is a compromise shown as such.
func TestCompromiseWithoutIdentity(t *testing.T) {
	for _, tc := range []struct{ name, ip, cred string }{
		{"attacking key", "198.51.100.200", "sk_live_dead"},
		{"attacking address", "203.0.113.66", "other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps := append(spray(0, "203.0.113.66", 20, "sk_live_dead"), ok(10*time.Minute, tc.ip, "", tc.cred))
			c := ofKind(judgeSteps(t, rules.Options{}, steps), detect.KindCompromise)
			if len(c) != 1 || c[0].Severity != detect.SeverityCritical || !slices.Equal(c[0].Compromised, []string{detect.IdentityNotInLog}) {
				t.Fatalf("want a critical compromise of %q, got %+v", detect.IdentityNotInLog, c)
			}
			if !strings.HasPrefix(c[0].Summary, "a request whose identity is not in this log succeeded") || slices.Contains(c[0].IdentitySample, "") {
				t.Errorf("compromise renders an empty identity: %+v", c[0])
			}
		})
	}
	t.Run("a success without identity from elsewhere with another key is nothing", func(t *testing.T) {
		steps := append(spray(0, "203.0.113.66", 20, "sk_live_dead"), ok(10*time.Minute, "198.51.100.9", "", "own"))
		if c := ofKind(judgeSteps(t, rules.Options{}, steps), detect.KindCompromise); len(c) > 0 {
			t.Fatalf("unexpected compromise: %s", c[0].Summary)
		}
	})
}

// Clients behind one address, or on their own addresses in one /24, each
// failing now and then while mostly succeeding, raise nothing, from 10 to
// 500 clients, with and without history before the log starts.
func TestBusyNetworksRaiseNothing(t *testing.T) {
	for _, n := range []int{10, 20, 60, 150, 500} {
		for _, nat := range []bool{true, false} {
			seed := uint64(n)*2 + map[bool]uint64{true: 1}[nat]
			t.Run(fmt.Sprintf("clients=%d nat=%v seed=%d", n, nat, seed), func(t *testing.T) {
				r := rand.New(rand.NewPCG(seed, 99))
				var steps []step
				for c := 0; c < n; c++ {
					ip := "192.0.2.10"
					if !nat {
						ip = fmt.Sprintf("198.18.%d.%d", c/250, c%250+1)
					}
					id, key, old := fmt.Sprintf("staff-%03d", c), fmt.Sprintf("key-%03d", c), fmt.Sprintf("old-%03d", c)
					calls := 2 + r.IntN(30)
					for k := 0; k < calls; k++ {
						at := time.Duration(r.Int64N(int64(2 * time.Hour)))
						switch x := r.IntN(10); {
						case x == 0: // a typo, fixed at once
							steps = append(steps, fail(at, ip, id, fmt.Sprintf("typo-%d-%d", c, k)), ok(at+5*time.Second, ip, id, key))
						case x == 1 && !nat: // a worker still sending the old key
							steps = append(steps, fail(at, ip, id, old))
						default:
							steps = append(steps, ok(at, ip, id, key))
						}
					}
				}
				if got := attacks(judgeSteps(t, rules.Options{}, steps)); len(got) > 0 {
					t.Fatalf("owners' mistakes raised:%s\n%s", describe(got), got[0].Summary)
				}
			})
		}
	}
	t.Run("a spray from behind the same NAT is still found", func(t *testing.T) {
		var steps []step
		for c := 0; c < 30; c++ {
			steps = append(steps, ok(time.Duration(c)*time.Second, "192.0.2.10", fmt.Sprintf("staff-%03d", c), fmt.Sprintf("key-%03d", c)))
		}
		steps = append(steps, spray(time.Hour+time.Minute, "192.0.2.10", 40, "sk_live_dead")...)
		// the office carries on from the shared address; the attacker gets in
		// with its key from there
		for c := 0; c < 30; c++ {
			steps = append(steps, ok(2*time.Hour+time.Duration(c)*time.Second, "192.0.2.10", fmt.Sprintf("staff-%03d", c), fmt.Sprintf("key-%03d", c)))
		}
		steps = append(steps, ok(2*time.Hour+time.Minute, "192.0.2.10", "victim-003", "sk_live_dead"))
		incs := judgeSteps(t, rules.Options{}, steps)
		if s := ofKind(incs, detect.KindSpray); len(s) != 1 || s[0].Attempts != 40 {
			t.Fatalf("want the spray of 40, got %v", s)
		}
		if c := ofKind(incs, detect.KindCompromise); len(c) != 1 || !slices.Equal(c[0].Compromised, []string{"victim-003"}) {
			t.Fatalf("want the attacker's success alone as a compromise, got %+v", c)
		}
	})
}

// Without credentials in the log: brute force is many failures on one
// identity from where it never succeeded, a /24 of failing identities is
// reported as the network's, and owners returning are no compromise.
// A source is judged without credentials when its format holds none
// (combined) or when no line of it has shown one (a Flask source whose log
// holds only werkzeug's access lines): both give the same incidents.
func TestWithoutCredentials(t *testing.T) {
	for _, o := range []struct {
		name string
		opts rules.Options
	}{
		{"format without credentials", rules.Options{NoCredential: map[string]bool{"api": true}}},
		{"no line shows a credential", rules.Options{}},
	} {
		t.Run(o.name, func(t *testing.T) { testWithoutCredentials(t, o.opts) })
	}
}

func testWithoutCredentials(t *testing.T, noCred rules.Options) {
	strip := func(steps []step) []step {
		out := append([]step(nil), steps...)
		for i := range out {
			out[i].cred = ""
		}
		return out
	}
	t.Run("brute force", func(t *testing.T) {
		got := attacks(judgeSteps(t, noCred, strip(brute(0, 30))))
		if len(got) != 1 || got[0].Kind != detect.KindBruteForce || got[0].Attempts != 30 || got[0].CredentialsKnown {
			t.Fatalf("want one brute force of 30 with unknown credentials, got %s", describe(got))
		}
	})
	t.Run("a stale client failing from where it used to succeed is no brute force", func(t *testing.T) {
		var steps []step
		for i := 0; i < 120; i++ {
			s := ok(time.Duration(i)*30*time.Second, "198.51.100.20", "client-stale", "")
			if i > 20 {
				s = fail(s.at, s.ip, s.id, "")
			}
			steps = append(steps, s)
		}
		if got := attacks(judgeSteps(t, noCred, steps)); len(got) > 0 {
			t.Fatalf("stale client raised:%s", describe(got))
		}
	})
	t.Run("a spray's stray try on the brute-forced identity stays out of it", func(t *testing.T) {
		steps := append(strip(brute(0, 30)), fail(time.Minute, "100.80.0.9", "victim-007", ""))
		got := attacks(judgeSteps(t, noCred, steps))
		if len(got) != 1 || !slices.Equal(got[0].IPs, []string{"198.51.100.77"}) || got[0].Attempts != 30 {
			t.Fatalf("want the brute force alone from 198.51.100.77, got %s %v", describe(got), got)
		}
	})
	t.Run("a second server on the client's network retrying a rotated key is no brute force", func(t *testing.T) {
		steps := []step{ok(0, "198.18.4.7", "client-rot", "")}
		for i := 0; i < 60; i++ {
			steps = append(steps, fail(time.Hour+time.Duration(i)*time.Minute, "198.18.4.251", "client-rot", ""))
		}
		if got := attacks(judgeSteps(t, noCred, steps)); len(got) > 0 {
			t.Fatalf("rotation raised:%s", describe(got))
		}
	})
	t.Run("stuffing from a /24 is reported for the network", func(t *testing.T) {
		var steps []step
		for i := 0; i < 40; i++ {
			steps = append(steps, fail(time.Duration(i)*15*time.Second, fmt.Sprintf("203.0.113.%d", 1+i%8), fmt.Sprintf("victim-%03d", i), ""))
		}
		got := attacks(judgeSteps(t, noCred, steps))
		if len(got) != 1 || got[0].Group != "net=203.0.113.0/24" || got[0].Attempts != 40 || len(got[0].IPs) != 8 {
			t.Fatalf("want one network-level incident of 40 attempts from 8 addresses, got %s", describe(got))
		}
	})
	t.Run("owners returning", func(t *testing.T) {
		steps := strip(spray(0, "203.0.113.66", 30, "x"))
		for i := 0; i < 30; i++ {
			steps = append(steps, ok(20*time.Minute, fmt.Sprintf("198.51.100.%d", i+1), fmt.Sprintf("victim-%03d", i), ""))
		}
		steps = append(steps, ok(21*time.Minute, "203.0.113.66", "victim-003", ""))
		c := ofKind(judgeSteps(t, noCred, steps), detect.KindCompromise)
		if len(c) != 1 || !slices.Equal(c[0].Compromised, []string{"victim-003"}) {
			t.Fatalf("want the attacker's success on victim-003 alone, got %+v", c)
		}
	})
}

// One incident per attack, holding only its attempts: a brute force on one
// identity does not take in a distributed spray's single try on it, and
// incident fields agree.
func TestOneIncidentPerAttack(t *testing.T) {
	var dist []step
	for i := 0; i < 30; i++ {
		id := fmt.Sprintf("d-%03d", i)
		if i == 15 {
			id = "victim-007" // the spray tries the brute-forced identity once
		}
		dist = append(dist, fail(time.Duration(i)*20*time.Second, fmt.Sprintf("100.64.%d.1", i%10), id, "sk_live_d15t"))
	}
	for _, order := range []string{"spray first", "brute force first"} {
		t.Run(order, func(t *testing.T) {
			b := brute(0, 30)
			if order == "spray first" {
				b = brute(6*time.Minute, 30)
			}
			incs := attacks(judgeSteps(t, rules.Options{}, concat(dist, b)))
			bf, ds := ofKind(incs, detect.KindBruteForce), ofKind(incs, detect.KindDistributedSpray)
			if len(bf) != 1 || len(ds) != 1 || len(incs) != 2 {
				t.Fatalf("want one brute force and one distributed spray, got %s", describe(incs))
			}
			if !slices.Equal(bf[0].IPs, []string{"198.51.100.77"}) || slices.Contains(bf[0].Credentials, "sk_live_d15t") || bf[0].Attempts != 30 {
				t.Errorf("brute force took in the spray's attempt: %+v", bf[0])
			}
			if ds[0].Attempts != 30 || ds[0].Identities != 30 {
				t.Errorf("distributed spray: %d attempts on %d identities, want 30 and 30", ds[0].Attempts, ds[0].Identities)
			}
		})
	}
	t.Run("identity_sample holds up to 10 of the identities", func(t *testing.T) {
		for _, inc := range attacks(judgeSteps(t, rules.Options{}, spray(0, "203.0.113.66", 120, "sk_live_dead"))) {
			if inc.Identities != 120 || len(inc.IdentitySample) != detect.MaxIdentitySample {
				t.Errorf("%s: %d identities, sample of %d", inc.Kind, inc.Identities, len(inc.IdentitySample))
			}
		}
	})
}

// An attack that drew no 429 on its route is a finding, once per route; a
// throttled attack is none.
func TestRateLimitFinding(t *testing.T) {
	two := concat(spray(0, "203.0.113.66", 20, "sk_live_dead"), brute(3*time.Hour, 20))
	f := ofKind(judgeSteps(t, rules.Options{}, two), detect.KindNoRateLimit)
	if len(f) != 1 || !strings.Contains(f[0].Summary, "route /api/v1/clients/{identity}/ of api answered 20 failed attempts from one address in 3m and never throttled") ||
		!strings.Contains(f[0].Summary, "rate-limit per key and per identity") {
		t.Fatalf("want one finding for the route, got %+v", f)
	}
	throttled := spray(0, "203.0.113.66", 20, "sk_live_dead")
	for i := 12; i < 20; i++ {
		throttled[i].outcome, throttled[i].status = ingest.Throttled, 429
	}
	if f := ofKind(judgeSteps(t, rules.Options{}, throttled), detect.KindNoRateLimit); len(f) > 0 {
		t.Fatalf("a throttled attack raised %s", f[0].Summary)
	}
}

// Unknown identities answered in clearly other time than wrong keys are an
// enumeration oracle, whatever the status.
func TestLatencyOracle(t *testing.T) {
	e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
	for i := 0; i < 10; i++ {
		for _, o := range []ingest.Outcome{ingest.Failure, ingest.UnknownIdentity} {
			lat := 180 * time.Millisecond // a key checked against a stored hash
			if o == ingest.UnknownIdentity {
				lat = 3 * time.Millisecond // no such identity: answered at once
			}
			ev := ingest.Event{Time: t0.Add(time.Duration(i) * time.Minute), Source: "api", IP: netip.MustParseAddr("198.51.100.9"),
				Identity: fmt.Sprintf("id-%d-%d", i, o), Credential: "k", Outcome: o, Status: 401, Route: "/login", Latency: lat, HasLatency: true}
			e.Observe(&ev)
		}
	}
	e.Finish()
	_, snaps := e.TakeBatch(detect.Batch{})
	var found bool
	for _, s := range snaps {
		found = found || s.Kind == detect.KindEnumeration && strings.Contains(s.Summary, "unknown identities answer in 3ms on average, wrong credentials in 180ms")
	}
	if !found {
		t.Fatalf("no latency enumeration oracle in %+v", snaps)
	}
}

// A stuffing run spread over a /24 that gets in from an address before
// that address's first failure is still a compromise once the address
// joins the attack.
func TestCompromiseFromAnAddressThatJoinsLater(t *testing.T) {
	var steps []step
	for i := 0; i < 60; i++ {
		steps = append(steps, fail(time.Duration(i)*10*time.Second, fmt.Sprintf("203.0.113.%d", 1+i%20), fmt.Sprintf("victim-%03d", i), fmt.Sprintf("leak-%03d", i)))
	}
	// 203.0.113.21 gets in first, and fails only later
	steps = append(steps, ok(3*time.Minute, "203.0.113.21", "dormant-1", "weak"), fail(8*time.Minute, "203.0.113.21", "victim-900", "leak-900"))
	incs := judgeSteps(t, rules.Options{}, steps)
	c := ofKind(incs, detect.KindCompromise)
	if len(c) != 1 || !slices.Equal(c[0].Compromised, []string{"dormant-1"}) || c[0].Severity != detect.SeverityCritical {
		t.Fatalf("want a critical compromise of dormant-1, got %s", describe(incs))
	}
}

// A success with the attacking key, seen in the second an attack crossed
// its threshold or as the line that makes the engine judge that second, is
// judged against that attack, whatever group holds the attack (an address's
// or a credential's) and wherever the success comes from.
func TestSuccessAroundTheCrossingSecond(t *testing.T) {
	for _, tt := range []struct {
		name        string
		distributed bool          // the spray comes from 12 addresses, not one
		at          time.Duration // when the success comes; the failures are at 1s
		first       bool          // the success is the first line of its second
	}{
		{"single source, next second", false, 2 * time.Second, true},
		{"single source, same second", false, time.Second, false},
		{"distributed, next second", true, 2 * time.Second, true},
		{"distributed, same second", true, time.Second, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var steps []step
			for i := range 12 {
				steps = append(steps, ok(0, fmt.Sprintf("198.51.100.%d", i+1), fmt.Sprintf("client-%03d", i), fmt.Sprintf("sk_live_own%03d", i)))
			}
			for i := range 12 {
				ip := "203.0.113.7"
				if tt.distributed {
					ip = fmt.Sprintf("203.0.113.%d", i+1)
				}
				steps = append(steps, fail(time.Second, ip, fmt.Sprintf("client-%03d", i), "sk_live_dead"))
			}
			steps = append(steps, ok(tt.at, "203.0.113.99", "client-040", "sk_live_dead"))
			incs := judgeSteps(t, rules.Options{}, steps)
			kind := detect.KindSpray
			if tt.distributed {
				kind = detect.KindDistributedSpray
			}
			if n := len(ofKind(incs, kind)); n != 1 {
				t.Fatalf("%d %s incidents, want 1: %v", n, kind, incs)
			}
			c := ofKind(incs, detect.KindCompromise)
			if len(c) != 1 || c[0].Severity != detect.SeverityCritical || !slices.Equal(c[0].Compromised, []string{"client-040"}) {
				t.Fatalf("compromises %+v, want one critical for client-040 (it got in with the sprayed key)", c)
			}
			if want := "identity client-040 succeeded with an attacking credential after incident"; !strings.HasPrefix(c[0].Summary, want) {
				t.Errorf("summary %q, want it to begin %q: the address was not the attack's, the key was", c[0].Summary, want)
			}
		})
	}
}
