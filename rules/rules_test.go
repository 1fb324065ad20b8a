package rules_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/rules"
)

var t0 = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

// step is one crafted event.
type step struct {
	at      time.Duration
	ip      string
	id      string
	cred    string
	outcome ingest.Outcome
	status  int
	raw     bool
}

func fail(at time.Duration, ip, id, cred string) step {
	return step{at: at, ip: ip, id: id, cred: cred, outcome: ingest.Failure, status: 401}
}

func ok(at time.Duration, ip, id, cred string) step {
	return step{at: at, ip: ip, id: id, cred: cred, outcome: ingest.Success, status: 200}
}

// spray: one address tries n identities with the given credentials in turn,
// one every 10 seconds.
func spray(start time.Duration, ip string, n int, creds ...string) []step {
	var out []step
	for i := 0; i < n; i++ {
		out = append(out, fail(start+time.Duration(i)*10*time.Second, ip, fmt.Sprintf("victim-%03d", i), creds[i%len(creds)]))
	}
	return out
}

func concat(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// runEngine feeds steps, in time order as a log holds them, to an engine
// backed by a real SQLite store, as a replay does, and returns the stored
// incidents.
func runEngine(t *testing.T, cfg rules.Config, allow []netip.Prefix, steps []step) []*detect.Incident {
	t.Helper()
	steps = append([]step(nil), steps...)
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].at < steps[j].at })
	return play(t, cfg, allow, steps, false)
}

