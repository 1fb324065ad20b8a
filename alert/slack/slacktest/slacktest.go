// Package slacktest is a fake Slack for tests: an httptest.Server that takes
// incoming-webhook posts and the chat.postMessage and chat.update API
// methods, records what it received, and answers as told: 200, 429 with or
// without Retry-After, 500, slowly, or with a Slack error such as
// invalid_auth. It keeps what the API methods posted as one channel (the
// same whatever channel is named): chat.update edits a message there (and
// answers message_not_found for one it does not hold), and
// conversations.history and conversations.replies read it back, with the
// messages' metadata when include_all_metadata is set.
package slacktest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// WebhookPath is the secret-looking path of the fake incoming webhook.
const WebhookPath = "/services/T0FAKE/B0FAKE/hooksecret0123456789"

// Answer is how the fake answers one request.
type Answer struct {
	// Status is the HTTP status. 0 means 200.
	Status int
	// RetryAfter is sent as the Retry-After header when not empty.
	RetryAfter string
	// SlackError answers 200 {"ok":false,"error":SlackError} to API
	// methods, and the status with the error as body to webhooks.
	SlackError string
	// Delay holds the answer back (or until the client gives up).
	Delay time.Duration
	// PostFirst, with Delay, posts (or edits) at once and only then holds
	// the answer back: the sender may die knowing nothing of it, as when
	// Slack took a message and the process was killed before the answer.
	PostFirst bool
}

// Answers the tests use.
var (
	OK           = Answer{}
	ServerError  = Answer{Status: http.StatusInternalServerError}
	InvalidToken = Answer{SlackError: "invalid_auth"}
)

// RateLimited answers 429 with Retry-After: seconds.
func RateLimited(seconds int) Answer {
	return Answer{Status: http.StatusTooManyRequests, RetryAfter: fmt.Sprint(seconds)}
}

// Slow answers 200 after d.
func Slow(d time.Duration) Answer { return Answer{Delay: d} }

// Message is one request the fake received.
type Message struct {
	// Method is "webhook", "chat.postMessage", "chat.update",
	// "conversations.history" or "conversations.replies".
	Method   string
	Channel  string
	TS       string // the message posted, or the one updated
	ThreadTS string
	Text     string
	// Blocks is the Block Kit JSON.
	Blocks string
	// Metadata is the message metadata JSON, if any.
	Metadata string
	// Body is the whole request body.
	Body   string
	Header http.Header
	// Accepted is true when the fake answered 200 ok.
	Accepted bool
}

// Server is the fake.
type Server struct {
	*httptest.Server

	mu       sync.Mutex
	received []Message
	queue    []Answer
	def      Answer
	byMethod map[string]Answer
	lastTS   int64 // microseconds
	channel  []Posted
}

// Posted is a message as the channel shows it now: posted by the API, and
// edited by chat.update since.
type Posted struct {
	TS, ThreadTS string
	Text         string
	// Metadata is its metadata JSON, if any.
	Metadata string
	// Edits counts the chat.update calls that changed it.
	Edits int
}

// New starts a fake; it closes when the test ends.
func New(t interface{ Cleanup(func()) }) *Server {
	s := &Server{}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// WebhookURL is the fake's incoming webhook.
func (s *Server) WebhookURL() string { return s.URL + WebhookPath }

// APIURL is the base for slack.OptionAPIURL.
func (s *Server) APIURL() string { return s.URL + "/api/" }

// Answer sets how every request is answered from now on, once queued
// answers are used up.
func (s *Server) Answer(a Answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.def = a
}

// AnswerMethod sets how every request to one method ("webhook",
// "chat.postMessage", "chat.update") is answered from now on, once queued
// answers are used up: a deleted message answers chat.update with
// message_not_found while new posts still go through.
func (s *Server) AnswerMethod(method string, a Answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byMethod == nil {
		s.byMethod = map[string]Answer{}
	}
	s.byMethod[method] = a
}

// Queue makes the next requests get these answers, in order.
func (s *Server) Queue(as ...Answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = append(s.queue, as...)
}

// Received returns every request, answered well or not.
func (s *Server) Received() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.received...)
}

