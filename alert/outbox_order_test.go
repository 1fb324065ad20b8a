package alert_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/alert"
	"github.com/spraywatch/spraywatch/alert/slack/slacktest"
	"github.com/spraywatch/spraywatch/alert/webhook"
	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/detect/postgres/pgtest"
)

// flakyReceiver is a webhook receiver whose answers a seeded random source
// picks: during an outage every request fails; otherwise some fail before
// the receiver takes the message (503), some after (it keeps the message
// and answers 500, or answers too late for the sender's timeout), so that
// the sender cannot tell whether they arrived.
type flakyReceiver struct {
	mu     sync.Mutex
	rng    *rand.Rand
	down   bool
	flaky  float64 // share of requests that fail outside an outage
	after  bool    // failures may come after the message was taken
	got    []detect.Incident
	srv    *httptest.Server
	hangMs int
}

func newFlakyReceiver(t *testing.T, seed uint64, after bool) *flakyReceiver {
	r := &flakyReceiver{rng: rand.New(rand.NewPCG(seed, 2)), flaky: 0.3, after: after, hangMs: 120}
	r.srv = httptest.NewServer(r)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *flakyReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var inc detect.Incident
	if err := json.Unmarshal(body, &inc); err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	fail := r.down || r.rng.Float64() < r.flaky
	how := r.rng.IntN(3)
	if !r.after {
		how = 0
	}
	if !fail || how != 0 {
		r.got = append(r.got, inc) // taken
	}
	hang := time.Duration(r.hangMs) * time.Millisecond
	r.mu.Unlock()
	switch {
	case !fail:
		w.WriteHeader(http.StatusOK)
	case how == 0:
		http.Error(w, "down", http.StatusServiceUnavailable)
	case how == 1:
		http.Error(w, "taken, then failed", http.StatusInternalServerError)
	default:
		time.Sleep(hang) // past the sender's timeout
	}
}

func (r *flakyReceiver) set(down bool) {
	r.mu.Lock()
	r.down = down
	r.mu.Unlock()
}

func (r *flakyReceiver) received() []detect.Incident {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]detect.Incident(nil), r.got...)
}

// TestOutageKeepsEachIncidentsVersionsInOrder queues growing incidents
// while a flaky receiver fails at random and goes down for whole outages,
// restarting the outbox at random points, and checks, once the receiver is
// back: a destination that takes every version got each one, none before
// an older one of its incident (a repeat of the same version is at least
// once); one that needs only the newest (a Slack incoming webhook, which
// posts again only when severity rises) got versions in order, at most one
// post per severity reached, and the last severity. ORDER_SEED=<seed>
// replays one sequence.
func TestOutageKeepsEachIncidentsVersionsInOrder(t *testing.T) {
	base := uint64(time.Now().UnixNano())
	n := 12
	if s := os.Getenv("ORDER_SEED"); s != "" {
		fmt.Sscan(s, &base)
		n = 1
	}
	for _, every := range []bool{true, false} {
		for i := range n {
			seed := base + uint64(i)
			name := fmt.Sprintf("every=%v/%d", every, seed)
			if !t.Run(name, func(t *testing.T) {
				t.Logf("seed %d (ORDER_SEED=%d replays it)", seed, seed)
				orderRun(t, seed, every)
			}) {
				t.Fatalf("seed %d fails: ORDER_SEED=%d go test -run TestOutageKeepsEachIncidentsVersionsInOrder ./alert", seed, seed)
			}
		}
	}
}

