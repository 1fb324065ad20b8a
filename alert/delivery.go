package alert

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/spraywatch/spraywatch/detect"
)

// Errors sinks return so that the outbox knows what to do next. Any other
// error is taken as transient (a 5xx, a timeout, a refused connection) and
// retried with capped exponential backoff.
var (
	// ErrMisconfigured means the destination itself is wrong: a revoked
	// token, an unknown channel, a webhook that no longer exists. Retrying
	// cannot help, so the outbox stops sending to it until restart and keeps
	// its messages pending for when the configuration is fixed.
	ErrMisconfigured = errors.New("destination misconfigured")
	// ErrRejected means the destination refused this one message (a bad
	// payload). The message is dropped; the next one is sent.
	ErrRejected = errors.New("message rejected")
)

// RetryAfterError is a rate-limit answer: wait Wait before sending to the
// destination again.
type RetryAfterError struct {
	Wait time.Duration
	Err  error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("rate limited, retry after %s: %v", e.Wait, e.Err)
}

func (e *RetryAfterError) Unwrap() error { return e.Err }

// Summary stands for incidents folded into one message during a storm.
type Summary struct {
	Kind   string  `json:"kind"`
	Source string  `json:"source"`
	IDs    []int64 `json:"ids"`
	// Command lists the incidents, e.g. spraywatch alerts --db F --kind spray.
	Command string `json:"command"`
}

// Summarizer is a sink for people, which would rather get one summary than a
// flood. The outbox groups storms only for sinks that implement it.
type Summarizer interface {
	SendSummary(ctx context.Context, s Summary) error
}

// MessageRef locates a message a sink posted, so that a later version of the
// same incident edits it instead of posting again.
type MessageRef struct {
	Channel string
	ID      string
}

// TestIncident is what `spraywatch alerts test` sends: incident 0, which
// sinks must not remember.
func TestIncident(now time.Time) detect.Incident {
	now = now.UTC().Truncate(time.Second)
	return detect.Incident{
		Kind:             "test",
		Severity:         detect.SeverityLow,
		Source:           "spraywatch",
		State:            detect.StateOpen,
		FirstSeen:        now,
		LastSeen:         now,
		Updated:          now,
		Summary:          "test message from spraywatch alerts test: this destination works",
		IPs:              []string{"192.0.2.1"},
		Credentials:      []string{"test…0000000000000000"},
		CredentialsKnown: true,
		Identities:       1,
		IdentitySample:   []string{"test-identity"},
		Attempts:         1,
		Rule:             detect.Rule{Name: "test"},
		Version:          1,
	}
}

// Scrub returns err with every secret (webhook URL, token) and every URL it
// holds replaced, keeping the errors it wraps for errors.Is but not the
// *url.Error, whose text holds the URL. what names the destination, e.g.
// "slack webhook".
func Scrub(err error, what string, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	var ue *url.Error
	if errors.As(err, &ue) {
		msg = ue.Op + " " + what + ": " + ue.Err.Error()
		if ue.Timeout() {
			msg += " (timeout)"
		}
	}
	for _, s := range secrets {
		if s == "" {
			continue
		}
		msg = strings.ReplaceAll(msg, s, "[redacted]")
		if u, perr := url.Parse(s); perr == nil && len(u.Path) > 1 {
			msg = strings.ReplaceAll(msg, u.Path, "[redacted]")
		}
	}
	return &scrubbed{msg: msg, kind: classOf(err)}
}

// scrubbed carries a cleaned message and only the outbox's sentinels.
type scrubbed struct {
	msg  string
	kind error
}

func (e *scrubbed) Error() string { return e.msg }

func (e *scrubbed) Unwrap() error { return e.kind }

func classOf(err error) error {
	var ra *RetryAfterError
	switch {
	case errors.As(err, &ra):
		return &RetryAfterError{Wait: ra.Wait, Err: errors.New("rate limited")}
	case errors.Is(err, ErrMisconfigured):
		return ErrMisconfigured
	case errors.Is(err, ErrRejected):
		return ErrRejected
	case errors.Is(err, context.DeadlineExceeded):
		return context.DeadlineExceeded
	}
	return nil
}
