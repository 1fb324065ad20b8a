package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/spraywatch/spraywatch/alert"
	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/rules"
)

// metrics are what 'spraywatch run' serves on metrics_listen. Only the
// detector goroutine writes them, except the counters client_golang makes
// safe anyway.
type metrics struct {
	// okText, when set, is what /healthz says when healthy (a judge reads
	// no sources); the default speaks of the sources.
	okText         func() string
	reg            *prometheus.Registry
	linesRead      *prometheus.CounterVec
	linesParsed    *prometheus.CounterVec
	linesSkip      *prometheus.CounterVec
	linesLate      *prometheus.CounterVec
	behindBytes    *prometheus.GaugeVec
	behindSecs     *prometheus.GaugeVec
	tracked        *prometheus.GaugeVec
	dropped        prometheus.Counter
	entries        prometheus.Gauge
	droppedEntries prometheus.Counter
	untracked      prometheus.Counter
	ahead, tooOld  prometheus.Counter
	incidents      *prometheus.CounterVec
	flushErrors    prometheus.Counter
	dbErrors       *prometheus.CounterVec
	failing        *prometheus.GaugeVec
	reloads        *prometheus.CounterVec

	mu      sync.Mutex
	sources map[string]*sourceMetrics
}

type sourceMetrics struct {
	read, parsed, late         prometheus.Counter
	skip                       *prometheus.CounterVec
	name                       string
	bytesBehind, secondsBehind prometheus.Gauge
	lastEvent                  time.Time
}

func (m *sourceMetrics) skipped(reason string) {
	m.skip.WithLabelValues(m.name, reason).Inc()
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), sources: map[string]*sourceMetrics{},
		linesRead: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spraywatch_lines_read_total",
			Help: "Lines read, per source."}, []string{"source"}),
		linesParsed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spraywatch_lines_parsed_total",
			Help: "Lines parsed into events (route-filtered ones included), per source."}, []string{"source"}),
		linesSkip: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spraywatch_lines_skipped_total",
			Help: "Lines not counted, per source and reason; filtered_route, joined and not_an_event are lines rightly not counted (not an auth route, a flask access line joined to its app line, a banner)."}, []string{"source", "reason"}),
		linesLate: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spraywatch_lines_late_total",
			Help: "Lines older than the newest by more than the lateness (still counted)."}, []string{"source"}),
		behindBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "spraywatch_source_bytes_behind",
			Help: "Bytes written to a source's files and not read yet."}, []string{"source"}),
		behindSecs: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "spraywatch_source_seconds_behind",
			Help: "While bytes are behind: wall time minus the event time of the last line read."}, []string{"source"}),
		tracked: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "spraywatch_tracked_groups",
			Help: "Window groups held in memory, per grouping (ip, net, credential, identity)."}, []string{"grouping"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "spraywatch_tracked_groups_dropped_total",
			Help: "New window groups dropped because max_groups was reached (their lines are still stored)."}),
		entries: prometheus.NewGauge(prometheus.GaugeOpts{Name: "spraywatch_tracked_entries",
			Help: "Window entries held in memory over all groups (capped by max_entries)."}),
		droppedEntries: prometheus.NewCounter(prometheus.CounterOpts{Name: "spraywatch_tracked_entries_dropped_total",
			Help: "Window entries not kept because max_entries was reached (their lines are still stored)."}),
		untracked: prometheus.NewCounter(prometheus.CounterOpts{Name: "spraywatch_incident_untracked_total",
			Help: "Attempts whose address or identity an incident did not list because max_incident_set was reached."}),
		ahead: prometheus.NewCounter(prometheus.CounterOpts{Name: "spraywatch_events_dated_ahead_total",
			Help: "Events dated more than 5 minutes ahead of the lines after them on their source (a wrong clock?): left out, neither stored nor judged."}),
		tooOld: prometheus.NewCounter(prometheus.CounterOpts{Name: "spraywatch_events_too_old_total",
			Help: "Events older than every window still open on their source's clock: stored, but judged by no rule."}),
		incidents: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spraywatch_incidents_raised_total",
			Help: "Incidents raised, per kind."}, []string{"kind"}),
		flushErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "spraywatch_flush_errors_total",
			Help: "Failed writes of counts, incidents and positions (retried)."}),
		dbErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spraywatch_database_write_errors_total",
			Help: "Failed writes of counts, incidents, positions and alert rows, per cause (disk full, locked by another process, read-only, corrupt, write error)."}, []string{"cause"}),
		failing: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "spraywatch_health_failing",
			Help: "1 while a health check fails (/healthz answers 503 naming it): database, alerts:<destination>, behind:<source>, blind:<source>, file:<source> (a path that matches no file or cannot be read); on a judge, quiet:<node>."}, []string{"check"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spraywatch_config_reloads_total",
			Help: "SIGHUP reloads, applied or rejected."}, []string{"result"}),
	}
	m.reg.MustRegister(m.linesRead, m.linesParsed, m.linesSkip, m.linesLate, m.behindBytes, m.behindSecs, m.tracked,
		m.dropped, m.entries, m.droppedEntries, m.untracked, m.ahead, m.tooOld, m.incidents, m.flushErrors, m.dbErrors, m.failing, m.reloads,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// setFailing sets a health check's gauge.
func (m *metrics) setFailing(check string, failing bool) {
	v := 0.0
	if failing {
		v = 1
	}
	m.failing.WithLabelValues(check).Set(v)
}

// watchSinks exports the alert destinations' delivery counters.
func (m *metrics) watchSinks(stats func() []alert.DestinationStats) {
	m.reg.MustRegister(sinkCollector(stats))
}

// sinkCollector reads the outbox's counters at scrape time.
type sinkCollector func() []alert.DestinationStats

var (
	sinkErrorsDesc = prometheus.NewDesc("spraywatch_sink_errors_total",
		"Alert deliveries that failed, per destination and kind (retry, rate_limited, rejected, misconfigured).",
		[]string{"destination", "kind"}, nil)
	sinkSentDesc = prometheus.NewDesc("spraywatch_alerts_sent_total",
		"Alert messages delivered, per destination.", []string{"destination"}, nil)
)

func (c sinkCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- sinkErrorsDesc
	ch <- sinkSentDesc
}

func (c sinkCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c() {
		ch <- prometheus.MustNewConstMetric(sinkSentDesc, prometheus.CounterValue, float64(s.Sent), s.Destination)
		for _, k := range []struct {
			kind string
			n    int64
		}{{"retry", s.Retries}, {"rate_limited", s.RateLimited}, {"rejected", s.Rejected}, {"misconfigured", s.Misconfigured}} {
			ch <- prometheus.MustNewConstMetric(sinkErrorsDesc, prometheus.CounterValue, float64(k.n), s.Destination, k.kind)
		}
	}
}

func (m *metrics) source(name string) *sourceMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sources[name]
	if s == nil {
		s = &sourceMetrics{name: name, read: m.linesRead.WithLabelValues(name), parsed: m.linesParsed.WithLabelValues(name),
			late: m.linesLate.WithLabelValues(name), skip: m.linesSkip, bytesBehind: m.behindBytes.WithLabelValues(name),
			secondsBehind: m.behindSecs.WithLabelValues(name)}
		m.sources[name] = s
	}
	return s
}