func orderRun(t *testing.T, seed uint64, every bool) {
	rng := rand.New(rand.NewPCG(seed, 1))
	// Only a destination that takes every version may see a message twice
	// (at least once); the other's failures all come before the message
	// is taken, so that a second post can only be the outbox's doing.
	recv := newFlakyReceiver(t, seed, every)
	sink, err := webhook.New(webhook.Options{URL: recv.srv.URL, Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	do := alert.DestinationOptions{Rate: 5, Cooldown: -1, StormThreshold: -1, EveryVersion: every, OnlyEscalations: !every}
	h := &harness{t: t, path: filepath.Join(t.TempDir(), "spraywatch.db"), fake: slacktest.New(t), mode: "sink", sink: sink, do: do, now: t0, logs: &syncBuffer{}}
	if outboxOnPostgres {
		h.pgURL, h.pgPassword = pgtest.Database(t)
	}
	h.open()

	incs := map[int64]*detect.Incident{}
	for id := int64(1); id <= int64(2+rng.IntN(3)); id++ {
		inc := incident(id, detect.KindSpray, "api-nginx")
		inc.Version = 0
		incs[id] = &inc
	}
	steps := 40 + rng.IntN(80)
	for range steps {
		switch x := rng.Float64(); {
		case x < 0.08:
			recv.set(true)
		case x < 0.16:
			recv.set(false)
		case x < 0.2:
			h.crash()
			h.open()
		}
		if rng.Float64() < 0.5 {
			inc := incs[1+rng.Int64N(int64(len(incs)))]
			inc.Version++
			inc.Attempts += 10
			if inc.Version > 1 && rng.Float64() < 0.15 {
				inc.Severity = detect.SeverityCritical
			}
			h.flush(*inc)
		}
		h.run(1, time.Duration(200+rng.IntN(3000))*time.Millisecond)
	}
	recv.set(false)
	recv.mu.Lock()
	recv.flaky = 0
	recv.mu.Unlock()
	h.run(120, 3*time.Second) // backoff is capped at 8 s in the harness
	if n, _ := h.box.Pending(context.Background()); n["slack"] != 0 {
		t.Fatalf("%d alerts pending after the receiver came back", n["slack"])
	}

	got := map[int64][]int{}
	sev := map[int64][]string{}
	for _, inc := range recv.received() {
		got[inc.ID] = append(got[inc.ID], inc.Version)
		sev[inc.ID] = append(sev[inc.ID], inc.Severity)
	}
	for id, inc := range incs {
		vs := got[id]
		if inc.Version == 0 {
			if len(vs) != 0 {
				t.Errorf("incident %d: never queued, received %v", id, vs)
			}
			continue
		}
		for i := 1; i < len(vs); i++ {
			if vs[i] < vs[i-1] {
				t.Fatalf("incident %d: received versions %v: %d after %d", id, vs, vs[i], vs[i-1])
			}
			if !every && vs[i] == vs[i-1] {
				t.Fatalf("incident %d: received versions %v: %d twice", id, vs, vs[i])
			}
		}
		if every {
			seen := map[int]bool{}
			for _, v := range vs {
				seen[v] = true
			}
			if len(seen) != inc.Version {
				t.Fatalf("incident %d: received versions %v, want every one of 1..%d", id, vs, inc.Version)
			}
			continue
		}
		// Latest only, posting again only when severity rises.
		ss := sev[id]
		if len(vs) == 0 || ss[len(ss)-1] != inc.Severity {
			t.Fatalf("incident %d: posts %v with severities %v, want the last at %s", id, vs, ss, inc.Severity)
		}
		if len(vs) > 2 || len(vs) == 2 && (ss[0] != detect.SeverityHigh || ss[1] != detect.SeverityCritical) {
			t.Fatalf("incident %d: posts %v with severities %v, want one, or a second only when severity rose", id, vs, ss)
		}
	}
	t.Logf("received %d messages; stats %+v", len(recv.received()), h.stats())
}

// Rounds that fail one after another are logged once, then summarised a
// minute apart, and their end is logged: not one error per round.
func TestFailingRoundsAreSummarised(t *testing.T) {
	store, err := detect.Open(filepath.Join(t.TempDir(), "s.db"), detect.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var clock atomic.Int64 // each look at the clock: a second later
	clock.Store(t0.UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Add(int64(time.Second))) }
	logs := &syncBuffer{}
	o := alert.OutboxOptions{Interval: time.Millisecond, Now: now, Logger: slog.New(slog.NewTextHandler(logs, nil))}
	box, err := alert.OpenOutbox(context.Background(), store.DB(), o)
	if err != nil {
		t.Fatal(err)
	}
	box.AddDestination("file", alert.NewJSONLines(io.Discard), alert.DestinationOptions{})
	// The outbox table gone: every round fails until it is back.
	if _, err := store.DB().Exec(`DROP TABLE alert_outbox`); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- box.Run(ctx) }()
	start := clock.Load()
	for time.Duration(clock.Load()-start) < 10*time.Minute {
		time.Sleep(time.Millisecond)
	}
	if _, err := alert.OpenOutbox(context.Background(), store.DB(), o); err != nil { // the table back
		t.Fatal(err)
	}
	for !strings.Contains(logs.String(), "works again") && time.Duration(clock.Load()-start) < 20*time.Minute {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	out := logs.String()
	first := strings.Count(out, "alert delivery round failed")
	summaries := strings.Count(out, "alert delivery rounds still failing")
	if first != 1 || summaries < 5 || summaries > 13 {
		t.Errorf("over more than 10 minutes of failing rounds: %d first errors, %d summaries; want 1, and about one a minute:\n%s", first, summaries, out)
	}
	if !strings.Contains(out, "alert delivery works again") {
		t.Errorf("no line says delivery works again:\n%s", out)
	}
}
