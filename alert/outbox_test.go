package alert_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/alert"
	"github.com/spraywatch/spraywatch/alert/slack"
	"github.com/spraywatch/spraywatch/alert/slack/slacktest"
	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/detect/postgres"
	"github.com/spraywatch/spraywatch/detect/postgres/pgtest"
	"github.com/spraywatch/spraywatch/ingest"
)

var (
	rawKey = "sk_live_4eC39HqLyjWDarjtT1zdp7dcRAWKEY"
	t0     = time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
)

// syncBuffer collects log output from the sender.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// outboxStore is what the harness needs of either store.
type outboxStore interface {
	Flush(context.Context, detect.Batch) error
	DB() *sql.DB
	Close() error
}

// outboxOnPostgres makes newHarness use PostgreSQL.
var outboxOnPostgres bool

// harness is a spraywatch database with an outbox delivering to a fake
// Slack, on a clock the test moves.
type harness struct {
	t     *testing.T
	path  string
	fake  *slacktest.Server
	mode  string     // "bot", "webhook" or "sink"
	sink  alert.Sink // the sink of mode "sink"
	do    alert.DestinationOptions
	now   time.Time
	logs  *syncBuffer
	store outboxStore
	box   *alert.Outbox
	// pgURL, when set, puts the outbox in that PostgreSQL database
	// instead of SQLite (see TestOutboxOnPostgres).
	pgURL, pgPassword string
	// at is the clock time each request the fake received was made at.
	at []time.Time
}

func newHarness(t *testing.T, mode string, do alert.DestinationOptions) *harness {
	h := &harness{t: t, path: filepath.Join(t.TempDir(), "spraywatch.db"), fake: slacktest.New(t), mode: mode, do: do, now: t0, logs: &syncBuffer{}}
	if outboxOnPostgres {
		h.pgURL, h.pgPassword = pgtest.Database(t)
	}
	h.open()
	return h
}