// serve answers /metrics and /healthz on addr until the returned stop is
// called.
func (m *metrics) serve(addr string, healthy func() (bool, []string), log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics_listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		ok, problems := healthy()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, strings.Join(problems, "\n"))
			return
		}
		if m.okText != nil {
			fmt.Fprintln(w, m.okText())
			return
		}
		fmt.Fprintln(w, "ok: every source is being read and detects, counts and positions are written, alerts are delivered")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// engineSeen is what observeEngine last exported of one engine's counters,
// and when a full detector was last reported.
type engineSeen struct {
	dropped, droppedEntries, untracked int64
	ahead, tooOld                      int64
	lastSaturated                      time.Time
}

// observeEngine copies a rules engine's window state into the gauges and
// counters: the daemon's, a judge's, or an agent's line engine.
func (m *metrics) observeEngine(e *rules.Engine, seen *engineSeen, now time.Time, log *slog.Logger) {
	groups := e.Windows().Len()
	for g, n := range groups {
		m.tracked.WithLabelValues(detect.Grouping(g).String()).Set(float64(n))
	}
	w := e.Windows()
	m.entries.Set(float64(w.Entries()))
	saturated := false
	for _, c := range []struct {
		now  int64
		seen *int64
		m    prometheus.Counter
	}{{w.Dropped, &seen.dropped, m.dropped}, {w.DroppedEntries, &seen.droppedEntries, m.droppedEntries},
		{e.Untracked, &seen.untracked, m.untracked}} {
		if c.now > *c.seen {
			c.m.Add(float64(c.now - *c.seen))
			*c.seen = c.now
			saturated = true
		}
	}
	// Lines left out or judged by no rule for their dates (each is also
	// logged once by the engine).
	for _, c := range []struct {
		now  int64
		seen *int64
		m    prometheus.Counter
	}{{e.Ahead, &seen.ahead, m.ahead}, {e.TooOld, &seen.tooOld, m.tooOld}} {
		if c.now > *c.seen {
			c.m.Add(float64(c.now - *c.seen))
			*c.seen = c.now
		}
	}
	// Dropped state is blind spots an attacker may have made on purpose:
	// say so in the log, not only in a counter, at most every ten minutes.
	if saturated && now.Sub(seen.lastSaturated) >= 10*time.Minute {
		seen.lastSaturated = now
		log.Warn("detector at capacity: new window groups or entries are not being tracked",
			"groups_dropped", w.Dropped, "entries_dropped", w.DroppedEntries, "incident_members_untracked", e.Untracked,
			"hint", "raise max_groups / max_entries, or look for a flood of addresses or identities")
	}
}
