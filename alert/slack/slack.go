// Package slack posts incidents to Slack with Block Kit, through an
// incoming webhook or a bot token (chat.postMessage, then chat.update of the
// same message as the incident grows).
package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	slackapi "github.com/slack-go/slack"

	"github.com/spraywatch/spraywatch/alert"
	"github.com/spraywatch/spraywatch/detect"
)

// DefaultTimeout bounds one request to Slack when no HTTP client is given.
const DefaultTimeout = 10 * time.Second

var (
	_ alert.Sink       = (*Webhook)(nil)
	_ alert.Summarizer = (*Webhook)(nil)
	_ alert.Sink       = (*Bot)(nil)
	_ alert.Summarizer = (*Bot)(nil)
	_ alert.Checker    = (*Bot)(nil)
)

// Message metadata event types: every message a bot posts carries one,
// with the incident's ID and version (or the summary's first incident), so
// that Delivered can find it in the channel. No label, address or key.
const (
	EventIncident = "spraywatch_incident"
	EventSummary  = "spraywatch_summary"
)

// historyPages bounds the pages of 200 messages Delivered reads back.
const historyPages = 5

// WebhookOptions configure NewWebhook.
type WebhookOptions struct {
	// URL is the incoming webhook. It is a secret: it never appears in an
	// error or a log line.
	URL string
	// HTTPClient defaults to one with Timeout.
	HTTPClient *http.Client
	// Timeout bounds one request when HTTPClient is nil. Default DefaultTimeout.
	Timeout time.Duration
	Message MessageOptions
}

// Webhook posts to a Slack incoming webhook. A webhook cannot edit what it
// posted, so an update is a new message; the outbox's cooldown keeps those
// rare.
type Webhook struct {
	o WebhookOptions
}

// NewWebhook returns a webhook sink.
func NewWebhook(o WebhookOptions) (*Webhook, error) {
	if o.URL == "" {
		return nil, fmt.Errorf("slack webhook: %w: no URL", alert.ErrMisconfigured)
	}
	if o.HTTPClient == nil {
		if o.Timeout <= 0 {
			o.Timeout = DefaultTimeout
		}
		o.HTTPClient = &http.Client{Timeout: o.Timeout}
	}
	return &Webhook{o: o}, nil
}

// Send posts inc.
func (w *Webhook) Send(ctx context.Context, inc detect.Incident) error {
	text, blocks := Message(inc, w.o.Message)
	return w.post(ctx, text, blocks)
}

// SendSummary posts a storm summary.
func (w *Webhook) SendSummary(ctx context.Context, s alert.Summary) error {
	text, blocks := SummaryMessage(s)
	return w.post(ctx, text, blocks)
}

func (w *Webhook) post(ctx context.Context, text string, blocks []slackapi.Block) error {
	msg := &slackapi.WebhookMessage{Text: text, Blocks: &slackapi.Blocks{BlockSet: blocks}}
	err := slackapi.PostWebhookCustomHTTPContext(ctx, w.o.URL, w.o.HTTPClient, msg)
	if err != nil {
		return alert.Scrub(classify("post to slack webhook", err), "slack webhook", w.o.URL)
	}
	return nil
}

// Refs remembers the message posted per incident. The outbox's
// alert.MessageRefs keeps them in the database, so an update after a
// restart still edits the first message.
type Refs interface {
	Ref(ctx context.Context, incident int64) (alert.MessageRef, bool, error)
	SaveRef(ctx context.Context, incident int64, r alert.MessageRef) error
}

// Ways a bot sends an update of an incident it already posted.
const (
	UpdateEdit   = "edit"   // chat.update of the first message
	UpdateThread = "thread" // a reply in the first message's thread
)

// BotOptions configure NewBot.
type BotOptions struct {
	// Token is the bot token (xoxb-...). It is a secret.
	Token string
	// Channel is the channel ID or name to post in.
	Channel string
	// Updates is UpdateEdit (default) or UpdateThread.
	Updates string
	// Refs keeps each incident's message. Default: in memory.
	Refs Refs
	// APIURL is Slack's API base, with a trailing slash. Tests point it at a
	// fake. Default Slack's.
	APIURL string
	// HTTPClient defaults to one with Timeout.
	HTTPClient *http.Client
	// Timeout bounds one request when HTTPClient is nil. Default DefaultTimeout.
	Timeout time.Duration
	Message MessageOptions
	// Logger reports what the sink cannot return as an error. Default: none.
	Logger *slog.Logger
}

// Bot posts with a bot token: one top-level message per incident, edited
// (or replied to in its thread) as the incident grows. Each message carries
// metadata naming the incident and version, which Delivered looks for
// (conversations.history and conversations.replies: the bot needs the
// channels:history scope, groups:history for a private channel).
type Bot struct {
	o   BotOptions
	api *slackapi.Client
}

