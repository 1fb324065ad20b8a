package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/alert/slack/slacktest"
	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest/loggen"
)

func writeFile(t *testing.T, path, content string, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
}

const alertsTestConfig = `database: %[1]s/spraywatch.db
fingerprint_secret_file: %[1]s/fingerprint.key
sources:
  - name: api
    format: nginx
    paths: [%[1]s/access.log]
    identity: {path: ["/api/v1/clients/{identity}/"]}
alerts:
  - type: stdout
  - type: slack
    name: slack-hook
    webhook_url_file: %[1]s/slack-webhook
  - type: webhook
    url_env: SPRAYWATCH_TEST_WEBHOOK_URL
`

func TestAlertsTestReportsEverySink(t *testing.T) {
	dir := t.TempDir()
	hook, siem := slacktest.New(t), slacktest.New(t)
	siem.Answer(slacktest.Answer{Status: 404})
	writeFile(t, filepath.Join(dir, "slack-webhook"), hook.WebhookURL()+"\n", 0o600)
	t.Setenv("SPRAYWATCH_TEST_WEBHOOK_URL", siem.URL+"/siem/secret-path-4711")
	cfg := filepath.Join(dir, "spraywatch.yml")
	writeFile(t, cfg, fmt.Sprintf(alertsTestConfig, dir), 0o644)

	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"alerts", "test", "--config", cfg}, &out, &errb)
	if code != exitRuntime {
		t.Errorf("exit code %d, want %d (a sink failed)", code, exitRuntime)
	}
	got := out.String()
	for _, want := range []string{
		"test message from spraywatch alerts test", // the stdout sink itself
		"stdout (text to stdout): ok",
		"slack-hook (slack incoming webhook): ok",
		"webhook (webhook): FAILED",
		"misconfigured",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if n := len(hook.Sent()); n != 1 || !strings.Contains(hook.Sent()[0].Blocks, "spraywatch test message") {
		t.Errorf("the fake Slack got %d messages, want the test message", n)
	}
	for _, secret := range []string{hook.WebhookURL(), "hooksecret", "secret-path-4711"} {
		if strings.Contains(got+errb.String(), secret) {
			t.Errorf("output holds a secret %q:\n%s%s", secret, got, errb.String())
		}
	}
}

func TestAlertSecretsAreNeverEchoed(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "hook"), "not-a-url-but-a-secret-0815", 0o600)
	cfg := fmt.Sprintf(`database: %[1]s/db
fingerprint_secret_file: %[1]s/key
alerts:
  - type: slack
    webhook_url_file: %[1]s/hook
`, dir)
	c, err := ParseConfig([]byte(cfg), dir)
	if err != nil {
		t.Fatal(err)
	}
	store, err := detect.Open(filepath.Join(dir, "db"), detect.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var logs bytes.Buffer
	_, err = newAlerting(c, store, slog.New(slog.NewTextHandler(&logs, nil)), &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "alerts[0].webhook_url_file") {
		t.Fatalf("got %v, want an error naming alerts[0].webhook_url_file", err)
	}
	if strings.Contains(err.Error(), "0815") {
		t.Errorf("error echoes the secret: %v", err)
	}

	_, err = LoadConfig(filepath.Join("..", "..", "testdata", "config", "alerts-inline-secret.bad.yml"))
	if err == nil || strings.Contains(err.Error(), "inlinesecret") {
		t.Errorf("inline webhook_url: got %v, want an error without the URL", err)
	}
}