// open opens the database and a fresh outbox, as a (re)started daemon does.
func (h *harness) open() {
	h.t.Helper()
	var store outboxStore
	var err error
	if h.pgURL != "" {
		store, err = postgres.Open(context.Background(), postgres.Options{URL: h.pgURL, Password: h.pgPassword})
	} else {
		store, err = detect.Open(h.path, detect.StoreOptions{})
	}
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { store.Close() })
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	box, err := alert.OpenOutbox(context.Background(), store.DB(), alert.OutboxOptions{
		Postgres:      h.pgURL != "",
		Now:           func() time.Time { return h.now },
		Rand:          func() float64 { return 0.3 },
		BackoffBase:   time.Second,
		BackoffMax:    8 * time.Second,
		AlertsCommand: "spraywatch alerts --db " + h.path,
		Logger:        log,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	var sink alert.Sink
	switch h.mode {
	case "sink":
		sink = h.sink
	case "bot":
		sink, err = slack.NewBot(slack.BotOptions{Token: "xoxb-fake-secret-token", Channel: "C0FAKE", APIURL: h.fake.APIURL(),
			Refs: box.MessageRefs("slack"), Timeout: 50 * time.Millisecond, Logger: log})
	default:
		sink, err = slack.NewWebhook(slack.WebhookOptions{URL: h.fake.WebhookURL(), Timeout: 50 * time.Millisecond})
	}
	if err != nil {
		h.t.Fatal(err)
	}
	box.AddDestination("slack", sink, h.do)
	h.store, h.box = store, box
}

// crash drops the process without delivering more.
func (h *harness) crash() {
	h.t.Helper()
	if err := h.store.Close(); err != nil {
		h.t.Fatal(err)
	}
}

// flush records incidents as the engine does, enqueuing them in the same
// transaction.
func (h *harness) flush(incs ...detect.Incident) {
	h.t.Helper()
	var b detect.Batch
	for i := range incs {
		b.Incidents = append(b.Incidents, &incs[i])
	}
	b.Extra = h.box.Enqueue
	if err := h.store.Flush(context.Background(), b); err != nil {
		h.t.Fatal(err)
	}
}

// run moves the clock by step n times, with a delivery round each time.
func (h *harness) run(n int, step time.Duration) {
	h.t.Helper()
	for range n {
		h.now = h.now.Add(step)
		if err := h.box.Tick(context.Background(), h.now); err != nil {
			h.t.Fatal(err)
		}
		for len(h.at) < len(h.fake.Received()) {
			h.at = append(h.at, h.now)
		}
	}
}

func (h *harness) stats() alert.DestinationStats { return h.box.Stats()[0] }

func incident(id int64, kind, source string) detect.Incident {
	label := rawKey[:6] + "…" + ingest.Fingerprint([]byte("0123456789abcdef0123456789abcdef"), []byte(rawKey))
	return detect.Incident{
		ID: id, Kind: kind, Severity: detect.SeverityHigh, Source: source, Group: fmt.Sprintf("203.0.113.%d", id), State: detect.StateOpen,
		FirstSeen: t0, LastSeen: t0.Add(time.Minute), Updated: t0.Add(time.Minute),
		IPs: []string{fmt.Sprintf("203.0.113.%d", id)}, Credentials: []string{label}, CredentialsKnown: true,
		Identities: 12, IdentitySample: []string{"alice", "bob"}, Attempts: 12,
		Rule:    detect.Rule{Name: kind, Window: "15m", Thresholds: map[string]any{"min_identities": 10}},
		Summary: fmt.Sprintf("203.0.113.%d sprayed %s across 12 identities (12 attempts)", id, label),
		Version: 1,
	}
}

var incidentRef = regexp.MustCompile(`incident #(\d+)`)

// posts counts top-level messages per incident (0: summaries).
func posts(msgs []slacktest.Message) map[string]int {
	out := map[string]int{}
	for _, m := range msgs {
		if m.Method == "chat.update" || m.ThreadTS != "" {
			continue
		}
		id := "summary"
		if sm := incidentRef.FindStringSubmatch(m.Text); sm != nil {
			id = sm[1]
		}
		out[id]++
	}
	return out
}

func TestOneMessagePerIncident(t *testing.T) {
	for _, mode := range []string{"bot", "webhook"} {
		t.Run(mode, func(t *testing.T) {
			h := newHarness(t, mode, alert.DestinationOptions{})
			h.flush(incident(1, detect.KindSpray, "api-nginx"), incident(2, detect.KindBruteForce, "api-nginx"), incident(3, detect.KindSpray, "app"))
			h.run(1, 0)
			if got := len(h.fake.Sent()); got != 1 {
				t.Errorf("after the first round: %d messages, want 1 (one per second)", got)
			}
			h.run(30, time.Second)
			got := posts(h.fake.Sent())
			want := map[string]int{"1": 1, "2": 1, "3": 1}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("messages per incident: got %v, want %v", got, want)
			}
		})
	}
}

