// Package slacktest is a fake Slack for tests: an httptest.Server that takes
// incoming-webhook posts and the chat.postMessage and chat.update API
// methods, records what it received, and answers as told: 200, 429 with or
// without Retry-After, 500, slowly, or with a Slack error such as
// invalid_auth.
package slacktest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
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
	// Method is "webhook", "chat.postMessage" or "chat.update".
	Method   string
	Channel  string
	TS       string // the message posted, or the one updated
	ThreadTS string
	Text     string
	// Blocks is the Block Kit JSON.
	Blocks string
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
	nextTS   int
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

// Sent returns the requests that were accepted: what the channel shows.
func (s *Server) Sent() []Message {
	var out []Message
	for _, m := range s.Received() {
		if m.Accepted {
			out = append(out, m)
		}
	}
	return out
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
		m.Text, m.Blocks = form.Get("text"), form.Get("blocks")
	default:
		http.NotFound(w, r)
		return
	}

	s.mu.Lock()
	a := s.def
	if ma, ok := s.byMethod[m.Method]; ok {
		a = ma
	}
	if len(s.queue) > 0 {
		a, s.queue = s.queue[0], s.queue[1:]
	}
	ok := a.Status == 0 && a.SlackError == ""
	if ok && m.Method == "chat.postMessage" {
		s.nextTS++
		m.TS = fmt.Sprintf("1700000000.%06d", s.nextTS)
	}
	idx := len(s.received)
	s.received = append(s.received, m)
	s.mu.Unlock()

	if a.Delay > 0 {
		select {
		case <-time.After(a.Delay):
		case <-r.Context().Done():
			return
		}
	}
	if ok {
		s.mu.Lock()
		s.received[idx].Accepted = true
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
