// Package alert delivers incidents to people and machines: a readable
// table or line for terminals, JSON lines for pipelines and files, and,
// through subpackages, Slack (alert/slack) and any HTTP endpoint
// (alert/webhook). The Outbox makes delivery survive restarts and outages:
// incidents are queued in the detection database in the transaction that
// records them, then sent at a bounded rate, retried, coalesced and, in a
// storm, summarized.
package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spraywatch/spraywatch/detect"
)

// Sink receives each new or updated incident.
type Sink interface {
	Send(ctx context.Context, inc detect.Incident) error
}

var (
	_ Sink = (*JSONLines)(nil)
	_ Sink = (*Text)(nil)
)

// JSONLines writes one JSON object per incident and line.
type JSONLines struct {
	mu sync.Mutex
	w  io.Writer
}

// NewJSONLines writes to w.
func NewJSONLines(w io.Writer) *JSONLines { return &JSONLines{w: w} }

// Send writes inc.
func (j *JSONLines) Send(_ context.Context, inc detect.Incident) error {
	b, err := json.Marshal(inc)
	if err != nil {
		return fmt.Errorf("encode incident %d: %w", inc.ID, err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	_, err = j.w.Write(append(b, '\n'))
	return err
}

// Text writes one readable line per incident.
type Text struct {
	mu sync.Mutex
	w  io.Writer
}

// NewText writes to w.
func NewText(w io.Writer) *Text { return &Text{w: w} }

// Send writes inc.
func (t *Text) Send(_ context.Context, inc detect.Incident) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	verb := "new"
	if inc.Version > 1 {
		verb = "updated"
	}
	if inc.State == detect.StateClosed {
		verb = "closed"
	}
	_, err := fmt.Fprintf(t.w, "%s %s incident #%d [%s] %s: %s\n", inc.Updated.Format(time.RFC3339), verb, inc.ID, strings.ToUpper(inc.Severity), inc.Kind, inc.Summary)
	return err
}

// WriteDetail prints one incident in full, for people.
func WriteDetail(w io.Writer, inc *detect.Incident) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	row("incident", fmt.Sprintf("#%d %s (%s, %s)", inc.ID, inc.Kind, inc.Severity, inc.State))
	row("summary", inc.Summary)
	row("source", inc.Source)
	row("group", inc.Group)
	row("first seen", stamp(inc.FirstSeen))
	row("last seen", stamp(inc.LastSeen))
	row("attempts", inc.Attempts)
	if len(inc.IPs) > 0 {
		row("addresses", fmt.Sprintf("%d: %s", len(inc.IPs), clip(strings.Join(inc.IPs, ", "), 300)))
	} else {
		row("addresses", 0)
	}
	creds := strings.Join(inc.Credentials, ", ")
	switch {
	case !inc.CredentialsKnown:
		creds = "unknown (the source logs no credential)"
	case creds == "":
		creds = "-"
	}
	row("credentials", creds)
	if len(inc.IdentitySample) > 0 {
		row("identities", fmt.Sprintf("%d, e.g. %s", inc.Identities, strings.Join(inc.IdentitySample, ", ")))
	} else {
		row("identities", inc.Identities)
	}
	if len(inc.Compromised) > 0 {
		row("compromised", strings.Join(inc.Compromised, ", "))
	}
	if inc.Related != 0 {
		row("related incident", inc.Related)
	}
	rule := inc.Rule.Name
	if inc.Rule.Window != "" {
		rule += ", window " + inc.Rule.Window
	}
	if len(inc.Rule.Thresholds) > 0 {
		th, _ := json.Marshal(inc.Rule.Thresholds)
		rule += ", thresholds " + string(th)
	}
	row("rule", rule)
	return tw.Flush()
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
