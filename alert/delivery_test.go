package alert_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/alert"
)

func TestScrubRemovesSecretsAndKeepsTheKind(t *testing.T) {
	const hook = "https://hooks.slack.com/services/T01/B02/secretsecret"
	urlErr := &url.Error{Op: "Post", URL: hook, Err: context.DeadlineExceeded}
	tests := []struct {
		name string
		err  error
		is   error
	}{
		{"timeout", fmt.Errorf("failed to post webhook: %w", urlErr), context.DeadlineExceeded},
		{"misconfigured", fmt.Errorf("post: %w: %s answered 404", alert.ErrMisconfigured, hook), alert.ErrMisconfigured},
		{"rejected", fmt.Errorf("%w: bad payload for /services/T01/B02/secretsecret", alert.ErrRejected), alert.ErrRejected},
		{"rate limited", &alert.RetryAfterError{Wait: 3 * time.Second, Err: urlErr}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := alert.Scrub(tt.err, "slack webhook", hook)
			if strings.Contains(got.Error(), "secretsecret") {
				t.Errorf("scrubbed error %q still holds the secret", got)
			}
			var ue *url.Error
			if errors.As(got, &ue) {
				t.Errorf("scrubbed error still wraps the *url.Error")
			}
			if tt.is != nil && !errors.Is(got, tt.is) {
				t.Errorf("scrubbed error %q is no longer %v", got, tt.is)
			}
			var ra *alert.RetryAfterError
			if tt.name == "rate limited" && (!errors.As(got, &ra) || ra.Wait != 3*time.Second) {
				t.Errorf("scrubbed error %q lost its Retry-After", got)
			}
		})
	}
}