// Sent returns the posts and edits that were accepted, in order (reads of
// the channel are not among them).
func (s *Server) Sent() []Message {
	var out []Message
	for _, m := range s.Received() {
		if m.Accepted && !isRead(m.Method) {
			out = append(out, m)
		}
	}
	return out
}

// Channel returns the messages the API methods posted, oldest first, as
// they are now.
func (s *Server) Channel() []Posted {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Posted(nil), s.channel...)
}

func isRead(method string) bool {
	return method == "conversations.history" || method == "conversations.replies"
}

// ts returns a new message timestamp: the wall clock in microseconds, made
// unique and increasing, as Slack's are.
func (s *Server) ts() string {
	us := max(time.Now().UnixMicro(), s.lastTS+1)
	s.lastTS = us
	return fmt.Sprintf("%d.%06d", us/1e6, us%1e6)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	m := Message{Body: string(body), Header: r.Header.Clone()}
	switch {
	case r.URL.Path == WebhookPath:
		m.Method = "webhook"
		var wm struct {
			Text     string          `json:"text"`
			ThreadTS string          `json:"thread_ts"`
			Blocks   json.RawMessage `json:"blocks"`
		}
		if err := json.Unmarshal(body, &wm); err != nil {
			http.Error(w, "invalid_payload", http.StatusBadRequest)
			return
		}
		m.Text, m.ThreadTS, m.Blocks = wm.Text, wm.ThreadTS, string(wm.Blocks)
	case strings.HasPrefix(r.URL.Path, "/api/"):
		m.Method = strings.TrimPrefix(r.URL.Path, "/api/")
		form, _ := url.ParseQuery(string(body))
		m.Channel, m.TS, m.ThreadTS = form.Get("channel"), form.Get("ts"), form.Get("thread_ts")
		m.Text, m.Blocks, m.Metadata = form.Get("text"), form.Get("blocks"), form.Get("metadata")
		if isRead(m.Method) {
			s.read(w, m, form)
			return
		}
	default:
		http.NotFound(w, r)
		return
	}

	s.mu.Lock()
	a := s.next(m.Method)
	ok := a.Status == 0 && a.SlackError == ""
	if ok && m.Method == "chat.postMessage" {
		m.TS = s.ts()
	}
	if ok && m.Method == "chat.update" && s.find(m.TS) < 0 {
		a.SlackError, ok = "message_not_found", false
	}
	idx := len(s.received)
	early := ok && a.PostFirst
	if early {
		m.Accepted = true
		s.post(m)
	}
	s.received = append(s.received, m)
	s.mu.Unlock()

	if a.Delay > 0 {
		select {
		case <-time.After(a.Delay):
		case <-r.Context().Done():
			return
		}
	}
	if ok && !early {
		s.mu.Lock()
		s.received[idx].Accepted = true
		s.post(m)
		s.mu.Unlock()
	}
	if a.RetryAfter != "" {
		w.Header().Set("Retry-After", a.RetryAfter)
	}
	switch {
	case a.Status != 0 && a.Status != http.StatusOK:
		http.Error(w, a.SlackError, a.Status)
	case m.Method == "webhook" && a.SlackError != "":
		http.Error(w, a.SlackError, http.StatusForbidden)
	case m.Method == "webhook":
		io.WriteString(w, "ok")
	case a.SlackError != "":
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": a.SlackError})
	default:
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": "C0FAKE", "ts": m.TS})
	}
}

// post shows an accepted API post or edit in the channel; s.mu is held.
func (s *Server) post(m Message) {
	switch m.Method {
	case "chat.postMessage":
		s.channel = append(s.channel, Posted{TS: m.TS, ThreadTS: m.ThreadTS, Text: m.Text, Metadata: m.Metadata})
	case "chat.update":
		if i := s.find(m.TS); i >= 0 {
			p := &s.channel[i]
			p.Text, p.Edits = m.Text, p.Edits+1
			if m.Metadata != "" {
				p.Metadata = m.Metadata
			}
		}
	}
}

