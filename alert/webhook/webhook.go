// Package webhook POSTs each incident as JSON to any HTTP endpoint, signed
// with HMAC-SHA256 when a secret is set.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/spraywatch/spraywatch/alert"
	"github.com/spraywatch/spraywatch/detect"
)

// Headers the receiver reads.
const (
	// SignatureHeader holds "sha256=" and the hex HMAC-SHA256 of the body,
	// keyed with the shared secret (as GitHub signs its webhooks).
	SignatureHeader = "X-Spraywatch-Signature-256"
	// EventHeader says what the body is: "incident".
	EventHeader = "X-Spraywatch-Event"
	// IdempotencyHeader is the same on every send of one version of one
	// incident: a send interrupted before its outcome was recorded (a
	// timeout, the process killed, a judge taking over) is sent again with
	// the same key, so that the receiver can drop the repeat.
	IdempotencyHeader = "Idempotency-Key"
)

// IdempotencyKey is the IdempotencyHeader value for one incident version:
// its ID, version and first-seen time (which tell apart incidents of two
// databases that share an ID).
func IdempotencyKey(inc detect.Incident) string {
	return fmt.Sprintf("spraywatch-%d-%d-%d", inc.ID, inc.Version, inc.FirstSeen.Unix())
}

// DefaultTimeout bounds one request when no HTTP client is given.
const DefaultTimeout = 10 * time.Second

var _ alert.Sink = (*Webhook)(nil)

// Options configure New.
type Options struct {
	// URL receives the POSTs. It may hold a secret: it never appears in an
	// error or a log line.
	URL string
	// Secret, when set, signs every body (SignatureHeader).
	Secret []byte
	// HTTPClient defaults to one with Timeout.
	HTTPClient *http.Client
	// Timeout bounds one request when HTTPClient is nil. Default DefaultTimeout.
	Timeout time.Duration
	// Now is the clock, for a Retry-After given as a date. Default time.Now.
	Now func() time.Time
}

// Webhook POSTs incidents as JSON: every version of every incident, each
// with its id and version so the receiver can keep the newest. It cannot be
// asked what it received, so delivery is at least once; IdempotencyHeader
// lets the receiver drop a repeat.
type Webhook struct {
	o Options
}

// New returns a webhook sink.
func New(o Options) (*Webhook, error) {
	if o.URL == "" {
		return nil, fmt.Errorf("webhook: %w: no URL", alert.ErrMisconfigured)
	}
	if o.HTTPClient == nil {
		if o.Timeout <= 0 {
			o.Timeout = DefaultTimeout
		}
		o.HTTPClient = &http.Client{Timeout: o.Timeout}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Webhook{o: o}, nil
}

// Sign returns the SignatureHeader value for body.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether signature is body's SignatureHeader under secret.
func Verify(secret, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(signature))
}

// Send POSTs inc.
func (w *Webhook) Send(ctx context.Context, inc detect.Incident) error {
	body, err := json.Marshal(inc)
	if err != nil {
		return fmt.Errorf("webhook: encode incident %d: %w: %w", inc.ID, alert.ErrRejected, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.o.URL, bytes.NewReader(body))
	if err != nil {
		return alert.Scrub(fmt.Errorf("webhook: %w: %w", alert.ErrMisconfigured, err), "webhook", w.o.URL)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "spraywatch")
	req.Header.Set(EventHeader, "incident")
	req.Header.Set(IdempotencyHeader, IdempotencyKey(inc))
	if len(w.o.Secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(w.o.Secret, body))
	}
	resp, err := w.o.HTTPClient.Do(req)
	if err != nil {
		return alert.Scrub(fmt.Errorf("webhook: %w", err), "webhook", w.o.URL)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if err := classify(resp, w.o.Now()); err != nil {
		return alert.Scrub(fmt.Errorf("webhook: %w", err), "webhook", w.o.URL)
	}
	return nil
}

// classify turns a response into nil or an error the outbox can act on;
// now reads a Retry-After date.
func classify(resp *http.Response, now time.Time) error {
	code := resp.StatusCode
	status := fmt.Errorf("status %s", resp.Status)
	switch {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusTooManyRequests:
		if wait, ok := retryAfter(resp.Header.Get("Retry-After"), now); ok {
			return &alert.RetryAfterError{Wait: wait, Err: status}
		}
		return status
	case code == http.StatusRequestTimeout, code >= 500:
		return status
	case code == http.StatusUnauthorized, code == http.StatusForbidden, code == http.StatusNotFound, code == http.StatusGone:
		return fmt.Errorf("%w: %w", alert.ErrMisconfigured, status)
	}
	return fmt.Errorf("%w: %w", alert.ErrRejected, status)
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d, true
		}
		return 0, true
	}
	return 0, false
}
