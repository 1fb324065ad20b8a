package slack_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/alert"
	"github.com/spraywatch/spraywatch/alert/slack"
	"github.com/spraywatch/spraywatch/alert/slack/slacktest"
	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
)

var (
	rawKey = "sk_live_4eC39HqLyjWDarjtT1zdp7dcRAWKEY"
	t0     = time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
)

func spray(id int64) detect.Incident {
	label := rawKey[:6] + "…" + ingest.Fingerprint([]byte("0123456789abcdef0123456789abcdef"), []byte(rawKey))
	return detect.Incident{
		ID: id, Kind: detect.KindSpray, Severity: detect.SeverityHigh, Source: "api-nginx", State: detect.StateOpen,
		FirstSeen: t0, LastSeen: t0.Add(7 * time.Minute), Updated: t0.Add(7 * time.Minute),
		IPs:         []string{"203.0.113.7", "203.0.113.8", "203.0.113.9", "203.0.113.10", "203.0.113.11", "203.0.113.12"},
		Credentials: []string{label}, CredentialsKnown: true,
		Identities: 42, IdentitySample: []string{"alice", "bob", "<!channel>", "dave", "erin", "frank"},
		Attempts: 57,
		Rule:     detect.Rule{Name: "spray", Window: "15m", Thresholds: map[string]any{"min_identities": 10, "max_credentials": 3}},
		Summary:  "203.0.113.7 sprayed 1 credential(s) across 42 identities (57 attempts)",
		Version:  1,
	}
}

func compromise(id int64) detect.Incident {
	return detect.Incident{
		ID: id, Kind: detect.KindCompromise, Severity: detect.SeverityCritical, Source: "api-nginx", State: detect.StateOpen,
		FirstSeen: t0, LastSeen: t0, IPs: []string{"203.0.113.7"}, Compromised: []string{"carol"}, CompromisedCritical: 1, Identities: 1,
		IdentitySample: []string{"carol"}, Attempts: 1, Related: 1, Rule: detect.Rule{Name: "compromise", Window: "3h"}, Version: 1,
	}
}

