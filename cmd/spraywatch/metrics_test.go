package main

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/rules"
)

// Lines left out for their dates are counted in /metrics, not only in a
// replay's summary: a line dated a day ahead among others (a host with a
// wrong clock), and a line older than every open window.
func TestMetricsCountEventsLeftOutForTheirDates(t *testing.T) {
	e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	observe := func(at time.Time) {
		ev := ingest.Event{Time: at, Source: "api", IP: netip.MustParseAddr("198.51.100.9"), Identity: "client-1",
			Credential: "sk_live_0001", Outcome: ingest.Failure, Status: 401, Route: "/api/v1/clients/{identity}/"}
		e.Observe(&ev)
	}
	for i := range 10 {
		observe(t0.Add(time.Duration(i) * time.Second))
	}
	observe(t0.Add(24 * time.Hour)) // ahead: held, then left out
	for i := range 10 {
		observe(t0.Add(time.Duration(10+i) * time.Second))
	}
	observe(t0.Add(-72 * time.Hour)) // older than every window
	m := newMetrics()
	var seen engineSeen
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m.observeEngine(e, &seen, t0, log)
	m.observeEngine(e, &seen, t0, log) // a second look adds nothing
	if got := testutil.ToFloat64(m.ahead); got != 1 {
		t.Errorf("spraywatch_events_dated_ahead_total = %v, want 1 (engine counted %d)", got, e.Ahead)
	}
	if got := testutil.ToFloat64(m.tooOld); got != 1 {
		t.Errorf("spraywatch_events_too_old_total = %v, want 1 (engine counted %d)", got, e.TooOld)
	}
}