// find returns the index of the message ts in the channel, or -1; s.mu is
// held.
func (s *Server) find(ts string) int {
	for i, p := range s.channel {
		if p.TS == ts {
			return i
		}
	}
	return -1
}

// next is the answer to a request of method: the next queued one, else
// the method's own, else the default. s.mu is held.
func (s *Server) next(method string) Answer {
	a := s.def
	if ma, ok := s.byMethod[method]; ok {
		a = ma
	}
	if len(s.queue) > 0 {
		a, s.queue = s.queue[0], s.queue[1:]
	}
	return a
}

// read answers conversations.history (top-level messages, newest first) and
// conversations.replies (a thread's parent and replies, oldest first),
// between oldest and latest, limit at a time, the cursor being an offset.
func (s *Server) read(w http.ResponseWriter, m Message, form url.Values) {
	s.mu.Lock()
	a := s.next(m.Method)
	m.Accepted = a.Status == 0 && a.SlackError == ""
	s.received = append(s.received, m)
	var list []Posted
	inclusive := form.Get("inclusive") == "1" || form.Get("inclusive") == "true"
	in := func(ts string) bool {
		lo, hi := form.Get("oldest"), form.Get("latest")
		if lo != "" && (tsLess(ts, lo) || !inclusive && ts == lo) {
			return false
		}
		if hi != "" && (tsLess(hi, ts) || !inclusive && ts == hi) {
			return false
		}
		return true
	}
	if m.Method == "conversations.history" {
		for i := len(s.channel) - 1; i >= 0; i-- {
			if p := s.channel[i]; (p.ThreadTS == "" || p.ThreadTS == p.TS) && in(p.TS) {
				list = append(list, p)
			}
		}
	} else {
		parent := form.Get("ts")
		if s.find(parent) < 0 {
			a.SlackError = "thread_not_found"
		}
		for _, p := range s.channel {
			if (p.TS == parent || p.ThreadTS == parent) && in(p.TS) {
				list = append(list, p)
			}
		}
	}
	s.mu.Unlock()

	if a.Status != 0 && a.Status != http.StatusOK {
		if a.RetryAfter != "" {
			w.Header().Set("Retry-After", a.RetryAfter)
		}
		http.Error(w, a.SlackError, a.Status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if a.SlackError != "" {
		json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": a.SlackError})
		return
	}
	limit, _ := strconv.Atoi(form.Get("limit"))
	if limit <= 0 {
		limit = 100
	}
	off, _ := strconv.Atoi(form.Get("cursor"))
	off = min(max(off, 0), len(list))
	page, next := list[off:], ""
	if len(page) > limit {
		page, next = page[:limit], strconv.Itoa(off+limit)
	}
	withMeta := form.Get("include_all_metadata") == "1" || form.Get("include_all_metadata") == "true"
	msgs := make([]map[string]any, 0, len(page))
	for _, p := range page {
		out := map[string]any{"type": "message", "ts": p.TS, "text": p.Text}
		if p.ThreadTS != "" {
			out["thread_ts"] = p.ThreadTS
		}
		if withMeta && p.Metadata != "" {
			out["metadata"] = json.RawMessage(p.Metadata)
		}
		msgs = append(msgs, out)
	}
	json.NewEncoder(w).Encode(map[string]any{"ok": true, "messages": msgs, "has_more": next != "",
		"response_metadata": map[string]any{"next_cursor": next}})
}

// tsLess compares two Slack timestamps ("seconds.micros").
func tsLess(a, b string) bool {
	as, af, _ := strings.Cut(a, ".")
	bs, bf, _ := strings.Cut(b, ".")
	if len(as) != len(bs) {
		return len(as) < len(bs)
	}
	if as != bs {
		return as < bs
	}
	return af < bf
}