func TestGrowingIncidentUpdatesItsMessage(t *testing.T) {
	h := newHarness(t, "bot", alert.DestinationOptions{Cooldown: time.Minute})
	inc := incident(1, detect.KindSpray, "api-nginx")
	h.flush(inc)
	h.run(1, time.Second)
	for v := 2; v <= 3; v++ { // two updates within the cooldown
		inc.Version, inc.Attempts = v, int64(100*v)
		h.flush(inc)
		h.run(10, time.Second)
	}
	if got := len(h.fake.Sent()); got != 1 {
		t.Fatalf("within the cooldown: %d messages, want only the first", got)
	}
	h.run(60, time.Second)
	sent := h.fake.Sent()
	if len(sent) != 2 {
		t.Fatalf("after the cooldown: %d requests, want the post and one update: %+v", len(sent), sent)
	}
	if sent[1].Method != "chat.update" || sent[1].TS != sent[0].TS {
		t.Errorf("update: got %s of %q, want chat.update of the first message %q", sent[1].Method, sent[1].TS, sent[0].TS)
	}
	if !strings.Contains(sent[1].Blocks, "300") || !strings.Contains(sent[1].Blocks, "update 3") {
		t.Errorf("the update does not show the newest version (300 attempts, update 3): %s", sent[1].Blocks)
	}

	// A rise in severity skips the cooldown.
	inc.Version, inc.Severity = 4, detect.SeverityCritical
	h.flush(inc)
	h.run(1, time.Second)
	if sent := h.fake.Sent(); len(sent) != 3 || sent[2].Method != "chat.update" {
		t.Errorf("severity rise: got %d requests, want a third, an immediate chat.update", len(sent))
	}
	if st := h.stats(); st.Deferred == 0 {
		t.Errorf("stats: Deferred = 0, want the cooldown counted: %+v", st)
	}
	if got := posts(h.fake.Sent()); got["1"] != 1 {
		t.Errorf("top-level posts of incident 1: got %d, want 1", got["1"])
	}
}

func TestRateLimitsAndOutageDeliverEverythingOnce(t *testing.T) {
	h := newHarness(t, "bot", alert.DestinationOptions{StormThreshold: -1})
	var incs []detect.Incident
	for id := int64(1); id <= 6; id++ {
		incs = append(incs, incident(id, detect.KindSpray, "api-nginx"))
	}
	// A 429 storm: ten answers in a row asking to wait 2 s, then a slow one.
	for range 10 {
		h.fake.Queue(slacktest.RateLimited(2))
	}
	h.fake.Queue(slacktest.Slow(time.Second))
	h.flush(incs[:3]...)
	h.run(40, time.Second)
	for i := range 10 { // nothing was sent before a Retry-After ran out
		if gap := h.at[i+1].Sub(h.at[i]); gap < 2*time.Second {
			t.Errorf("request %d came %s after a 429 asking for 2s", i+1, gap)
		}
	}

	// A 30 s outage while more incidents come: 500s, then answers too slow
	// for the client's timeout.
	h.fake.Answer(slacktest.ServerError)
	// Tries, not counting the reads of the channel that ask, before each
	// retry, whether a try that failed had posted after all.
	tries := func() int {
		n := 0
		for _, m := range h.fake.Received() {
			if !strings.HasPrefix(m.Method, "conversations.") {
				n++
			}
		}
		return n
	}
	start := tries()
	h.flush(incs[3:]...)
	h.run(15, time.Second)
	h.fake.Answer(slacktest.Slow(time.Second))
	h.run(15, time.Second)
	during := tries() - start
	h.fake.Answer(slacktest.OK)
	h.run(60, time.Second)

	got := posts(h.fake.Sent())
	want := map[string]int{"1": 1, "2": 1, "3": 1, "4": 1, "5": 1, "6": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("messages per incident: got %v, want %v", got, want)
	}
	if len(h.fake.Sent()) != 6 {
		t.Errorf("accepted requests: got %d, want 6", len(h.fake.Sent()))
	}
	if during > 8 {
		t.Errorf("during the 30 s outage: %d tries, want few (backoff)", during)
	}
	st := h.stats()
	t.Logf("tries during the outage: %d; stats: %+v", during, st)
	if st.RateLimited != 10 || st.Retries < 4 || st.Sent != 6 || st.Misconfigured != 0 {
		t.Errorf("stats: %+v, want 10 rate limited, 4+ retries, 6 sent", st)
	}
	if n, _ := h.box.Pending(context.Background()); n["slack"] != 0 {
		t.Errorf("pending after recovery: %d, want 0", n["slack"])
	}
}

