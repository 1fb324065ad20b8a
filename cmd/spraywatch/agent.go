package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/detect/postgres"
	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/rules"
)

// detector is what the daemon's loop feeds lines to: the rules engine in
// role all, or an agent's counter, which only counts.
type detector interface {
	Observe(ev *ingest.Event)
	TickSource(source string, now time.Time)
	SourceWatermark(source string) time.Time
	Watermark() time.Time
	Pending() int
	TakeHeld(source string, wall time.Time)
}

// counter is an agent's detector: it aggregates events into per-minute
// attempt rows for the judge and keeps each source's event time. Its rules
// engine, fed the node's lines, aggregates the rows and judges the line
// findings (rules.LineFinding: statuses, latencies, whole keys, which rows
// do not carry), which the agent hands to the judge; the attacks it may
// see in the node's share are not reported: the judge judges them over the
// fleet.
type counter struct {
	lines  *rules.Engine
	clocks map[string]time.Time
	newest time.Time
	// reported is, per local finding, the lines last handed to the judge.
	reported map[int64]int64
}

func newCounter(lines *rules.Engine) *counter {
	return &counter{lines: lines, clocks: map[string]time.Time{}, reported: map[int64]int64{}}
}

func (c *counter) Observe(ev *ingest.Event) {
	c.lines.Observe(ev)
	// The engine's clock, not the line's: a line dated ahead of the
	// source's others does not move it (rules/clock.go).
	if w := c.lines.SourceWatermark(ev.Source); w.After(c.clocks[ev.Source]) {
		c.clocks[ev.Source] = w
	}
	if w := c.clocks[ev.Source]; w.After(c.newest) {
		c.newest = w
	}
}

// TickSource moves the line engine's clock; the judge moves the fleet's on
// from the clocks each flush reports.
func (c *counter) TickSource(source string, now time.Time) { c.lines.TickSource(source, now) }

func (c *counter) SourceWatermark(source string) time.Time { return c.clocks[source] }
func (c *counter) Watermark() time.Time                    { return c.newest }
func (c *counter) Pending() int                            { return c.lines.Pending() }