// play feeds steps to a new engine; live ticks it every 10 s of event time
// between lines, as the daemon's wall ticker does.
func play(t *testing.T, cfg rules.Config, allow []netip.Prefix, steps []step, live bool) []*detect.Incident {
	t.Helper()
	store, err := detect.Open(filepath.Join(t.TempDir(), "t.db"), detect.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	e := rules.NewEngine(rules.Options{Config: cfg, Allow: allow})
	var last time.Time
	for i, s := range steps {
		at := t0.Add(s.at)
		for tick := last.Add(10 * time.Second); live && !last.IsZero() && tick.Before(at); tick = tick.Add(10 * time.Second) {
			e.Tick(tick)
		}
		last = at
		ev := ingest.Event{Time: at, Source: "api", IP: netip.MustParseAddr(s.ip), Identity: s.id, Credential: s.cred,
			Outcome: s.outcome, Status: s.status, Route: "/api/v1/clients/{identity}/", RawCredential: s.raw,
			Pos: ingest.Pos{File: "test.log", Offset: int64(i * 100)}}
		e.Observe(&ev)
	}
	e.Finish()
	if _, err := e.Flush(context.Background(), store, detect.Batch{}); err != nil {
		t.Fatal(err)
	}
	incs, err := store.Incidents(context.Background(), detect.IncidentFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return incs
}

// kinds maps incident kinds to incidents, leaving out the no_rate_limit
// finding every attack on these never-throttling routes raises
// (TestRateLimitFinding checks it).
func kinds(incs []*detect.Incident) map[string]*detect.Incident {
	m := map[string]*detect.Incident{}
	for _, inc := range incs {
		if inc.Kind == detect.KindNoRateLimit {
			continue
		}
		m[inc.Kind] = inc
	}
	return m
}

func TestRules(t *testing.T) {
	def := rules.DefaultConfig()
	noStale := rules.DefaultConfig()
	noStale.StaleKey = false

	// 15 clients that each used their own key successfully before.
	var owners []step
	for i := 0; i < 15; i++ {
		owners = append(owners, ok(time.Duration(i)*time.Second, fmt.Sprintf("198.51.100.%d", i+1), fmt.Sprintf("victim-%03d", i), fmt.Sprintf("key-%03d", i)))
	}
	// then one address replays each client's own key against it once.
	var replayOwn []step
	for i := 0; i < 15; i++ {
		replayOwn = append(replayOwn, fail(time.Hour+time.Duration(i)*10*time.Second, "203.0.113.50", fmt.Sprintf("victim-%03d", i), fmt.Sprintf("key-%03d", i)))
	}
	stuffing := func(n, creds int) []step {
		var out []step
		for i := 0; i < n; i++ {
			out = append(out, fail(time.Duration(i)*20*time.Second, "203.0.113.50", fmt.Sprintf("victim-%03d", i), fmt.Sprintf("guess-%03d", i%creds)))
		}
		return out
	}
	distributed := func(n, ips int) []step {
		var out []step
		for i := 0; i < n; i++ {
			out = append(out, fail(time.Duration(i)*time.Minute, fmt.Sprintf("100.64.%d.1", i%ips), fmt.Sprintf("victim-%03d", i), "sk_live_d15t"))
		}
		return out
	}
	lowSlow := func(n int) []step {
		var out []step
		for i := 0; i < n; i++ {
			out = append(out, fail(time.Duration(i)*45*time.Minute, fmt.Sprintf("100.80.%d.1", i), fmt.Sprintf("victim-%03d", i), "sk_live_510w"))
		}
		return out
	}
	brute := func(creds int) []step {
		var out []step
		for i := 0; i < creds; i++ {
			out = append(out, fail(time.Duration(i)*15*time.Second, "198.51.100.77", "victim-007", fmt.Sprintf("guess-%03d", i)))
		}
		return out
	}
	enumeration := func(n int) []step {
		var out []step
		for i := 0; i < n; i++ {
			out = append(out, fail(time.Duration(i)*time.Minute, "198.51.100.9", "known", "k1"),
				step{at: time.Duration(i)*time.Minute + time.Second, ip: "198.51.100.9", id: fmt.Sprintf("ghost-%d", i), cred: "k1", outcome: ingest.UnknownIdentity, status: 404})
		}
		return out
	}

	tests := []struct {
		name  string
		cfg   rules.Config
		allow []netip.Prefix
		steps []step
		want  map[string]int64 // kind -> attempts; kinds not listed must not fire
	}{
		{"spray at the identity threshold", def, nil, spray(0, "203.0.113.66", 10, "sk_live_dead"), map[string]int64{"spray": 10}},
		{"spray one identity short", def, nil, spray(0, "203.0.113.66", 9, "sk_live_dead"), nil},
		{"spray with 3 credentials and ratio 5", def, nil, spray(0, "203.0.113.66", 15, "a1", "a2", "a3"), map[string]int64{"spray": 15}},
		{"4 credentials over 40 identities are a spray", def, nil, spray(0, "203.0.113.66", 40, "a1", "a2", "a3", "a4"), map[string]int64{"spray": 40}},
		{"30 keys each tried on 10 identities, slowly, are a spray", def, nil, func() []step {
			var s []step
			for k := 0; k < 30; k++ {
				for i := 0; i < 10; i++ {
					s = append(s, fail(time.Duration(k*10+i)*30*time.Second, "203.0.113.66", fmt.Sprintf("victim-%03d", (i+k)%10), fmt.Sprintf("guess-%03d", k)))
				}
			}
			return s
		}(), map[string]int64{"spray": 300}},
		{"revoked keys each retried behind a NAT, unknown to a fresh engine, are no attack", def, nil, func() []step {
			var s []step
			for i := 0; i < 30; i++ {
				for r := 0; r < 4; r++ {
					s = append(s, fail(time.Duration(i*4+r)*10*time.Second, "192.0.2.10", fmt.Sprintf("staff-%03d", i), fmt.Sprintf("revoked-%03d", i)))
				}
			}
			return s
		}(), nil},
		{"ratio under 5 is not a spray", def, nil, spray(0, "203.0.113.66", 14, "a1", "a2", "a3"), nil},
		{"spray keeps growing as one incident", def, nil, spray(0, "203.0.113.66", 150, "sk_live_dead"), map[string]int64{"spray": 150}},
		{"allow-listed address is never judged", def, []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}, spray(0, "203.0.113.66", 50, "k"), nil},
		{"NAT: more successful identities than failed is not a spray", def, nil, concat(
			spray(0, "192.0.2.10", 10, "k"),
			func() []step {
				var s []step
				for i := 0; i < 11; i++ {
					s = append(s, ok(time.Duration(i)*time.Second, "192.0.2.10", fmt.Sprintf("staff-%d", i), fmt.Sprintf("own-%d", i)))
				}
				return s
			}()), nil},
		{"stuffing at ratio 0.8", def, nil, stuffing(15, 12), map[string]int64{"credential_stuffing": 15}},
		{"stuffing's shape under ratio 0.8: the keys repeat, a spray", def, nil, stuffing(15, 11), map[string]int64{"spray": 15}},
		{"repeated keys one identity short of stuffing's 15", def, nil, stuffing(14, 11), nil},
		{"stuffing one identity short", def, nil, stuffing(14, 14), nil},
		{"stale keys: clients' own old keys failing are suppressed", def, nil, concat(owners, replayOwn), nil},
		{"without stale-key suppression the same is stuffing", noStale, nil, concat(owners, replayOwn), map[string]int64{"credential_stuffing": 15}},
		{"distributed spray over 3 addresses", def, nil, distributed(12, 3), map[string]int64{"distributed_spray": 12}},
		{"2 addresses are not distributed", def, nil, distributed(12, 2), nil},
		{"low-and-slow over 20 identities", def, nil, lowSlow(20), map[string]int64{"low_and_slow_spray": 20}},
		{"low-and-slow one identity short", def, nil, lowSlow(19), nil},
		{"low-and-slow with an identity over 2 an hour", def, nil, concat(lowSlow(20), []step{
			fail(time.Minute, "100.80.0.1", "victim-000", "sk_live_510w"), fail(2*time.Minute, "100.80.0.1", "victim-000", "sk_live_510w")}), nil},
		{"brute force at 10 credentials", def, nil, brute(10), map[string]int64{"brute_force": 10}},
		{"brute force one failure short of min_failures", func() rules.Config {
			c := rules.DefaultConfig()
			c.BruteForce.MinCredentials, c.BruteForce.MinFailures = 9, 10
			return c
		}(), nil, brute(9), nil},
		{"allow-listed brute forcer", def, []netip.Prefix{netip.MustParsePrefix("198.51.100.77/32")}, brute(30), nil},
		{"distributed spray one identity short", def, nil, distributed(9, 3), nil},
		{"allow-listed ranges hide a distributed spray", def, []netip.Prefix{netip.MustParsePrefix("100.64.0.0/10")}, distributed(30, 3), nil},
		{"stale keys do not make a spray", def, nil, concat(
			func() []step {
				var s []step
				for i := 0; i < 12; i++ {
					s = append(s, ok(time.Duration(i)*time.Second, "192.0.2.10", fmt.Sprintf("victim-%03d", i), "shared-old"))
				}
				return s
			}(), spray(time.Hour, "203.0.113.66", 12, "shared-old")), nil},
		{"brute force one credential short", def, nil, brute(9), nil},
		{"enumeration oracle at 5 samples each", def, nil, enumeration(5), map[string]int64{"enumeration_oracle": 10}},
		{"enumeration oracle one sample short", def, nil, enumeration(4), nil},
		{"raw keys in a log are reported once", def, nil, []step{
			{at: 0, ip: "198.51.100.1", id: "c1", cred: "sk_liv…0011223344556677", outcome: ingest.Success, status: 200, raw: true},
			{at: time.Second, ip: "198.51.100.1", id: "c1", cred: "sk_liv…0011223344556677", outcome: ingest.Success, status: 200, raw: true}},
			map[string]int64{"raw_credentials_in_logs": 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := kinds(runEngine(t, tc.cfg, tc.allow, tc.steps))
			for kind, inc := range got {
				want, ok := tc.want[kind]
				if !ok {
					t.Errorf("unexpected %s incident: %s", kind, inc.Summary)
					continue
				}
				if inc.Attempts != want {
					t.Errorf("%s attempts = %d, want %d", kind, inc.Attempts, want)
				}
				if kind == "raw_credentials_in_logs" && !inc.CredentialsKnown {
					t.Errorf("a finding that the log holds whole keys says credentials are unknown")
				}
			}
			for kind := range tc.want {
				if got[kind] == nil {
					t.Errorf("no %s incident", kind)
				}
			}
		})
	}
}

func TestCompromise(t *testing.T) {
	attack := spray(0, "203.0.113.66", 20, "sk_live_dead")
	tests := []struct {
		name     string
		after    step
		severity string // "" when no compromise is expected
	}{
		{"attacking key succeeds", ok(10*time.Minute, "198.51.100.200", "victim-003", "sk_live_dead"), detect.SeverityCritical},
		{"attacking address succeeds", ok(10*time.Minute, "203.0.113.66", "victim-004", "other"), detect.SeverityCritical},
		{"attacked identity succeeds with a new key from a new address: its owner", ok(10*time.Minute, "198.51.100.201", "victim-005", "fresh"), ""},
		{"success long after the window", ok(5*time.Hour, "198.51.100.202", "victim-005", "fresh"), ""},
		{"unrelated identity succeeds", ok(10*time.Minute, "198.51.100.203", "bystander", "own"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := kinds(runEngine(t, rules.DefaultConfig(), nil, append(append([]step{}, attack...), tc.after)))
			c := got["compromise"]
			switch {
			case tc.severity == "" && c != nil:
				t.Fatalf("unexpected compromise: %s", c.Summary)
			case tc.severity != "" && c == nil:
				t.Fatal("no compromise incident")
			case c != nil:
				if c.Severity != tc.severity {
					t.Errorf("severity = %s, want %s", c.Severity, tc.severity)
				}
				if len(c.Compromised) != 1 || c.Compromised[0] != tc.after.id {
					t.Errorf("compromised = %v, want [%s]", c.Compromised, tc.after.id)
				}
				if got["spray"].Compromised[0] != tc.after.id {
					t.Errorf("spray incident does not name the compromised identity: %v", got["spray"].Compromised)
				}
			}
		})
	}
	t.Run("owners returning are a line on the attack, not a compromise", func(t *testing.T) {
		steps := append(append([]step{}, attack...),
			ok(10*time.Minute, "198.51.100.201", "victim-005", "fresh"),
			ok(11*time.Minute, "198.51.100.202", "victim-006", "fresh2"),
			ok(12*time.Minute, "198.51.100.202", "victim-006", "fresh2"),
			ok(13*time.Minute, "198.51.100.200", "victim-003", "sk_live_dead"))
		got := kinds(runEngine(t, rules.DefaultConfig(), nil, steps))
		c := got["compromise"]
		if c == nil || c.CompromisedCritical != 1 || len(c.Compromised) != 1 || c.Compromised[0] != "victim-003" || c.Severity != detect.SeverityCritical {
			t.Fatalf("compromise = %+v; want victim-003 alone, critical", c)
		}
		if s := got["spray"]; s.OwnersReturned != 2 || !strings.Contains(s.Summary, "2 attacked identities were later used by their owners") {
			t.Errorf("spray: owners returned %d, summary %q; want 2 and a line saying so", s.OwnersReturned, s.Summary)
		}
	})
	t.Run("owner carrying on with a key that worked before the attack", func(t *testing.T) {
		steps := append([]step{ok(-time.Hour, "198.51.100.5", "victim-005", "own-key")}, attack...)
		steps = append(steps, ok(10*time.Minute, "198.51.100.5", "victim-005", "own-key"))
		if c := kinds(runEngine(t, rules.DefaultConfig(), nil, steps))["compromise"]; c != nil {
			t.Fatalf("owner's own key flagged as compromise: %s", c.Summary)
		}
	})
}

// TestLiveTicksMatchReplay checks that judging on a wall ticker between
// lines gives the same incidents as judging a whole file at once.
func TestLiveTicksMatchReplay(t *testing.T) {
	steps := concat(spray(0, "203.0.113.66", 150, "sk_live_dead"), []step{ok(30*time.Minute, "203.0.113.66", "victim-001", "sk_live_dead")})
	replayed := runEngine(t, rules.DefaultConfig(), nil, steps)

	store, err := detect.Open(filepath.Join(t.TempDir(), "live.db"), detect.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
	for i, s := range steps {
		ev := ingest.Event{Time: t0.Add(s.at), Source: "api", IP: netip.MustParseAddr(s.ip), Identity: s.id, Credential: s.cred,
			Outcome: s.outcome, Status: s.status, Route: "/api/v1/clients/{identity}/", Pos: ingest.Pos{File: "test.log", Offset: int64(i * 100)}}
		e.Observe(&ev)
		e.Tick(t0.Add(s.at)) // a tick with no new line
		if i%7 == 0 {
			if _, err := e.Flush(context.Background(), store, detect.Batch{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.Finish()
	if _, err := e.Flush(context.Background(), store, detect.Batch{}); err != nil {
		t.Fatal(err)
	}
	live, err := store.Incidents(context.Background(), detect.IncidentFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != len(replayed) {
		t.Fatalf("live raised %d incidents, replay %d", len(live), len(replayed))
	}
	for i := range live {
		l, r := live[i], replayed[i]
		if l.Kind != r.Kind || l.Attempts != r.Attempts || l.Identities != r.Identities || !l.FirstSeen.Equal(r.FirstSeen) || !l.LastSeen.Equal(r.LastSeen) {
			t.Errorf("incident %d differs:\nlive   %s %d attempts %d identities %v..%v\nreplay %s %d attempts %d identities %v..%v",
				i, l.Kind, l.Attempts, l.Identities, l.FirstSeen, l.LastSeen, r.Kind, r.Attempts, r.Identities, r.FirstSeen, r.LastSeen)
		}
	}
	ids, err := store.IncidentIdentities(context.Background(), live[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 150 {
		t.Errorf("stored %d identities for the spray, want 150", len(ids))
	}
}