func TestRestartSendsPendingOnce(t *testing.T) {
	h := newHarness(t, "bot", alert.DestinationOptions{Cooldown: -1})
	h.flush(incident(1, detect.KindSpray, "api-nginx"), incident(2, detect.KindSpray, "app"), incident(3, detect.KindBruteForce, "app"))
	h.run(1, time.Second) // one sent, two pending
	h.crash()
	if got := len(h.fake.Sent()); got != 1 {
		t.Fatalf("before the crash: %d messages, want 1", got)
	}

	h.open()
	h.run(10, time.Second)
	h.crash()
	h.open()
	h.run(10, time.Second)
	want := map[string]int{"1": 1, "2": 1, "3": 1}
	if got := posts(h.fake.Sent()); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after restarts: messages per incident %v, want %v", got, want)
	}

	// The message ts survived the restarts: an update edits the first post.
	inc := incident(1, detect.KindSpray, "api-nginx")
	inc.Version = 2
	h.flush(inc)
	h.run(2, time.Second)
	sent := h.fake.Sent()
	if last := sent[len(sent)-1]; last.Method != "chat.update" || last.TS != sent[0].TS {
		t.Errorf("update after restart: got %s of %q, want chat.update of %q", last.Method, last.TS, sent[0].TS)
	}
}

func TestStormIsSummarized(t *testing.T) {
	h := newHarness(t, "webhook", alert.DestinationOptions{StormThreshold: 5})
	var incs []detect.Incident
	for id := int64(1); id <= 12; id++ {
		incs = append(incs, incident(id, detect.KindSpray, "api-nginx"))
	}
	incs = append(incs, incident(13, detect.KindBruteForce, "api-nginx"))
	h.flush(incs...)
	h.run(30, time.Second)

	got := posts(h.fake.Sent())
	want := map[string]int{"1": 1, "2": 1, "3": 1, "4": 1, "5": 1, "13": 1, "summary": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("messages: got %v, want %v", got, want)
	}
	var summary string
	for _, m := range h.fake.Sent() {
		if strings.Contains(m.Text, "more spray incidents") {
			summary = m.Text + m.Blocks
		}
	}
	for _, s := range []string{"7 more spray incidents from api-nginx", "spraywatch alerts --db " + h.path + " --kind spray --source api-nginx"} {
		if !strings.Contains(summary, s) {
			t.Errorf("summary lacks %q: %s", s, summary)
		}
	}
	if st := h.stats(); st.Grouped != 7 || st.Summaries != 1 {
		t.Errorf("stats: %+v, want 7 grouped and 1 summary", st)
	}
	// A folded incident's update stays folded.
	incs[11].Version = 2
	h.flush(incs[11])
	h.run(10, time.Minute)
	if n := len(h.fake.Sent()); n != 7 {
		t.Errorf("after an update of a folded incident: %d messages, want still 7", n)
	}
}

// TestMessageThatCannotBeEditedDoesNotBlockTheDestination: someone deleted
// the Slack message of incident 1, or Slack no longer lets the bot edit it.
// Its update is posted again, or replied in its thread, and incident 2,
// queued behind it, is delivered too.
func TestMessageThatCannotBeEditedDoesNotBlockTheDestination(t *testing.T) {
	for _, slackErr := range []string{"message_not_found", "cant_update_message", "edit_window_closed"} {
		t.Run(slackErr, func(t *testing.T) {
			h := newHarness(t, "bot", alert.DestinationOptions{Cooldown: -1})
			inc := incident(1, detect.KindSpray, "api-nginx")
			h.flush(inc)
			h.run(1, time.Second)
			if len(h.fake.Sent()) != 1 {
				t.Fatal("incident 1 was not posted")
			}
			first := h.fake.Sent()[0].TS
			h.fake.AnswerMethod("chat.update", slacktest.Answer{SlackError: slackErr})
			inc.Version, inc.Attempts = 2, 200
			h.flush(inc, incident(2, detect.KindBruteForce, "app"))
			h.run(60, time.Second)

			want := map[string]int{"1": 2, "2": 1} // incident 1 posted again
			if slackErr != "message_not_found" {
				want["1"] = 1
				var replies int
				for _, m := range h.fake.Sent() {
					if m.ThreadTS == first && strings.Contains(m.Blocks, "200") {
						replies++
					}
				}
				if replies != 1 {
					t.Errorf("replies with the update in the thread of %q: %d, want 1", first, replies)
				}
			}
			if got := posts(h.fake.Sent()); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("messages per incident: got %v, want %v", got, want)
			}
			if n, _ := h.box.Pending(context.Background()); n["slack"] != 0 {
				t.Errorf("pending: %d, want 0", n["slack"])
			}
			if n := len(h.fake.Received()); n > 4 {
				t.Errorf("requests: %d, want at most 4 (post, failed edit, fallback, post)", n)
			}
		})
	}
}

