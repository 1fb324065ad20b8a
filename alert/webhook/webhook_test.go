package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/alert"
	"github.com/spraywatch/spraywatch/alert/webhook"
	"github.com/spraywatch/spraywatch/detect"
)

// receiver records the bodies it accepted.
type receiver struct {
	mu     sync.Mutex
	bodies [][]byte
	sigs   []string
	keys   []string
	status int
	header http.Header
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, v := range r.header {
		w.Header()[k] = v
	}
	if r.status != 0 {
		w.WriteHeader(r.status)
		return
	}
	r.bodies = append(r.bodies, body)
	r.sigs = append(r.sigs, req.Header.Get(webhook.SignatureHeader))
	r.keys = append(r.keys, req.Header.Get(webhook.IdempotencyHeader))
}

// Every send of one incident version carries the same Idempotency-Key, so
// a receiver can drop the repeat the outbox sends after an interrupted
// send; another version or incident gets another key.
func TestIdempotencyKeyIsStablePerVersion(t *testing.T) {
	rec := &receiver{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	w, err := webhook.New(webhook.Options{URL: srv.URL + "/hook"})
	if err != nil {
		t.Fatal(err)
	}
	first := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	inc := func(id int64, v int, seen time.Time) detect.Incident {
		return detect.Incident{ID: id, Version: v, Kind: detect.KindSpray, FirstSeen: seen, Attempts: int64(10 * v)}
	}
	for _, i := range []detect.Incident{inc(4, 1, first), inc(4, 1, first), inc(4, 2, first), inc(5, 1, first), inc(4, 1, first.Add(time.Hour))} {
		if err := w.Send(context.Background(), i); err != nil {
			t.Fatal(err)
		}
	}
	k := rec.keys
	if k[0] == "" || k[0] != k[1] {
		t.Errorf("resend of one version: keys %q and %q, want the same, not empty", k[0], k[1])
	}
	for i, other := range k[2:] {
		if other == k[0] {
			t.Errorf("send %d (another version, incident or first-seen time) has the key %q of the first", i+2, other)
		}
	}
}

func TestPostsSignedIncidentJSON(t *testing.T) {
	rec := &receiver{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	secret := []byte("shared-secret")
	w, err := webhook.New(webhook.Options{URL: srv.URL + "/hook", Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	inc := detect.Incident{ID: 4, Kind: detect.KindSpray, Severity: detect.SeverityHigh, Source: "api-nginx", Version: 2, Credentials: []string{"sk_liv…0011223344556677"}}
	if err := w.Send(context.Background(), inc); err != nil {
		t.Fatal(err)
	}
	if len(rec.bodies) != 1 {
		t.Fatalf("got %d posts, want 1", len(rec.bodies))
	}
	var got detect.Incident
	if err := json.Unmarshal(rec.bodies[0], &got); err != nil || got.ID != 4 || got.Version != 2 {
		t.Errorf("body: %s (%v), want incident 4 version 2", rec.bodies[0], err)
	}
	if !webhook.Verify(secret, rec.bodies[0], rec.sigs[0]) {
		t.Errorf("signature %q does not verify", rec.sigs[0])
	}
	if webhook.Verify([]byte("other"), rec.bodies[0], rec.sigs[0]) {
		t.Error("signature verifies under another secret")
	}
}

func TestErrorsSayWhetherToRetryAndHideTheURL(t *testing.T) {
	now := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		status int
		header http.Header
		want   func(error) bool
	}{
		{"429 with Retry-After", 429, http.Header{"Retry-After": {"3"}}, func(err error) bool {
			var ra *alert.RetryAfterError
			return errors.As(err, &ra) && ra.Wait == 3*time.Second
		}},
		// An HTTP date is read on the clock the sink was given.
		{"429 with Retry-After date", 429, http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}, func(err error) bool {
			var ra *alert.RetryAfterError
			return errors.As(err, &ra) && ra.Wait == 90*time.Second
		}},
		{"500", 500, nil, func(err error) bool {
			return err != nil && !errors.Is(err, alert.ErrMisconfigured) && !errors.Is(err, alert.ErrRejected)
		}},
		{"404", 404, nil, func(err error) bool { return errors.Is(err, alert.ErrMisconfigured) }},
		{"400", 400, nil, func(err error) bool { return errors.Is(err, alert.ErrRejected) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(&receiver{status: tt.status, header: tt.header})
			defer srv.Close()
			url := srv.URL + "/hooks/token-in-path-0123456789"
			w, _ := webhook.New(webhook.Options{URL: url, Now: func() time.Time { return now }})
			err := w.Send(context.Background(), detect.Incident{ID: 1})
			if !tt.want(err) {
				t.Errorf("got %v, want it classified as %s", err, tt.name)
			}
			if err != nil && strings.Contains(err.Error(), "token-in-path") {
				t.Errorf("error %q holds the URL", err)
			}
		})
	}
	// A refused connection: *url.Error would print the URL.
	srv := httptest.NewServer(&receiver{})
	url := srv.URL + "/hooks/token-in-path-0123456789"
	srv.Close()
	w, _ := webhook.New(webhook.Options{URL: url, Timeout: time.Second})
	err := w.Send(context.Background(), detect.Incident{ID: 1})
	if err == nil || strings.Contains(err.Error(), "token-in-path") || strings.Contains(err.Error(), srv.URL) {
		t.Errorf("refused connection: got %v, want an error without the URL", err)
	}
}
