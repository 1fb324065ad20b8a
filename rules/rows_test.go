package rules_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/ingest/loggen"
	"github.com/spraywatch/spraywatch/rules"
)

// loggenEvents parses a generated log with every attack hidden in it.
func loggenEvents(t testing.TB, seed uint64, hours, lines int) []ingest.Event {
	t.Helper()
	var buf bytes.Buffer
	start := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	if _, err := loggen.Write(&buf, loggen.Options{Start: start, Duration: time.Duration(hours) * time.Hour, Clients: 200, Lines: lines, Seed: seed,
		Spray: true, BruteForce: true, Stuffing: true, Distributed: true, LowAndSlow: true, NAT: true, Stale: true, Compromise: true}); err != nil {
		t.Fatal(err)
	}
	p, err := ingest.NewParser(ingest.Options{Name: "api", Format: ingest.FormatNginx, Layout: loggen.LogFormat,
		Fields: map[ingest.Role]string{ingest.RoleCredential: "api_key_prefix"}, IdentityPaths: []string{loggen.IdentityPath},
		Statuses: ingest.DefaultStatuses(), Secret: []byte("rows-test-secret-0123456789")})
	if err != nil {
		t.Fatal(err)
	}
	var evs []ingest.Event
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var ev ingest.Event
		if p.Parse(sc.Bytes(), &ev) == nil {
			evs = append(evs, ev)
		}
	}
	return evs
}

// collect keeps the newest snapshot of every incident an engine hands over.
func collect(e *rules.Engine, into map[int64]detect.Incident) {
	_, snaps := e.TakeBatch(detect.Batch{})
	for _, s := range snaps {
		into[s.ID] = s
	}
}

func describeAttacks(m map[int64]detect.Incident) string {
	var out []string
	for _, inc := range m {
		if inc.Kind == detect.KindEnumeration || inc.Kind == detect.KindRawCredentials || inc.Kind == detect.KindNoRateLimit {
			// Findings judged from what rows do not carry: statuses,
			// latencies, whole keys, routes.
			continue
		}
		out = append(out, fmt.Sprintf("%s %s attempts=%d identities=%d ips=%d compromised=%d", inc.Kind, inc.Group, inc.Attempts, inc.Identities, len(inc.IPs), len(inc.Compromised)))
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// TestRowsJudgeLikeLines is the fleet judge's model test: the same traffic
// fed line by line to one engine (one node), and split at random over three
// nodes whose per-minute attempt rows reach another engine flush by flush,
// node by node, as the judge reads them, gives the same attack incidents
// with the same counts.
func TestRowsJudgeLikeLines(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	evs := loggenEvents(t, 7, 30, 60_000)

	single := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
	want := map[int64]detect.Incident{}
	for i := range evs {
		single.Observe(&evs[i])
		if single.Pending() > 20_000 {
			collect(single, want)
		}
	}
	single.Finish()
	collect(single, want)

	rnd := rand.New(rand.NewPCG(seed, 1))
	judge := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
	got := map[int64]detect.Incident{}
	nodes := []string{"web-1", "web-2", "web-3"}
	pending := make([]*detect.Attempts, len(nodes))
	for i := range pending {
		pending[i] = detect.NewAttempts()
	}
	round := func() {
		for n, a := range pending {
			type row struct {
				k detect.AttemptKey
				c detect.AttemptCount
			}
			var rows []row
			a.Each(func(k detect.AttemptKey, c detect.AttemptCount) { rows = append(rows, row{k, c}) })
			sort.Slice(rows, func(i, j int) bool { return rows[i].k.Minute < rows[j].k.Minute })
			for _, r := range rows {
				judge.ObserveRow(nodes[n], r.k, r.c)
			}
			a.Clear()
		}
		judge.Finish()
	}
	var lastRound time.Time
	for i := range evs {
		ev := &evs[i]
		pending[rnd.IntN(len(nodes))].Add(ev)
		// A round every few seconds of event time, as agents flush and
		// the judge reads.
		if ev.Time.Sub(lastRound) >= time.Duration(1+rnd.IntN(10))*time.Second {
			round()
			lastRound = ev.Time
			collect(judge, got)
		}
	}
	round()
	collect(judge, got)
	if n := strings.Count(describeAttacks(want), "\n") + 1; n < 6 {
		t.Fatalf("the generated traffic raised only %d attack incidents:\n%s", n, describeAttacks(want))
	}
	if w, g := describeAttacks(want), describeAttacks(got); w != g {
		t.Errorf("judged from rows:\n%s\nfrom lines:\n%s", g, w)
	}
	var evidence []string
	for _, inc := range got {
		for _, p := range inc.Evidence {
			if p.Node == "" {
				evidence = append(evidence, fmt.Sprintf("incident %d: %+v", inc.ID, p))
			}
		}
	}
	if len(evidence) > 0 {
		t.Errorf("evidence without its node: %v", evidence[:min(5, len(evidence))])
	}
}

// BenchmarkJudgeRows measures the per-minute attempt rows a fleet's judge
// judges per second (ObserveRow and the rules, without the database): the
// rows of 400,000 lines of 200 clients' traffic over 30 h, with every
// attack hidden in it.
//
//	go test -run '^$' -bench JudgeRows ./rules
func BenchmarkJudgeRows(b *testing.B) {
	evs := loggenEvents(b, 1, 30, 400_000)
	type row struct {
		k detect.AttemptKey
		c detect.AttemptCount
	}
	var rows []row
	a := detect.NewAttempts()
	for i := range evs {
		a.Add(&evs[i])
		if i%5000 == 4999 || i == len(evs)-1 {
			var batch []row
			a.Each(func(k detect.AttemptKey, c detect.AttemptCount) { batch = append(batch, row{k, c}) })
			sort.Slice(batch, func(i, j int) bool { return batch[i].k.Minute < batch[j].k.Minute })
			rows = append(rows, batch...)
			a.Clear()
		}
	}
	b.ReportAllocs()
	e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%len(rows) == 0 && i > 0 {
			b.StopTimer()
			e = rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
			b.StartTimer()
		}
		r := &rows[i%len(rows)]
		e.ObserveRow("web-1", r.k, r.c)
		if i%500 == 499 {
			e.Finish() // a judge round
			e.TakeBatch(detect.Batch{})
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(len(evs))/float64(len(rows)), "lines/row")
}

// raisedAt records the event time at which an engine raised each incident,
// from its log.
type raisedAt struct {
	slog.Handler
	now *time.Time
	at  map[int64]time.Time
}

func (h raisedAt) Enabled(context.Context, slog.Level) bool { return true }

func (h raisedAt) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "incident raised" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "id" {
				h.at[a.Value.Int64()] = *h.now
			}
			return true
		})
	}
	return nil
}