// stuckSink fails transiently, every time, for one incident and records
// the others.
type stuckSink struct {
	stuck int64
	mu    sync.Mutex
	tries int
	sent  []int64
}

func (s *stuckSink) Send(_ context.Context, inc detect.Incident) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if inc.ID == s.stuck {
		s.tries++
		return fmt.Errorf("send incident %d: upstream answered 502", inc.ID)
	}
	s.sent = append(s.sent, inc.ID)
	return nil
}

func (s *stuckSink) Sent() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.sent...)
}

// TestStuckAlertDoesNotBlockTheOthers: an alert that fails again and again
// is retried with backoff of its own, and the alerts queued behind it go
// out meanwhile (no head-of-line blocking).
func TestStuckAlertDoesNotBlockTheOthers(t *testing.T) {
	sink := &stuckSink{stuck: 1}
	h := &harness{t: t, path: filepath.Join(t.TempDir(), "spraywatch.db"), fake: slacktest.New(t), mode: "sink", sink: sink,
		do: alert.DestinationOptions{Rate: 10, Cooldown: -1}, now: t0, logs: &syncBuffer{}}
	h.open()
	h.flush(incident(1, detect.KindSpray, "api-nginx"), incident(2, detect.KindSpray, "app"))
	h.run(30, time.Second)
	h.flush(incident(3, detect.KindBruteForce, "app"))
	h.run(30, time.Second)
	if got, want := fmt.Sprint(sink.Sent()), "[2 3]"; got != want {
		t.Errorf("delivered: got %s, want %s behind the stuck incident 1", got, want)
	}
	// Backoff 1s doubling to 8s: about a dozen tries in a minute, not 60.
	if sink.tries > 15 {
		t.Errorf("incident 1 tried %d times in 60 s, want backoff", sink.tries)
	}
	if n, _ := h.box.Pending(context.Background()); n["slack"] != 1 {
		t.Errorf("pending: %d, want the stuck one kept", n["slack"])
	}
}

// A misconfigured destination is not retried like a transient failure:
// one try every BackoffMax (8 s in the harness, 5 min by default) until a
// send succeeds again, which delivers what was kept and clears Disabled.
func TestMisconfigurationIsTriedSeldom(t *testing.T) {
	h := newHarness(t, "bot", alert.DestinationOptions{})
	h.fake.Answer(slacktest.InvalidToken)
	h.flush(incident(1, detect.KindSpray, "api-nginx"), incident(2, detect.KindSpray, "api-nginx"))
	h.run(7, time.Second)
	if n := len(h.fake.Received()); n != 1 {
		t.Errorf("requests in 7 s: %d, want 1 (not retried before BackoffMax)", n)
	}
	if st := h.stats(); st.Misconfigured != 1 || !st.Disabled {
		t.Errorf("stats: %+v, want 1 misconfigured and disabled", st)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "misconfigured") || !strings.Contains(logs, "invalid_auth") {
		t.Errorf("log does not say the destination is misconfigured:\n%s", logs)
	}
	if n, _ := h.box.Pending(context.Background()); n["slack"] != 2 {
		t.Errorf("pending: %d, want both kept for when the config is fixed", n["slack"])
	}
	h.run(80, time.Second)
	if n := len(h.fake.Received()); n < 9 || n > 12 {
		t.Errorf("requests in 87 s: %d, want one each 8 s", n)
	}
	h.fake.Answer(slacktest.OK) // the token was fixed
	h.run(20, time.Second)
	if n, _ := h.box.Pending(context.Background()); n["slack"] != 0 {
		t.Errorf("pending once fixed: %d, want both delivered", n["slack"])
	}
	if st := h.stats(); st.Disabled || st.Sent != 2 {
		t.Errorf("stats once fixed: %+v, want 2 sent and not disabled", st)
	}
}