// NewBot returns a bot sink.
func NewBot(o BotOptions) (*Bot, error) {
	if o.Token == "" {
		return nil, fmt.Errorf("slack bot: %w: no token", alert.ErrMisconfigured)
	}
	if o.Channel == "" {
		return nil, fmt.Errorf("slack bot: %w: no channel", alert.ErrMisconfigured)
	}
	switch o.Updates {
	case "":
		o.Updates = UpdateEdit
	case UpdateEdit, UpdateThread:
	default:
		return nil, fmt.Errorf("slack bot: %w: updates %q: must be %s or %s", alert.ErrMisconfigured, o.Updates, UpdateEdit, UpdateThread)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Refs == nil {
		o.Refs = &memRefs{m: map[int64]alert.MessageRef{}}
	}
	if o.HTTPClient == nil {
		if o.Timeout <= 0 {
			o.Timeout = DefaultTimeout
		}
		o.HTTPClient = &http.Client{Timeout: o.Timeout}
	}
	opts := []slackapi.Option{slackapi.OptionHTTPClient(o.HTTPClient)}
	if o.APIURL != "" {
		opts = append(opts, slackapi.OptionAPIURL(o.APIURL))
	}
	return &Bot{o: o, api: slackapi.New(o.Token, opts...)}, nil
}

// Send posts inc, or updates the message posted for an earlier version.
// Incident 0 (a test message) is always posted and never remembered.
func (b *Bot) Send(ctx context.Context, inc detect.Incident) error {
	text, blocks := Message(inc, b.o.Message)
	msg := []slackapi.MsgOption{slackapi.MsgOptionText(text, false), slackapi.MsgOptionBlocks(blocks...),
		slackapi.MsgOptionMetadata(incidentMetadata(inc))}
	if inc.ID != 0 {
		ref, ok, err := b.o.Refs.Ref(ctx, inc.ID)
		if err != nil {
			return fmt.Errorf("slack bot: look up message of incident %d: %w", inc.ID, err)
		}
		if ok {
			err := b.update(ctx, ref, msg, b.o.Updates)
			if errors.Is(err, errNoEdit) && b.o.Updates == UpdateEdit {
				b.o.Logger.Info("slack message of incident can no longer be edited; replying in its thread", "incident", inc.ID)
				err = b.update(ctx, ref, msg, UpdateThread)
			}
			if !errors.Is(err, errGone) {
				return err
			}
			b.o.Logger.Warn("slack message of incident was deleted; posting it again", "incident", inc.ID)
		}
	}
	channel, ts, err := b.api.PostMessageContext(ctx, b.o.Channel, msg...)
	if err != nil {
		return b.scrub(classify("post to slack channel "+b.o.Channel, err))
	}
	if inc.ID == 0 {
		return nil
	}
	if err := b.o.Refs.SaveRef(ctx, inc.ID, alert.MessageRef{Channel: channel, ID: ts}); err != nil {
		// Delivered: report success, or the outbox would post it again.
		b.o.Logger.Warn("slack message posted but not remembered; its updates will be new messages", "incident", inc.ID, "err", err)
	}
	return nil
}

func (b *Bot) update(ctx context.Context, ref alert.MessageRef, msg []slackapi.MsgOption, how string) error {
	var err error
	if how == UpdateThread {
		_, _, err = b.api.PostMessageContext(ctx, ref.Channel, append(msg, slackapi.MsgOptionTS(ref.ID))...)
	} else {
		_, _, _, err = b.api.UpdateMessageContext(ctx, ref.Channel, ref.ID, msg...)
	}
	if err != nil {
		return b.scrub(classify("update slack message", err))
	}
	return nil
}

// SendSummary posts a storm summary.
func (b *Bot) SendSummary(ctx context.Context, s alert.Summary) error {
	text, blocks := SummaryMessage(s)
	_, _, err := b.api.PostMessageContext(ctx, b.o.Channel, slackapi.MsgOptionText(text, false), slackapi.MsgOptionBlocks(blocks...),
		slackapi.MsgOptionMetadata(summaryMetadata(s)))
	if err != nil {
		return b.scrub(classify("post to slack channel "+b.o.Channel, err))
	}
	return nil
}

func incidentMetadata(inc detect.Incident) slackapi.SlackMetadata {
	return slackapi.SlackMetadata{EventType: EventIncident, EventPayload: map[string]any{
		"incident_id": inc.ID, "version": inc.Version}}
}

func summaryMetadata(s alert.Summary) slackapi.SlackMetadata {
	first := int64(0)
	if len(s.IDs) > 0 {
		first = s.IDs[0]
	}
	return slackapi.SlackMetadata{EventType: EventSummary, EventPayload: map[string]any{
		"first_incident": first, "incidents": len(s.IDs)}}
}

// payloadInt reads a number from metadata (JSON numbers decode as float64).
func payloadInt(p map[string]any, k string) int64 {
	switch v := p[k].(type) {
	case float64:
		return int64(v)
	case int64:
		return v
	case int:
		return int64(v)
	case json.Number:
		n, _ := v.Int64()
		return n
	}
	return -1
}

// Delivered reports whether this version of inc (or a newer one) is in the
// channel, posted since since: the outbox asks before sending again an
// alert whose send was interrupted. A top-level message found for the
// incident becomes its remembered message, so that the next version edits
// it. With UpdateThread, the replies of the remembered message are read too.
func (b *Bot) Delivered(ctx context.Context, inc detect.Incident, since time.Time) (bool, error) {
	if inc.ID == 0 {
		return false, nil
	}
	ref, known, err := b.o.Refs.Ref(ctx, inc.ID)
	if err != nil {
		return false, fmt.Errorf("slack bot: look up message of incident %d: %w", inc.ID, err)
	}
	is := func(m slackapi.Message) bool {
		return m.Metadata.EventType == EventIncident && payloadInt(m.Metadata.EventPayload, "incident_id") == inc.ID
	}
	newEnough := func(m slackapi.Message) bool {
		return is(m) && payloadInt(m.Metadata.EventPayload, "version") >= int64(inc.Version)
	}
	channel := b.o.Channel
	if known {
		channel = ref.Channel
		// An edit changes the metadata of the remembered message; a reply
		// in its thread carries its own.
		top, found, err := b.find(ctx, channel, "", ref.ID, ref.ID, func(m slackapi.Message) bool { return m.Timestamp == ref.ID })
		if err != nil {
			return false, err
		}
		if found && newEnough(top) {
			return true, nil
		}
		if b.o.Updates == UpdateThread {
			if _, found, err := b.find(ctx, channel, ref.ID, slackTS(since), "", newEnough); err != nil || found {
				return found, err
			}
		}
		if found {
			return false, nil
		}
		// The remembered message is gone: Send posts again; look below for
		// a post that was not remembered.
	}
	m, found, err := b.find(ctx, channel, "", slackTS(since), "", is)
	if err != nil || !found {
		return false, err
	}
	if !known || ref.ID != m.Timestamp {
		if err := b.o.Refs.SaveRef(ctx, inc.ID, alert.MessageRef{Channel: channel, ID: m.Timestamp}); err != nil {
			return false, fmt.Errorf("slack bot: remember message of incident %d: %w", inc.ID, err)
		}
	}
	return newEnough(m), nil
}

// SummaryDelivered reports whether the summary is in the channel, posted
// since since.
func (b *Bot) SummaryDelivered(ctx context.Context, s alert.Summary, since time.Time) (bool, error) {
	want := summaryMetadata(s).EventPayload
	_, found, err := b.find(ctx, b.o.Channel, "", slackTS(since), "", func(m slackapi.Message) bool {
		p := m.Metadata.EventPayload
		return m.Metadata.EventType == EventSummary && payloadInt(p, "first_incident") == want["first_incident"].(int64) &&
			payloadInt(p, "incidents") == int64(want["incidents"].(int))
	})
	return found, err
}

// find reads the channel's history (or, with thread set, that thread's
// replies) newest first, between oldest and latest (ts, inclusive; empty:
// no bound), and returns the newest message match accepts. It reads at
// most historyPages pages.
func (b *Bot) find(ctx context.Context, channel, thread, oldest, latest string, match func(slackapi.Message) bool) (slackapi.Message, bool, error) {
	cursor := ""
	for range historyPages {
		var msgs []slackapi.Message
		var more bool
		var next string
		var err error
		if thread != "" {
			msgs, more, next, err = b.api.GetConversationRepliesContext(ctx, &slackapi.GetConversationRepliesParameters{
				ChannelID: channel, Timestamp: thread, Cursor: cursor, Oldest: oldest, Latest: latest, Inclusive: true, Limit: 200, IncludeAllMetadata: true})
		} else {
			var h *slackapi.GetConversationHistoryResponse
			h, err = b.api.GetConversationHistoryContext(ctx, &slackapi.GetConversationHistoryParameters{
				ChannelID: channel, Cursor: cursor, Oldest: oldest, Latest: latest, Inclusive: true, Limit: 200, IncludeAllMetadata: true})
			if h != nil {
				msgs, more, next = h.Messages, h.HasMore, h.ResponseMetaData.NextCursor
			}
		}
		if err != nil {
			return slackapi.Message{}, false, b.scrub(classify("read slack channel "+channel, err))
		}
		var best slackapi.Message
		found := false
		for _, m := range msgs {
			if match(m) && (!found || m.Timestamp > best.Timestamp) {
				best, found = m, true
			}
		}
		if found {
			return best, true, nil
		}
		if !more || next == "" {
			break
		}
		cursor = next
	}
	return slackapi.Message{}, false, nil
}

// slackTS writes t as a Slack ts, a second early for clock differences.
func slackTS(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return fmt.Sprintf("%d.000000", t.Add(-time.Second).Unix())
}

// scrub removes the token from err. alert.Scrub keeps only the outbox's
// sentinels; the reasons Send falls back on (errGone, errNoEdit) are kept
// too, or Send could never tell them.
func (b *Bot) scrub(err error) error {
	scrubbed := alert.Scrub(err, "slack API", b.o.Token)
	for _, why := range []error{errGone, errNoEdit} {
		if errors.Is(err, why) {
			return &fallbackError{err: scrubbed, why: why}
		}
	}
	return scrubbed
}

// fallbackError is a scrubbed error that also says why an update failed.
type fallbackError struct {
	err error // scrubbed, with the outbox's sentinel
	why error // errGone or errNoEdit
}

func (e *fallbackError) Error() string { return e.err.Error() }

func (e *fallbackError) Unwrap() []error { return []error{e.err, e.why} }

// Why an update failed, where it can fall back.
var (
	errGone   = errors.New("message no longer exists")
	errNoEdit = errors.New("message can no longer be edited")
)

// Slack error codes by what they mean for delivery.
var (
	misconfigured = map[string]bool{
		"invalid_auth": true, "invalid_token": true, "not_authed": true, "account_inactive": true,
		"token_revoked": true, "token_expired": true, "no_permission": true, "missing_scope": true,
		"not_allowed_token_type": true, "channel_not_found": true, "not_in_channel": true,
		"is_archived": true, "restricted_action": true, "team_access_not_granted": true,
		"ekm_access_denied": true, "access_denied": true, "org_login_required": true,
		"no_service": true, "no_service_id": true, "no_team": true, "team_disabled": true,
		"channel_is_archived": true, "action_prohibited": true,
	}
	noEdit = map[string]bool{"cant_update_message": true, "edit_window_closed": true}
)

// classify wraps err with the alert sentinel that says whether retrying can
// help: a 429 with Retry-After waits as told; 5xx, a 429 without the header
// and timeouts are transient; a bad token or channel is a misconfiguration;
// other 4xx reject the one message.
func classify(op string, err error) error {
	var rl *slackapi.RateLimitedError
	if errors.As(err, &rl) {
		return &alert.RetryAfterError{Wait: rl.RetryAfter, Err: fmt.Errorf("%s: %w", op, err)}
	}
	var sc slackapi.StatusCodeError
	if errors.As(err, &sc) {
		switch {
		case sc.Code == http.StatusTooManyRequests, sc.Code == http.StatusRequestTimeout, sc.Code >= 500:
			return fmt.Errorf("%s: %w", op, err)
		case sc.Code == http.StatusUnauthorized, sc.Code == http.StatusForbidden, sc.Code == http.StatusNotFound, sc.Code == http.StatusGone:
			return fmt.Errorf("%s: %w: %w", op, alert.ErrMisconfigured, err)
		case sc.Code >= 400:
			return fmt.Errorf("%s: %w: %w", op, alert.ErrRejected, err)
		}
		return fmt.Errorf("%s: %w", op, err)
	}
	var se slackapi.SlackErrorResponse
	if errors.As(err, &se) {
		switch {
		case misconfigured[se.Err]:
			return fmt.Errorf("%s: %w: slack says %s", op, alert.ErrMisconfigured, se.Err)
		// Send falls back on these (post again, reply in the thread); when
		// it cannot, retrying the same request cannot help either.
		case se.Err == "message_not_found", se.Err == "thread_not_found":
			return fmt.Errorf("%s: %w: %w: slack says %s", op, alert.ErrRejected, errGone, se.Err)
		case noEdit[se.Err]:
			return fmt.Errorf("%s: %w: %w: slack says %s", op, alert.ErrRejected, errNoEdit, se.Err)
		case se.Err == "ratelimited", se.Err == "internal_error", se.Err == "fatal_error",
			se.Err == "service_unavailable", se.Err == "request_timeout":
			return fmt.Errorf("%s: slack says %s", op, se.Err)
		}
		return fmt.Errorf("%s: %w: slack says %s", op, alert.ErrRejected, se.Err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// memRefs keeps message refs for the life of the process.
type memRefs struct {
	mu sync.Mutex
	m  map[int64]alert.MessageRef
}

func (m *memRefs) Ref(_ context.Context, id int64) (alert.MessageRef, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.m[id]
	return r, ok, nil
}

func (m *memRefs) SaveRef(_ context.Context, id int64, r alert.MessageRef) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m[id] = r
	return nil
}