// TestRunPostsSprayToSlack runs 'spraywatch run' on a file a writer appends
// a spray to and waits for the Slack message at a fake. The message must
// come within 2 s of the line that crosses the threshold; the wait itself
// is bounded generously. With whole keys in the log, no raw key may reach
// Slack, the daemon's output or the database.
func TestRunPostsSprayToSlack(t *testing.T) {
	tests := []struct {
		name, kind, key, label string
	}{
		{"key prefixes", "prefix", "sk_live_dead", "sk_live_dead"},
		{"whole keys", "key", "sk_live_4eC39HqLyjWDarjtT1zdp7dcRAW", "sk_liv…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			fake := slacktest.New(t)
			writeFile(t, filepath.Join(dir, "secrets", "slack-webhook"), fake.WebhookURL(), 0o600)
			cfg := filepath.Join(dir, "spraywatch.yml")
			writeFile(t, cfg, fmt.Sprintf(`database: state/spraywatch.db
fingerprint_secret_file: state/fingerprint.key
start_at: beginning
poll_interval: 20ms
flush_interval: 50ms
sources:
  - name: api
    format: nginx
    paths: [%[1]s/access.log]
    log_format: '%[2]s'
    credential: {field: api_key_prefix, kind: %[4]s}
    identity: {path: ["%[3]s"]}
    timezone: UTC
alerts:
  - type: stdout
    format: json
  - type: slack
    name: slack-security
    webhook_url_file: %[1]s/secrets/slack-webhook
`, dir, loggen.LogFormat, loggen.IdentityPath, tt.kind), 0o644)
			logf, err := os.OpenFile(filepath.Join(dir, "access.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			defer logf.Close()
			base := time.Now().UTC().Add(-5 * time.Minute).Truncate(time.Second)
			line := func(i int) string {
				at := base.Add(time.Duration(i) * 2 * time.Second)
				return fmt.Sprintf(`203.0.113.66 - - [%s] "POST /api/v1/clients/victim-%03d/token HTTP/1.1" 401 32 "-" "spray/1.0" key=%s rt=0.004`+"\n",
					at.Format("02/Jan/2006:15:04:05 -0700"), i, tt.key)
			}
			sprayMsgs := func() []slacktest.Message {
				var out []slacktest.Message
				for _, m := range fake.Sent() {
					if strings.Contains(m.Text, "spray on api") {
						out = append(out, m)
					}
				}
				return out
			}

			ctx, cancel := context.WithCancel(context.Background())
			stdout, stderr := &syncBuffer{}, &syncBuffer{}
			done := make(chan int, 1)
			go func() {
				done <- run(ctx, []string{"run", "--config", cfg, "--log-level", "debug"}, stdout, stderr)
			}()
			stopped := false
			stop := func() {
				if stopped {
					return
				}
				stopped = true
				cancel()
				select {
				case <-done:
				case <-time.After(30 * time.Second):
					t.Errorf("run did not stop:\n%s", stderr.String())
				}
			}
			defer stop()

			// Below the threshold (10 identities): counted, no spray message.
			for i := range 9 {
				if _, err := logf.WriteString(line(i)); err != nil {
					t.Fatal(err)
				}
			}
			db := filepath.Join(dir, "state", "spraywatch.db")
			waitFor(t, stderr, "9 lines stored", func() bool { return storedAttempts(db) >= 9 })
			if n := len(sprayMsgs()); n != 0 {
				t.Fatalf("below the threshold: %d spray messages, want 0", n)
			}

			if _, err := logf.WriteString(line(9)); err != nil {
				t.Fatal(err)
			}
			crossed := time.Now()
			waitFor(t, stderr, "the spray message at the fake Slack", func() bool { return len(sprayMsgs()) > 0 })
			latency := time.Since(crossed)
			t.Logf("Slack message %s after the crossing line", latency.Round(time.Millisecond))
			if latency > 2*time.Second {
				t.Errorf("the Slack message came %s after the crossing line, want within 2s", latency)
			}
			stop()

			msg := sprayMsgs()[0]
			for _, want := range []string{"203.0.113.66", tt.label, "spraywatch explain --db " + db} {
				if !strings.Contains(msg.Body, want) {
					t.Errorf("message lacks %q: %s", want, msg.Body)
				}
			}
			if n := len(sprayMsgs()); n != 1 {
				t.Errorf("spray messages: %d, want exactly 1", n)
			}
			var slack strings.Builder
			for _, m := range fake.Received() {
				slack.WriteString(m.Body)
			}
			outbox := dumpOutbox(t, db)
			for where, text := range map[string]string{"slack": slack.String(), "stderr": stderr.String(), "stdout": stdout.String(), "outbox": outbox} {
				for _, secret := range []string{fake.WebhookURL(), "hooksecret"} {
					if strings.Contains(text, secret) {
						t.Errorf("%s holds the webhook URL", where)
					}
				}
				if tt.kind == "key" && strings.Contains(text, tt.key[6:]) {
					t.Errorf("%s holds the raw key", where)
				}
			}
		})
	}
}

// dumpOutbox returns every outbox row as text.
func dumpOutbox(t *testing.T, db string) string {
	t.Helper()
	s, err := detect.Open(db, detect.StoreOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rows, err := s.DB().Query(`SELECT destination || state || body || error FROM alert_outbox`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			t.Fatal(err)
		}
		b.WriteString(r)
	}
	return b.String()
}

func storedAttempts(db string) int {
	s, err := detect.Open(db, detect.StoreOptions{ReadOnly: true})
	if err != nil {
		return 0
	}
	defer s.Close()
	var n int
	if err := s.DB().QueryRow(`SELECT COALESCE(SUM(count), 0) FROM attempts`).Scan(&n); err != nil {
		return 0
	}
	return n
}

// waitFor polls cond, giving up after a generous 30 s.
func waitFor(t *testing.T, log *syncBuffer, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("gave up waiting for %s; daemon log:\n%s", what, log.String())
}