func TestNoRawKeyOrWebhookURLAnywhere(t *testing.T) {
	h := newHarness(t, "webhook", alert.DestinationOptions{StormThreshold: 2})
	h.fake.Queue(slacktest.ServerError, slacktest.Slow(time.Second), slacktest.RateLimited(1), slacktest.Answer{Status: 429})
	var incs []detect.Incident
	for id := int64(1); id <= 5; id++ {
		incs = append(incs, incident(id, detect.KindSpray, "api-nginx"))
	}
	h.flush(incs...)
	h.run(60, time.Second)
	h.fake.Answer(slacktest.Answer{Status: 404})
	h.flush(incident(6, detect.KindBruteForce, "api-nginx"))
	h.run(5, time.Second)

	var seen strings.Builder
	for _, m := range h.fake.Received() {
		seen.WriteString(m.Body)
	}
	if len(h.fake.Sent()) == 0 {
		t.Fatal("nothing delivered")
	}
	rows, err := h.store.DB().Query(`SELECT body || error FROM alert_outbox`)
	if err != nil {
		t.Fatal(err)
	}
	var stored strings.Builder
	for rows.Next() {
		var s string
		rows.Scan(&s)
		stored.WriteString(s)
	}
	rows.Close()
	for where, text := range map[string]string{"messages": seen.String(), "logs": h.logs.String(), "outbox": stored.String()} {
		if text == "" {
			t.Errorf("%s: empty, the test sees nothing", where)
		}
		for _, secret := range []string{rawKey, rawKey[6:], h.fake.WebhookURL(), slacktest.WebhookPath, "hooksecret"} {
			if strings.Contains(text, secret) {
				t.Errorf("%s hold a secret %q", where, secret)
			}
		}
	}
	if !strings.Contains(h.logs.String(), "will retry") || !strings.Contains(h.logs.String(), "misconfigured") {
		t.Errorf("logs lack the failures the test provoked:\n%s", h.logs.String())
	}
}