// TestRoutineRowsKeepAttackMinutes: over generated traffic with every
// attack hidden in it, most successes become hourly routine rows, while
// every success next to an attack keeps a row of its own minute: from one
// of its addresses after that address failed, or on an identity after the
// attack tried it, from the attack's raising to the end of its compromise
// window. The compromise minute and the owners' returns stay exact in the
// store.
func TestRoutineRowsKeepAttackMinutes(t *testing.T) {
	ctx := context.Background()
	evs := loggenEvents(t, 3, 30, 60_000)
	s, err := detect.Open(filepath.Join(t.TempDir(), "sw.db"), detect.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var now time.Time
	raised := raisedAt{slog.DiscardHandler, &now, map[int64]time.Time{}}
	e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig(), Logger: slog.New(raised)})
	for i := range evs {
		now = evs[i].Time
		e.Observe(&evs[i])
		if e.Pending() >= 20_000 {
			if _, err := e.Flush(ctx, s, detect.Batch{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.Finish()
	if _, err := e.Flush(ctx, s, detect.Batch{}); err != nil {
		t.Fatal(err)
	}
	var routine, perMinute, inRoutine, successes int
	if err := s.DB().QueryRow(`SELECT COUNT(last_minute), COUNT(*) - COUNT(last_minute), SUM(IIF(last_minute IS NULL, 0, count)),
		SUM(IIF(outcome = 'success', count, 0)) FROM attempts`).Scan(&routine, &perMinute, &inRoutine, &successes); err != nil {
		t.Fatal(err)
	}
	if inRoutine*2 < successes {
		t.Errorf("%d of %d successes in routine rows: most benign successes should be", inRoutine, successes)
	}
	incs, err := s.Incidents(ctx, detect.IncidentFilter{})
	if err != nil {
		t.Fatal(err)
	}
	within := rules.DefaultConfig().Compromise
	checked, compromises := 0, 0
	for _, inc := range incs {
		switch inc.Kind {
		case detect.KindCompromise:
			compromises++
			continue
		case detect.KindSpray, detect.KindDistributedSpray, detect.KindLowAndSlow, detect.KindBruteForce, detect.KindStuffing:
		default:
			continue
		}
		ips := map[netip.Addr]bool{}
		for _, ip := range inc.IPs {
			ips[netip.MustParseAddr(ip)] = true
		}
		idents, err := s.IncidentIdentities(ctx, inc.ID)
		if err != nil {
			t.Fatal(err)
		}
		tried := map[string]bool{}
		for _, id := range idents {
			tried[id] = true
		}
		w := within.Within
		if inc.Kind == detect.KindLowAndSlow {
			w = within.WithinLowAndSlow
		}
		from, to := raised.at[inc.ID], inc.LastSeen.Add(w)
		if from.IsZero() {
			t.Fatalf("incident %d: not seen raised", inc.ID)
		}
		failedFrom, triedOn := map[netip.Addr]bool{}, map[string]bool{}
		for i := range evs {
			ev := &evs[i]
			if ev.Time.After(to) {
				break
			}
			if ev.Outcome.Attempt() && ips[ev.IP] {
				failedFrom[ev.IP], triedOn[ev.Identity] = true, true
			}
			if ev.Outcome != ingest.Success || !ev.Time.After(from) || !failedFrom[ev.IP] && !(tried[ev.Identity] && triedOn[ev.Identity]) {
				continue
			}
			var n int
			err := s.DB().QueryRow(`SELECT COUNT(*) FROM attempts WHERE minute = ? AND ip = ? AND identity = ? AND credential = ?
				AND outcome = 'success' AND last_minute IS NULL`, ev.Time.Unix()/60, ev.IP.String(), ev.Identity, ev.Credential).Scan(&n)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Errorf("incident %d (%s): the success of %s from %s at %s has no row of its minute", inc.ID, inc.Kind, ev.Identity, ev.IP, ev.Time.Format(time.TimeOnly))
			}
			checked++
		}
	}
	if checked == 0 || compromises == 0 {
		t.Fatalf("checked %d successes next to attacks, %d compromises: the traffic does not test them", checked, compromises)
	}
	t.Logf("%d routine rows (%d of %d successes), %d per-minute rows; %d successes next to attacks checked", routine, inRoutine, successes, perMinute, checked)
}