// TakeHeld counts the lines the line engine held back as dated ahead
// (rules/clock.go) once they are known to be the source's time.
func (c *counter) TakeHeld(source string, wall time.Time) {
	c.lines.TakeHeld(source, wall)
	if w := c.lines.SourceWatermark(source); w.After(c.clocks[source]) {
		c.clocks[source] = w
		c.newest = maxTime(c.newest, w)
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

var _ detector = (*counter)(nil)

// agentStore is an agent's side of the fleet database: its node's rows and
// positions, under a lock that keeps a second process from writing as the
// same node.
type agentStore struct {
	*postgres.Store
	lease *postgres.Lease
	log   *slog.Logger
	// raised counts, per kind, the line findings first reported to the
	// judge: the only incidents an agent raises.
	raised *prometheus.CounterVec
}

// openAgentStore connects as this node, waiting for the database (an agent
// cannot start reading before it knows its saved positions).
func openAgentStore(ctx context.Context, cfg Config, log *slog.Logger, raised *prometheus.CounterVec) (*agentStore, error) {
	node := nodeName(cfg)
	secret, err := fleetSecret(cfg)
	if err != nil {
		return nil, err
	}
	check := postgres.SecretCheck(secret)
	for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
		s, err := openPostgres(ctx, cfg, postgres.Options{Node: node, NoMigrate: true, SecretCheck: check})
		if err == nil {
			a := &agentStore{Store: s, log: log, raised: raised}
			var judges string
			if judges, err = s.FleetSecretCheck(ctx); err == nil && judges != "" && judges != check {
				s.Close()
				return nil, fmt.Errorf("%w: fingerprint_secret_file: %s: %w", errConfig, cfg.FingerprintSecretFile, errOtherSecret)
			}
			if err == nil {
				if a.lease, err = s.LockNode(ctx); err == nil {
					log.Info("agent connected", "node", node, "database", s.Path())
					return a, nil
				}
			}
			s.Close()
		}
		if errors.Is(err, errConfig) || errors.Is(err, postgres.ErrNodeInUse) || errors.Is(err, postgres.ErrPasswordInURL) || ctx.Err() != nil {
			return nil, err
		}
		log.Error("database not ready; retrying", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// flush writes the counter's rows, the positions and the sources' clocks in
// one transaction. The node lock is taken again first if the connection
// that held it broke.
func (a *agentStore) flush(ctx context.Context, c *counter, pos []detect.Position, clocks map[string]*sourceClock, interval time.Duration) error {
	fctx, cancel := context.WithTimeout(ctx, max(10*time.Second, 5*interval))
	defer cancel()
	select {
	case <-a.lease.Lost():
		l, err := a.LockNode(fctx)
		if err != nil {
			return fmt.Errorf("lock node again: %w", err)
		}
		a.lease = l
	default:
	}
	var cl []postgres.Clock
	for name, sc := range clocks {
		cl = append(cl, postgres.Clock{Source: name, Event: sc.last, Wall: sc.wall, Behind: sc.behind})
	}
	landed := a.LandedInDoubt()
	_, err := c.lines.Flush(fctx, flusherFunc(func(ctx context.Context, b detect.Batch) error {
		var fs []postgres.Finding
		for _, inc := range append(b.Incidents[:len(b.Incidents):len(b.Incidents)], b.Quiet...) {
			if !rules.LineFinding(inc.Kind) {
				continue
			}
			if lines := inc.Attempts - c.reported[inc.ID]; lines > 0 || c.reported[inc.ID] == 0 {
				fs = append(fs, postgres.Finding{Incident: inc, Lines: lines})
			}
		}
		if err := a.FlushAgentFindings(ctx, detect.Batch{Attempts: b.Attempts, Positions: pos}, cl, fs, time.Now()); err != nil {
			return err
		}
		for _, f := range fs {
			if c.reported[f.Incident.ID] == 0 {
				a.log.Info("finding reported to the judge", "kind", f.Incident.Kind, "source", f.Incident.Source, "group", f.Incident.Group, "lines", f.Lines)
				a.raised.WithLabelValues(f.Incident.Kind).Inc()
			}
			c.reported[f.Incident.ID] = f.Incident.Attempts
		}
		return nil
	}), detect.Batch{})
	if a.LandedInDoubt() > landed {
		a.log.Warn("an earlier flush whose commit got no answer was written after all; its rows were not written again")
	}
	return err
}

// flusherFunc is a rules.Flusher.
type flusherFunc func(context.Context, detect.Batch) error

func (f flusherFunc) Flush(ctx context.Context, b detect.Batch) error { return f(ctx, b) }

// Close releases the node lock and the connections.
func (a *agentStore) Close() error {
	a.lease.Release()
	return a.Store.Close()
}

// agentLineLog is the log of an agent's line engine. What that engine
// raises is not an incident: the judge judges attacks over the fleet, and
// the line findings the agent reports become the judge's incidents (the
// agent logs "finding reported to the judge" for those). So its "incident
// raised" becomes a debug record that says what it is, and its numbering,
// which is not the judge's, is not shown as an incident id.
func agentLineLog(log *slog.Logger) *slog.Logger {
	return slog.New(lineLog{log.Handler()}).With("judges", "line findings")
}

type lineLog struct{ slog.Handler }

func (h lineLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "incident raised" {
		if !h.Handler.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		d := slog.NewRecord(r.Time, slog.LevelDebug, "seen in this node's share; not an incident (the judge raises those)", r.PC)
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "id" {
				a.Key = "local_id"
			}
			d.AddAttrs(a)
			return true
		})
		r = d
	}
	return h.Handler.Handle(ctx, r)
}

func (h lineLog) WithAttrs(as []slog.Attr) slog.Handler { return lineLog{h.Handler.WithAttrs(as)} }
func (h lineLog) WithGroup(name string) slog.Handler    { return lineLog{h.Handler.WithGroup(name)} }

// warnAgentAlerts warns, once at start, that an agent config's alerts are
// not used: an agent sends no alerts, the active judge does. The default
// (one stdout sink) is what a config without alerts: has, and says nothing.
func warnAgentAlerts(cfg Config, log *slog.Logger) {
	if len(cfg.Alerts) == 0 || reflect.DeepEqual(cfg.Alerts, DefaultConfig().Alerts) {
		return
	}
	types := make([]string, 0, len(cfg.Alerts))
	for _, a := range cfg.Alerts {
		types = append(types, a.Type)
	}
	log.Warn("alerts: is ignored on an agent: agents send no alerts; the active judge sends them, from its own config", "alerts", types)
}