func TestJSONLinesGetsEveryVersionThroughTheOutbox(t *testing.T) {
	store, box := openOutbox(t, alert.OutboxOptions{Now: func() time.Time { return t0 }})
	var out bytes.Buffer
	box.AddDestination("stdout", alert.NewJSONLines(&out), alert.DestinationOptions{Rate: 1000, StormThreshold: 2})
	var b detect.Batch
	for id := int64(1); id <= 4; id++ {
		inc := incident(id, detect.KindSpray, "api-nginx")
		b.Incidents = append(b.Incidents, &inc)
	}
	b.Extra = box.Enqueue
	if err := store.Flush(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if err := box.Tick(context.Background(), t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("got %d lines, want 4 (machines get every incident, no storm summary)", len(lines))
	}
	var inc detect.Incident
	if err := json.Unmarshal([]byte(lines[0]), &inc); err != nil || inc.ID != 1 {
		t.Errorf("first line: %v, id %d", err, inc.ID)
	}
}

func TestWebhookPostsAgainOnlyWhenSeverityRises(t *testing.T) {
	h := newHarness(t, "webhook", alert.DestinationOptions{OnlyEscalations: true, Cooldown: time.Minute})
	inc := incident(1, detect.KindSpray, "api-nginx")
	h.flush(inc)
	h.run(1, time.Second)
	for v := 2; v <= 4; v++ {
		inc.Version, inc.Attempts = v, int64(100*v)
		h.flush(inc)
		h.run(90, time.Second)
	}
	if n := len(h.fake.Sent()); n != 1 {
		t.Fatalf("a growing incident: %d posts, want 1 (a webhook cannot edit)", n)
	}
	inc.Version, inc.Severity = 5, detect.SeverityCritical
	h.flush(inc)
	h.run(1, time.Second)
	sent := h.fake.Sent()
	if len(sent) != 2 || !strings.Contains(sent[1].Text, "CRITICAL") {
		t.Errorf("after the severity rose: %d posts, want a second, critical one", len(sent))
	}
	if st := h.stats(); st.Skipped != 3 {
		t.Errorf("stats: %+v, want 3 skipped updates", st)
	}
}

func TestRunDeliversWhenWokenAndDrainsOnStop(t *testing.T) {
	store, box := openOutbox(t, alert.OutboxOptions{Interval: time.Hour})
	fake := slacktest.New(t)
	hook, _ := slack.NewWebhook(slack.WebhookOptions{URL: fake.WebhookURL()})
	box.AddDestination("slack", hook, alert.DestinationOptions{Rate: 1000})
	flush := func(id int64) {
		inc := incident(id, detect.KindSpray, "api-nginx")
		if err := store.Flush(context.Background(), detect.Batch{Incidents: []*detect.Incident{&inc}, Extra: box.Enqueue}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- box.Run(ctx) }()

	flush(1) // the hour-long interval never fires: Enqueue wakes Run
	for deadline := time.Now().Add(30 * time.Second); len(fake.Sent()) == 0 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
	}
	if n := len(fake.Sent()); n != 1 {
		t.Fatalf("after a wake: %d messages, want 1", n)
	}
	// Stop right after a flush: the last round still delivers it.
	flush(2)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	n, _ := box.Pending(context.Background())
	if len(fake.Sent()) != 2 || n["slack"] != 0 {
		t.Errorf("after stop: %d sent, %d pending; want both sent", len(fake.Sent()), n["slack"])
	}
}

// A destination that takes every version gets an incident's first version
// even when a newer one was queued before the first could go; the others
// get only the newest.
func TestEveryVersionKeepsVersionsQueuedTogether(t *testing.T) {
	for _, every := range []bool{true, false} {
		t.Run(fmt.Sprintf("every=%v", every), func(t *testing.T) {
			store, box := openOutbox(t, alert.OutboxOptions{Now: func() time.Time { return t0 }})
			var out bytes.Buffer
			box.AddDestination("file", alert.NewJSONLines(&out), alert.DestinationOptions{Rate: 1000, Cooldown: -1, EveryVersion: every})
			for v := 1; v <= 3; v++ {
				inc := incident(1, detect.KindSpray, "api-nginx")
				inc.Version = v
				if err := store.Flush(context.Background(), detect.Batch{Incidents: []*detect.Incident{&inc}, Extra: box.Enqueue}); err != nil {
					t.Fatal(err)
				}
			}
			if err := box.Tick(context.Background(), t0.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				var inc detect.Incident
				if err := json.Unmarshal([]byte(line), &inc); err != nil {
					t.Fatal(err)
				}
				got = append(got, inc.Version)
			}
			want := []int{3}
			if every {
				want = []int{1, 2, 3}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("versions delivered %v, want %v", got, want)
			}
		})
	}
}

// openOutbox opens a store in a temporary directory, closed at the end of
// the test, and an outbox in it.
func openOutbox(t *testing.T, o alert.OutboxOptions) (*detect.Store, *alert.Outbox) {
	t.Helper()
	store, err := detect.Open(filepath.Join(t.TempDir(), "s.db"), detect.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	box, err := alert.OpenOutbox(context.Background(), store.DB(), o)
	if err != nil {
		t.Fatal(err)
	}
	return store, box
}
