package rules_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/rules"
)

// restoreEvents: a 150-identity spray with one key from one address, benign
// traffic, a whole key in a log line (a raw-credential finding), and then a
// success with the sprayed key on a sprayed identity (a compromise).
func restoreEvents() []ingest.Event {
	start := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	attacker := netip.MustParseAddr("203.0.113.66")
	var evs []ingest.Event
	for i := 0; i < 150; i++ {
		t := start.Add(time.Duration(i) * 8 * time.Second)
		evs = append(evs, ingest.Event{Time: t, Source: "api", IP: attacker, Identity: fmt.Sprintf("victim-%03d", i),
			Credential: "sk_live_dead", Outcome: ingest.Failure, Status: 401, Pos: ingest.Pos{File: "access.log", Offset: int64(i) * 200}})
		evs = append(evs, ingest.Event{Time: t.Add(time.Second), Source: "api", IP: netip.AddrFrom4([4]byte{198, 18, 0, byte(i%200 + 1)}),
			Identity: fmt.Sprintf("client-%03d", i%40), Credential: fmt.Sprintf("sk_live_%04d", i%40), Outcome: ingest.Success, Status: 200,
			RawCredential: i%50 == 7})
	}
	evs = append(evs, ingest.Event{Time: start.Add(25 * time.Minute), Source: "api", IP: attacker, Identity: "victim-042",
		Credential: "sk_live_dead", Outcome: ingest.Success, Status: 200})
	return evs
}

// judgeWithRestart judges evs[:cut] with the default rules, flushes, then
// restores a new engine from the store (a daemon restarted) and judges the
// rest into the same store, which it returns.
func judgeWithRestart(t *testing.T, evs []ingest.Event, cut int) *detect.Store {
	t.Helper()
	ctx := context.Background()
	s := openStore(t)
	e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
	for i := range evs[:cut] {
		e.Observe(&evs[i])
	}
	e.Tick(evs[cut-1].Time)
	if _, err := e.Flush(ctx, s, detect.Batch{}); err != nil {
		t.Fatal(err)
	}
	e = rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
	if err := e.Restore(ctx, s); err != nil {
		t.Fatal(err)
	}
	for i := range evs[cut:] {
		e.Observe(&evs[cut+i])
	}
	e.Finish()
	if _, err := e.Flush(ctx, s, detect.Batch{}); err != nil {
		t.Fatal(err)
	}
	return s
}