func TestMessageShowsTheFacts(t *testing.T) {
	text, blocks := slack.Message(spray(7), slack.MessageOptions{ExplainCommand: "spraywatch explain --db /var/lib/spraywatch/spraywatch.db"})
	if len(blocks) == 0 {
		t.Fatal("no blocks")
	}
	s := render(t, text, blocks)
	for _, want := range []string{
		"HIGH", "spray", "api-nginx", "incident #7",
		"sk_liv…",                   // credential label
		"6: `203.0.113.7`",          // address count and top addresses
		"`203.0.113.11` and 1 more", // addresses beyond the sample
		"42: `alice`",               // identity count and sample
		"and 37 more",               // identities beyond the sample
		"57",                        // attempts
		"2026-11-28 09:00:00Z",      // first seen
		"2026-11-28 09:07:00Z",      // last seen
		"window 15m", "max_credentials 3", "min_identities 10",
		"`spraywatch explain --db /var/lib/spraywatch/spraywatch.db 7`",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("message lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, rawKey) || strings.Contains(s, rawKey[6:]) {
		t.Errorf("message holds the raw key:\n%s", s)
	}
	if strings.Contains(s, "<!channel>") || !strings.Contains(s, "&lt;!channel&gt;") {
		t.Errorf("identity from a log was not escaped, it would mention @channel:\n%s", s)
	}
}

func TestCompromiseIsCriticalAndNamesTheIdentity(t *testing.T) {
	text, blocks := slack.Message(compromise(9), slack.MessageOptions{})
	s := render(t, text, blocks)
	for _, want := range []string{"CRITICAL", "carol compromised", "incident #1", "`spraywatch explain 9`"} {
		if !strings.Contains(s, want) {
			t.Errorf("message lacks %q:\n%s", want, s)
		}
	}
}

// render is the message as Slack receives it: fallback text and blocks.
func render(t *testing.T, text string, blocks any) string {
	t.Helper()
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(blocks); err != nil {
		t.Fatal(err)
	}
	return text + "\n" + b.String()
}

func TestBotUpdatesTheFirstMessage(t *testing.T) {
	for _, how := range []string{slack.UpdateEdit, slack.UpdateThread} {
		t.Run(how, func(t *testing.T) {
			fake := slacktest.New(t)
			bot, err := slack.NewBot(slack.BotOptions{Token: "xoxb-fake-token", Channel: "#security", APIURL: fake.APIURL(), Updates: how})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			inc := spray(3)
			for v := 1; v <= 3; v++ {
				inc.Version, inc.Attempts = v, int64(50*v)
				if err := bot.Send(ctx, inc); err != nil {
					t.Fatalf("version %d: %v", v, err)
				}
			}
			got := fake.Sent()
			if len(got) != 3 {
				t.Fatalf("got %d requests, want 3", len(got))
			}
			if got[0].Method != "chat.postMessage" || got[0].ThreadTS != "" {
				t.Errorf("first: got %s thread %q, want a top-level chat.postMessage", got[0].Method, got[0].ThreadTS)
			}
			for _, m := range got[1:] {
				switch how {
				case slack.UpdateEdit:
					if m.Method != "chat.update" || m.TS != got[0].TS {
						t.Errorf("update: got %s of %q, want chat.update of %q", m.Method, m.TS, got[0].TS)
					}
				case slack.UpdateThread:
					if m.Method != "chat.postMessage" || m.ThreadTS != got[0].TS {
						t.Errorf("update: got %s in thread %q, want a reply in %q", m.Method, m.ThreadTS, got[0].TS)
					}
				}
			}
			if !strings.Contains(got[2].Blocks, "150") {
				t.Errorf("last update does not show 150 attempts: %s", got[2].Blocks)
			}
		})
	}
}

func TestErrorsSayWhetherToRetry(t *testing.T) {
	type check func(error) bool
	retryAfter := func(want time.Duration) check {
		return func(err error) bool {
			var ra *alert.RetryAfterError
			return errors.As(err, &ra) && ra.Wait == want
		}
	}
	transient := func(err error) bool {
		var ra *alert.RetryAfterError
		return err != nil && !errors.As(err, &ra) && !errors.Is(err, alert.ErrMisconfigured) && !errors.Is(err, alert.ErrRejected)
	}
	misconfigured := func(err error) bool { return errors.Is(err, alert.ErrMisconfigured) }
	rejected := func(err error) bool { return errors.Is(err, alert.ErrRejected) }
	// final: never retried, whatever the sink (the fake answers a webhook's
	// Slack error with 403, a misconfiguration; the bot's is this message's).
	final := func(err error) bool { return misconfigured(err) || rejected(err) }
	tests := []struct {
		name   string
		answer slacktest.Answer
		want   check
	}{
		{"429 with Retry-After", slacktest.RateLimited(7), retryAfter(7 * time.Second)},
		{"429 without Retry-After", slacktest.Answer{Status: http.StatusTooManyRequests}, transient},
		{"500", slacktest.ServerError, transient},
		{"503", slacktest.Answer{Status: http.StatusServiceUnavailable}, transient},
		{"slow", slacktest.Slow(2 * time.Second), transient},
		{"invalid token", slacktest.InvalidToken, misconfigured},
		{"channel not found", slacktest.Answer{SlackError: "channel_not_found"}, misconfigured},
		{"404", slacktest.Answer{Status: http.StatusNotFound}, misconfigured},
		{"400", slacktest.Answer{Status: http.StatusBadRequest, SlackError: "invalid_blocks"}, rejected},
		// Send falls back on these when it updates (TestBotFallsBack...); on a
		// new post there is nothing to fall back to, and a retry cannot help.
		{"message not found", slacktest.Answer{SlackError: "message_not_found"}, final},
		{"thread not found", slacktest.Answer{SlackError: "thread_not_found"}, final},
		{"cant update message", slacktest.Answer{SlackError: "cant_update_message"}, final},
		{"edit window closed", slacktest.Answer{SlackError: "edit_window_closed"}, final},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := slacktest.New(t)
			fake.Answer(tt.answer)
			hook, err := slack.NewWebhook(slack.WebhookOptions{URL: fake.WebhookURL(), Timeout: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			bot, err := slack.NewBot(slack.BotOptions{Token: "xoxb-fake-secret-token", Channel: "C1", APIURL: fake.APIURL(), Timeout: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			for name, s := range map[string]alert.Sink{"webhook": hook, "bot": bot} {
				err := s.Send(context.Background(), spray(1))
				if !tt.want(err) {
					t.Errorf("%s: got %v (%T), want it classified as %s", name, err, err, tt.name)
				}
				if err != nil {
					for _, secret := range []string{fake.WebhookURL(), slacktest.WebhookPath, "hooksecret", "xoxb-fake-secret-token"} {
						if strings.Contains(err.Error(), secret) {
							t.Errorf("%s: error %q holds a secret %q", name, err, secret)
						}
					}
				}
			}
		})
	}
}

// TestBotFallsBackWhenItsMessageCannotBeEdited: an update of a message
// someone deleted posts the incident again; one Slack no longer lets the bot
// edit is replied to in its thread. Either way the update is delivered and
// Send succeeds, so the outbox moves on.
func TestBotFallsBackWhenItsMessageCannotBeEdited(t *testing.T) {
	type req struct {
		method string
		reply  bool // a reply in the first message's thread
		ok     bool
	}
	var (
		update    = req{method: "chat.update"}
		repost    = req{method: "chat.postMessage", ok: true}
		reply     = req{method: "chat.postMessage", reply: true, ok: true}
		failReply = req{method: "chat.postMessage", reply: true}
	)
	tests := []struct {
		name    string
		updates string
		answers []string // Slack errors for the update's requests, in order
		want    []req    // the update's requests
	}{
		{"deleted", slack.UpdateEdit, []string{"message_not_found"}, []req{update, repost}},
		{"cant_update_message", slack.UpdateEdit, []string{"cant_update_message"}, []req{update, reply}},
		{"edit_window_closed", slack.UpdateEdit, []string{"edit_window_closed"}, []req{update, reply}},
		{"too old to edit and deleted", slack.UpdateEdit, []string{"edit_window_closed", "thread_not_found"}, []req{update, failReply, repost}},
		{"thread deleted", slack.UpdateThread, []string{"thread_not_found"}, []req{failReply, repost}},
		{"thread reply of a deleted message", slack.UpdateThread, []string{"message_not_found"}, []req{failReply, repost}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := slacktest.New(t)
			bot, err := slack.NewBot(slack.BotOptions{Token: "xoxb-fake-secret-token", Channel: "C1", APIURL: fake.APIURL(), Updates: tt.updates})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			inc := spray(4)
			if err := bot.Send(ctx, inc); err != nil {
				t.Fatal(err)
			}
			first := fake.Received()[0].TS
			for _, e := range tt.answers {
				fake.Queue(slacktest.Answer{SlackError: e})
			}
			inc.Version, inc.Attempts = 2, 99
			if err := bot.Send(ctx, inc); err != nil {
				t.Fatalf("update: got %v, want it delivered by falling back", err)
			}
			got := fake.Received()[1:]
			var gotReqs []req
			for _, m := range got {
				gotReqs = append(gotReqs, req{method: m.Method, reply: m.ThreadTS == first && first != "", ok: m.Accepted})
			}
			if fmt.Sprint(gotReqs) != fmt.Sprint(tt.want) {
				t.Fatalf("update requests: got %+v, want %+v", gotReqs, tt.want)
			}
			if last := got[len(got)-1]; !strings.Contains(last.Blocks, "99") {
				t.Errorf("the delivered update does not show 99 attempts: %s", last.Blocks)
			}
			if tt.want[len(tt.want)-1] == repost {
				// The new message is the incident's from now on.
				reposted := got[len(got)-1].TS
				inc.Version = 3
				if err := bot.Send(ctx, inc); err != nil {
					t.Fatal(err)
				}
				all := fake.Received()
				next := all[len(all)-1]
				if tt.updates == slack.UpdateEdit && (next.Method != "chat.update" || next.TS != reposted) {
					t.Errorf("next update: got %s of %q, want chat.update of the new message %q", next.Method, next.TS, reposted)
				}
				if tt.updates == slack.UpdateThread && next.ThreadTS != reposted {
					t.Errorf("next update: got a reply in %q, want one in the new message %q", next.ThreadTS, reposted)
				}
			}
		})
	}
}

func TestCompromiseWithoutAttackingKeyIsNotCalledCritical(t *testing.T) {
	inc := compromise(10)
	inc.Severity, inc.CompromisedCritical = detect.SeverityHigh, 0
	inc.Summary = "1 attacked identity then succeeded with keys and addresses the attack did not use (likely their owners; verify): carol"
	text, _ := slack.Message(inc, slack.MessageOptions{})
	if strings.Contains(text, "CRITICAL") || strings.Contains(text, "carol compromised") {
		t.Errorf("a success with the owner's own key is announced as a critical compromise: %s", text)
	}
}

func TestCompromiseWithoutIdentityInLogSaysSo(t *testing.T) {
	inc := compromise(11)
	inc.Compromised, inc.IdentitySample = []string{detect.IdentityNotInLog}, []string{detect.IdentityNotInLog}
	inc.Summary = "a request whose identity is not in this log succeeded from an attacking address after incident 1"
	text, blocks := slack.Message(inc, slack.MessageOptions{})
	s := render(t, text, blocks)
	for _, want := range []string{"CRITICAL", "identity is not in this log got in", "`identity not in this log`"} {
		if !strings.Contains(s, want) {
			t.Errorf("message lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "``") || strings.Contains(s, "Identity  ") {
		t.Errorf("message shows an empty identity:\n%s", s)
	}
}