// judgeAll judges evs with the default rules into a new store and returns
// the incidents stored.
func judgeAll(t *testing.T, evs []ingest.Event) []*detect.Incident {
	t.Helper()
	s := openStore(t)
	e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
	for i := range evs {
		e.Observe(&evs[i])
	}
	e.Finish()
	if _, err := e.Flush(context.Background(), s, detect.Batch{}); err != nil {
		t.Fatal(err)
	}
	incs, err := s.Incidents(context.Background(), detect.IncidentFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return incs
}

func openStore(t *testing.T) *detect.Store {
	t.Helper()
	s, err := detect.Open(filepath.Join(t.TempDir(), "sw.db"), detect.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

type incidentSummary struct {
	Kind, Severity, Group        string
	Attempts                     int64
	Identities, IPs, Compromised int
	OwnersReturned               int
}

func summaries(t *testing.T, s *detect.Store) []incidentSummary {
	t.Helper()
	incs, err := s.Incidents(context.Background(), detect.IncidentFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var out []incidentSummary
	for _, inc := range incs {
		out = append(out, incidentSummary{inc.Kind, inc.Severity, inc.Group, inc.Attempts, inc.Identities, len(inc.IPs), len(inc.Compromised), inc.OwnersReturned})
	}
	return out
}

// An engine restored from the store after a flush at any point ends with
// exactly the incidents of an engine that never stopped.
func TestRestoreContinuesExactly(t *testing.T) {
	evs := restoreEvents()
	ctx := context.Background()
	whole := openStore(t)
	e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
	for i := range evs {
		e.Observe(&evs[i])
	}
	e.Finish()
	if _, err := e.Flush(ctx, whole, detect.Batch{}); err != nil {
		t.Fatal(err)
	}
	want := summaries(t, whole)
	if len(want) < 3 {
		t.Fatalf("the uninterrupted run raised only %+v; want a spray, a compromise and a finding", want)
	}
	for _, cut := range []int{10, 40, 120, 299, 300} {
		t.Run(fmt.Sprintf("cut at %d", cut), func(t *testing.T) {
			s := judgeWithRestart(t, evs, cut)
			got := summaries(t, s)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("after a restart:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// A no_rate_limit finding is restored: a later attack on the same route
// after a restart raises no second one, whether the restart came after the
// finding was raised or between the spray's last attempt and its close
// (the finding is then raised after the restart, and must still name the
// spray's route).
func TestRestoreKeepsRateLimitFinding(t *testing.T) {
	const route = "/api/v1/clients/{identity}/"
	observe := func(e *rules.Engine, start time.Duration, ip string) {
		for i := 0; i < 20; i++ {
			ev := ingest.Event{Time: t0.Add(start + time.Duration(i)*10*time.Second), Source: "api", IP: netip.MustParseAddr(ip),
				Identity: fmt.Sprintf("victim-%03d", i), Credential: "sk_live_dead", Outcome: ingest.Failure, Status: 401, Route: route}
			e.Observe(&ev)
		}
	}
	for name, stop := range map[string]time.Duration{"after the finding": 3 * time.Hour, "before the spray closed": 5 * time.Minute} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := openStore(t)
			e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
			observe(e, 0, "203.0.113.66")
			e.Tick(t0.Add(stop))
			if _, err := e.Flush(ctx, s, detect.Batch{}); err != nil {
				t.Fatal(err)
			}
			e = rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
			if err := e.Restore(ctx, s); err != nil {
				t.Fatal(err)
			}
			observe(e, 4*time.Hour, "203.0.113.77")
			e.Finish()
			if _, err := e.Flush(ctx, s, detect.Batch{}); err != nil {
				t.Fatal(err)
			}
			f, err := s.Incidents(ctx, detect.IncidentFilter{Kind: detect.KindNoRateLimit})
			if err != nil {
				t.Fatal(err)
			}
			sprays, _ := s.Incidents(ctx, detect.IncidentFilter{Kind: detect.KindSpray})
			if len(f) != 1 || len(sprays) != 2 {
				t.Fatalf("want 2 sprays and 1 finding, got %d and %d", len(sprays), len(f))
			}
			if f[0].Group != "route="+route {
				t.Errorf("the finding is on %q, want the spray's route", f[0].Group)
			}
		})
	}
}

// judgeWithRestarts judges evs with the default rules into a new store,
// flushing every flushEvery pending rows, and restarts at each cut: a
// flush, then a new engine restored from the store judges on.
func judgeWithRestarts(t *testing.T, evs []ingest.Event, cuts []int, flushEvery int) *detect.Store {
	t.Helper()
	ctx := context.Background()
	s := openStore(t)
	e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
	for i := range evs {
		if len(cuts) > 0 && i == cuts[0] {
			cuts = cuts[1:]
			e.Tick(evs[i-1].Time)
			if _, err := e.Flush(ctx, s, detect.Batch{}); err != nil {
				t.Fatal(err)
			}
			e = rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
			if err := e.Restore(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		e.Observe(&evs[i])
		if e.Pending() >= flushEvery {
			if _, err := e.Flush(ctx, s, detect.Batch{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.Finish()
	if _, err := e.Flush(ctx, s, detect.Batch{}); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRestoreFromRoutineRows is the restore's model test over generated
// traffic with every attack hidden in it (a NAT, stale keys and a
// compromise among them), where most rows are hourly rows of routine
// successes: restarted at random points, an engine ends with the attack
// incidents of one that never stopped.
func TestRestoreFromRoutineRows(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 3))
	evs := loggenEvents(t, 7, 30, 60_000)
	attacks := func(s *detect.Store) []incidentSummary {
		var out []incidentSummary
		for _, x := range summaries(t, s) {
			// Line findings are judged from what rows do not hold: the
			// statuses and latencies an enumeration oracle counts, the
			// raw keys.
			if x.Kind != detect.KindEnumeration && x.Kind != detect.KindRawCredentials {
				out = append(out, x)
			}
		}
		return out
	}
	whole := judgeWithRestarts(t, evs, nil, 20_000)
	want := attacks(whole)
	if len(want) < 6 {
		t.Fatalf("the uninterrupted run raised only %+v", want)
	}
	var routine, rows int
	if err := whole.DB().QueryRow(`SELECT COUNT(last_minute), COUNT(*) FROM attempts`).Scan(&routine, &rows); err != nil || routine*4 < rows {
		t.Fatalf("%d of %d rows are routine rows (%v): the traffic does not test them", routine, rows, err)
	}
	for round := range 4 {
		var cuts []int
		for range 1 + rnd.IntN(3) {
			cuts = append(cuts, 1+rnd.IntN(len(evs)-1))
		}
		slices.Sort(cuts)
		cuts = slices.Compact(cuts)
		flushEvery := 500 + rnd.IntN(20_000)
		t.Run(fmt.Sprintf("round %d", round), func(t *testing.T) {
			s := judgeWithRestarts(t, evs, cuts, flushEvery)
			got := attacks(s)
			// Owners who came back in the very minute the attack reached
			// their identity, or it was raised, may go uncounted after a
			// restart (rows keep no order within a minute): at most one a
			// restart, never more than an uninterrupted run.
			for i := range min(len(got), len(want)) {
				if lost := want[i].OwnersReturned - got[i].OwnersReturned; lost >= 0 && lost <= len(cuts) {
					got[i].OwnersReturned = want[i].OwnersReturned
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("restarted at %v, flushing every %d rows:\n got %+v\nwant %+v", cuts, flushEvery, got, want)
			}
		})
	}
}

// A NAT's routine successes of the last minutes are restored at their last
// minute, not their hour's first: twelve identities that used the address
// in the last quarter hour keep ten failing ones from looking like a
// spray after a restart, as they did before it.
func TestRestoreKeepsRecentRoutineSuccesses(t *testing.T) {
	nat := netip.MustParseAddr("198.51.100.9")
	start := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	var evs []ingest.Event
	for k := 0; k < 15; k++ { // every 4 minutes for an hour, no failure
		for i := 0; i < 12; i++ {
			evs = append(evs, ingest.Event{Time: start.Add(time.Duration(k*4)*time.Minute + time.Duration(i)*time.Second), Source: "api", IP: nat,
				Identity: fmt.Sprintf("client-%02d", i), Credential: fmt.Sprintf("sk_live_%02d", i), Outcome: ingest.Success, Status: 200})
		}
	}
	cut := len(evs)
	for i := 0; i < 10; i++ { // a misconfigured tool behind the NAT, one key
		evs = append(evs, ingest.Event{Time: start.Add(59*time.Minute + time.Duration(i)*time.Second), Source: "api", IP: nat,
			Identity: fmt.Sprintf("user-%02d", i), Credential: "sk_live_tool", Outcome: ingest.Failure, Status: 401})
	}
	if got := judgeAll(t, evs); len(got) != 0 {
		t.Fatalf("the uninterrupted run raised %d incidents (%s), want none", len(got), got[0].Kind)
	}
	s := judgeWithRestart(t, evs, cut)
	var routine int
	if err := s.DB().QueryRow(`SELECT COUNT(last_minute) FROM attempts`).Scan(&routine); err != nil || routine != 12 {
		t.Fatalf("%d routine rows (%v), want one an identity", routine, err)
	}
	if got := summaries(t, s); len(got) != 0 {
		t.Errorf("after a restart: %+v, want nothing", got)
	}
}

// Sources keep their own event time: one may read a backlog a day behind
// another. A restart used to rebuild every source's windows and incidents
// back from the latest row over all sources, so the lagging source's spray
// lost its first half (and its open incident stayed open for good, while a
// second one was raised). Each source now restores from its own latest row:
// a restart anywhere ends with the incidents of a run that never stopped.
func TestRestoreSourceBehindAnother(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	behind := now.Add(-30 * time.Hour)
	attacker := netip.MustParseAddr("203.0.113.66")
	var evs []ingest.Event
	for i := range 150 {
		evs = append(evs, ingest.Event{Time: now.Add(time.Duration(i) * 8 * time.Second), Source: "live", IP: netip.AddrFrom4([4]byte{198, 18, 0, byte(i%200 + 1)}),
			Identity: fmt.Sprintf("client-%03d", i%40), Credential: fmt.Sprintf("sk_live_%04d", i%40), Outcome: ingest.Success, Status: 200,
			Pos: ingest.Pos{File: "live.log", Offset: int64(i) * 200}})
		evs = append(evs, ingest.Event{Time: behind.Add(time.Duration(i) * 8 * time.Second), Source: "backlog", IP: attacker,
			Identity: fmt.Sprintf("victim-%03d", i), Credential: "sk_live_dead", Outcome: ingest.Failure, Status: 401,
			Pos: ingest.Pos{File: "backlog.log", Offset: int64(i) * 200}})
	}
	want := fmt.Sprint(judgeAllSummaries(t, evs))
	if !strings.Contains(want, "spray") {
		t.Fatalf("the uninterrupted run raised no spray: %s", want)
	}
	ctx := context.Background()
	for _, cut := range []int{2, 61, 150, 201, 299} {
		t.Run(fmt.Sprintf("cut at %d", cut), func(t *testing.T) {
			// (no wall tick at the stop: it would move the backlog's
			// clock to the live source's time, as the daemon does not)
			s := openStore(t)
			for n, part := range [][]ingest.Event{evs[:cut], evs[cut:]} {
				e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
				if err := e.Restore(ctx, s); err != nil {
					t.Fatal(err)
				}
				for i := range part {
					e.Observe(&part[i])
				}
				if n == 1 {
					e.Finish()
				}
				if _, err := e.Flush(ctx, s, detect.Batch{}); err != nil {
					t.Fatal(err)
				}
			}
			if got := fmt.Sprint(summaries(t, s)); got != want {
				t.Errorf("after a restart:\n got %s\nwant %s", got, want)
			}
		})
	}
}

// judgeAllSummaries is judgeAll's incidents as summaries.
func judgeAllSummaries(t *testing.T, evs []ingest.Event) []incidentSummary {
	t.Helper()
	var out []incidentSummary
	for _, inc := range judgeAll(t, evs) {
		out = append(out, incidentSummary{inc.Kind, inc.Severity, inc.Group, inc.Attempts, inc.Identities, len(inc.IPs), len(inc.Compromised), inc.OwnersReturned})
	}
	return out
}

// An incident is stamped with its own source's time: a source reading a
// backlog a day behind another had its alerts dated by the other's clock.
func TestIncidentUpdatedBySourceClock(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	behind := now.Add(-30 * time.Hour)
	e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
	for i := range 60 {
		live := ingest.Event{Time: now.Add(time.Duration(i) * 8 * time.Second), Source: "live", IP: netip.MustParseAddr("198.18.0.1"),
			Identity: "client-001", Credential: "sk_live_0001", Outcome: ingest.Success, Status: 200}
		e.Observe(&live)
		ev := ingest.Event{Time: behind.Add(time.Duration(i) * 8 * time.Second), Source: "backlog", IP: netip.MustParseAddr("203.0.113.66"),
			Identity: fmt.Sprintf("victim-%03d", i), Credential: "sk_live_dead", Outcome: ingest.Failure, Status: 401}
		e.Observe(&ev)
	}
	_, snaps := e.TakeBatch(detect.Batch{})
	found := false
	for _, s := range snaps {
		if s.Source != "backlog" {
			continue
		}
		found = true
		if s.Updated.After(behind.Add(time.Hour)) || s.Updated.Before(s.LastSeen) {
			t.Errorf("incident %d (%s) of the backlog updated at %v, want its own clock (last seen %v)", s.ID, s.Kind, s.Updated, s.LastSeen)
		}
	}
	if !found {
		t.Fatal("no incident on the backlog source")
	}
}

// An owner who used the identity in the minute the attack began, just
// before it, and comes back after a restart is counted: the rows cannot
// order the two within the minute, but the stored count says no owner
// had returned yet. (Before, the restart took that success for a return
// already counted, and the real one went uncounted.)
func TestRestoreCountsOwnerBusyAsAttackBegan(t *testing.T) {
	start := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	owner, attacker := netip.MustParseAddr("198.18.1.77"), netip.MustParseAddr("198.51.100.7")
	ev := func(sec int, ip netip.Addr, key string, o ingest.Outcome, status int) ingest.Event {
		return ingest.Event{Time: start.Add(time.Duration(sec) * time.Second), Source: "api", IP: ip,
			Identity: "client-0007", Credential: key, Outcome: o, Status: status}
	}
	evs := []ingest.Event{ev(0, owner, "sk_live_own7", ingest.Success, 200)}
	for i := range 40 {
		evs = append(evs, ev(5+3*i, attacker, fmt.Sprintf("sk_live_b%03d", i), ingest.Failure, 401))
	}
	evs = append(evs, ev(200, owner, "sk_live_own7", ingest.Success, 200))
	for _, cuts := range [][]int{nil, {21}, {30}, {41}} {
		s := judgeWithRestarts(t, evs, cuts, 1)
		var got []incidentSummary
		for _, x := range summaries(t, s) {
			if x.Kind == detect.KindBruteForce {
				got = append(got, x)
			}
		}
		if len(got) != 1 || got[0].OwnersReturned != 1 || got[0].Attempts != 40 {
			t.Errorf("restarted before line %v: brute force incidents %+v, want one of 40 attempts with its owner returned", cuts, got)
		}
	}
}
