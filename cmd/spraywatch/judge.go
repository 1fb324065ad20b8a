package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spraywatch/spraywatch/alert"
	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/detect/postgres"
	"github.com/spraywatch/spraywatch/rules"
)

// judgeRowsPerRound bounds the rows one round reads, so that a judge
// catching up on a backlog still flushes and answers.
const judgeRowsPerRound = 50_000

// fleetJudge is 'spraywatch run --role judge'. Any number may run; the one that
// holds the judge lease reads every node's new attempt rows, judges the
// fleet's union, keeps the incidents and delivers the alerts. The others
// wait, and the first to get the lease after the active one dies restores
// from the database and goes on where its last flush ended.
type fleetJudge struct {
	cfg     Config
	noCred  map[string]bool
	log     *slog.Logger
	store   *postgres.Store
	stdout  io.Writer
	holder  string
	metrics *metrics

	// Set by the active round, read by healthz.
	mu       sync.Mutex
	problems []string
	alerts   *alerting // the active term's, for the sink metrics
	// failing are the health checks exported as failing (1) last time.
	failing map[string]bool
	health  *health // the alert destinations' health
	seen    engineSeen
	// leaseErr, roundErr and flushErr are failures that repeat every
	// second or poll while the database is away: logged once, then
	// summarised.
	leaseErr, roundErr, flushErr failure
	active                       bool
	gauges                       judgeMetrics

	// The active judge's state.
	engine  *rules.Engine
	cursors map[string]int64
	// nodeSeen is, per node, its last flush time as it reported it and
	// when this judge first saw that value: liveness is judged on this
	// judge's clock, so the nodes' clocks need not agree.
	nodeSeen map[string]seenAt
	clockAt  map[nodeSource]clockSeen
	quiet    map[string]bool
	// watchdog is systemd's interval (0: none); lastPing the last ping.
	watchdog time.Duration
	lastPing time.Time
}

// ping tells systemd's watchdog the judge is alive, every watchdog/3.
func (j *fleetJudge) ping() {
	if j.watchdog > 0 && time.Since(j.lastPing) >= j.watchdog/3 {
		_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
		j.lastPing = time.Now()
	}
}

type seenAt struct {
	reported time.Time
	local    time.Time
}

type nodeSource struct{ node, source string }

type clockSeen struct {
	c     postgres.Clock
	local time.Time
}

func runJudge(ctx context.Context, g *globals, cfg Config, noCred map[string]bool, log *slog.Logger) error {
	host, _ := os.Hostname()
	j := &fleetJudge{cfg: cfg, noCred: noCred, log: log.With("role", roleJudge), stdout: g.stdout, holder: fmt.Sprintf("%s/%d", host, os.Getpid())}
	var err error
	for {
		if j.store, err = openPostgres(ctx, cfg, postgres.Options{}); err == nil {
			break
		}
		if !postgres.IsUnavailable(err) || ctx.Err() != nil {
			return err
		}
		j.log.Error("database unreachable; retrying", "err", err)
		j.setHealth([]check{{"database", "database unreachable: " + err.Error()}})
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
	defer j.store.Close()
	j.metrics = newMetrics()
	j.health, j.failing = newHealth(), map[string]bool{}
	j.metrics.setFailing("database", false)
	j.metrics.watchSinks(j.sinkStats) // once: each term's outbox is swapped in
	j.gauges = newJudgeMetrics(j.metrics.reg)
	j.metrics.okText = j.okText
	if cfg.MetricsListen != "" {
		stop, err := j.metrics.serve(cfg.MetricsListen, j.healthy, j.log)
		if err != nil {
			return err
		}
		defer stop()
	}
	go forceExitOnSecondSignal(ctx, j.log)
	_, _ = daemon.SdNotify(false, daemon.SdNotifyReady)
	j.watchdog, _ = daemon.SdWatchdogEnabled(false)
	j.log.Info("judge started; waiting for the judge lease", "database", j.store.Path(), "holder", j.holder)
	for ctx.Err() == nil {
		lease, ok, err := j.store.TryJudge(ctx, j.holder)
		switch {
		case err != nil && ctx.Err() == nil:
			j.leaseErr.note(j.log, "taking the judge lease", "database error", "see the error; the lease is tried again every second", err, time.Now())
			j.setHealth([]check{{"database", "database: " + err.Error()}})
		case !ok:
			j.leaseErr.note(j.log, "taking the judge lease", "", "", nil, time.Now())
			j.setHealth(nil) // a standby: another judge is active
		default:
			j.leaseErr.note(j.log, "taking the judge lease", "", "", nil, time.Now())
			j.log.Info("judge lease taken: this judge is active", "epoch", lease.Epoch())
			err := j.run(ctx, lease)
			lease.Release()
			j.setActive(false)
			if ctx.Err() != nil {
				return err
			}
			j.log.Warn("stepped down as the active judge; state is restored from the database on the next takeover", "err", err)
		}
		j.ping()
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}

// checkSecrets publishes the judge's secret check for agents starting
// later, and reports every node that flushed under another secret: its
// whole keys get other labels, so an attack across it and the others
// looks like several.
func (j *fleetJudge) checkSecrets(ctx context.Context) {
	secret, err := fleetSecret(j.cfg)
	if err != nil {
		j.log.Error("cannot check the nodes' fingerprint secrets", "err", err)
		return
	}
	mine := postgres.SecretCheck(secret)
	if err := j.store.PublishSecretCheck(ctx, mine); err != nil {
		j.log.Error("cannot publish the judge's secret check for agents", "err", err)
	}
	checks, err := j.store.NodeSecretChecks(ctx)
	if err != nil {
		j.log.Error("cannot read the nodes' secret checks", "err", err)
		return
	}
	for node, c := range checks {
		if c != "" && c != mine {
			j.log.Error("node uses another fingerprint secret than this judge: its whole keys get other labels, and an attack across it and other nodes looks like several; copy the judge's fingerprint_secret_file to it and restart it",
				"node", node)
		}
	}
}

// run is one term as the active judge, until ctx ends, the lease is lost
// or another judge took over.
func (j *fleetJudge) run(parent context.Context, lease *postgres.Lease) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	go func() {
		select {
		case <-lease.Lost():
			j.log.Warn("judge lease lost (database connection broke)")
			cancel()
		case <-ctx.Done():
		}
	}()
	j.engine = rules.NewEngine(rules.Options{Config: j.cfg.Rules, Allow: j.cfg.AllowList(), NoCredential: j.noCred, MaxGroups: j.cfg.MaxGroups,
		MaxEntries: j.cfg.MaxEntries, MaxIncidentSet: j.cfg.MaxIncidentSet, Logger: j.log})
	if err := j.engine.Restore(ctx, j.store); err != nil {
		return err
	}
	var err error
	if j.cursors, err = j.store.Cursors(ctx); err != nil {
		return err
	}
	j.nodeSeen, j.clockAt, j.quiet = map[string]seenAt{}, map[nodeSource]clockSeen{}, map[string]bool{}
	alerts, err := newFencedAlerting(j.cfg, j.store, j.log, j.stdout, fmt.Sprintf("judge %s epoch %d", j.holder, lease.Epoch()), lease.Fence)
	if err != nil {
		return err
	}
	j.setAlerts(alerts)
	defer j.setAlerts(nil)
	alertCtx, stopAlerts := context.WithCancel(ctx)
	alertsDone := make(chan error, 1)
	go func() { alertsDone <- alerts.Run(alertCtx) }()
	defer func() {
		stopAlerts()
		<-alertsDone
	}()
	wake := make(chan struct{}, 1)
	go j.store.Listen(ctx, wake, time.Second, func(err error) {
		j.log.Warn("LISTEN connection broke; polling meanwhile", "err", err)
	})
	j.checkSecrets(ctx)
	// One round before answering as the active judge, so that /healthz
	// names the quiet nodes from the first answer on.
	if err := j.round(ctx, time.Now()); err != nil && ctx.Err() == nil {
		j.setHealth([]check{{"database", "database: " + err.Error()}})
	}
	j.setActive(true)
	j.log.Info("judging the fleet", "restored_watermark", j.engine.Watermark().UTC(), "nodes", len(j.nodeSeen))
	poll := time.NewTicker(j.cfg.PollInterval)
	defer poll.Stop()
	var lastFlush, lastRetention, lastObserved time.Time
	j.seen = engineSeen{} // this term's engine counts from 0
	var incidents int64
	flush := func(ctx context.Context) error {
		cur := make(map[string]int64, len(j.cursors))
		for k, v := range j.cursors {
			cur[k] = v
		}
		snaps, err := j.engine.Flush(ctx, judgeFlusher{j.store, cur, lease}, detect.Batch{Extra: alerts.Enqueue})
		lastFlush = time.Now()
		if err == nil {
			incidents = j.engine.Counters.Incidents
			for _, s := range snaps {
				if s.Version == 1 {
					j.metrics.incidents.WithLabelValues(s.Kind).Inc()
				}
			}
		}
		return err
	}
	for {
		select {
		case <-ctx.Done():
			if parent.Err() != nil { // shutting down, still active: write what is judged
				fctx, c := context.WithTimeout(context.WithoutCancel(parent), 5*time.Second)
				defer c()
				return flush(fctx)
			}
			return ctx.Err()
		case <-wake:
		case <-poll.C:
		}
		now := time.Now()
		j.ping()
		if err := j.round(ctx, now); err != nil {
			if ctx.Err() != nil {
				continue
			}
			j.roundErr.note(j.log, "reading the nodes' rows", "database error", "see the error; rows are read again at the next poll", err, now)
			j.setHealth([]check{{"database", "database: " + err.Error()}})
			continue
		}
		if now.Sub(lastObserved) >= time.Second {
			lastObserved = now
			j.metrics.observeEngine(j.engine, &j.seen, now, j.log)
		}
		if j.engine.Counters.Incidents != incidents || now.Sub(lastFlush) >= j.cfg.FlushInterval {
			err := flush(ctx)
			if errors.Is(err, postgres.ErrNotActive) {
				return err
			}
			cause := ""
			if err != nil {
				cause = "database error"
			}
			j.flushErr.note(j.log, "writing incidents and cursors", cause, "see the error; the write is retried", err, now)
		}
		if now.Sub(lastRetention) >= time.Hour {
			lastRetention = now
			cut := j.engine.Watermark().Add(-j.cfg.Retention)
			if n, err := j.store.DeleteAttemptsBefore(ctx, cut); err != nil {
				j.log.Warn("old attempt rows not deleted; will retry", "err", err)
			} else if n > 0 {
				j.log.Info("old attempt rows deleted", "rows", n, "before", cut)
			}
		}
	}
}

// judgeFlusher writes the judge's batch with the cursors it came from.
type judgeFlusher struct {
	store   *postgres.Store
	cursors map[string]int64
	lease   *postgres.Lease
}

func (f judgeFlusher) Flush(ctx context.Context, b detect.Batch) error {
	return f.store.FlushJudge(ctx, b, f.cursors, f.lease)
}

// round reads every node's new rows into the engine, then moves each
// source's event time on to the slowest live node's, less the lateness.
func (j *fleetJudge) round(ctx context.Context, now time.Time) error {
	nodes, err := j.store.Nodes(ctx)
	if err != nil {
		return err
	}
	budget := judgeRowsPerRound
	for _, n := range nodes {
		for budget > 0 {
			want := min(budget, 5000)
			got := 0
			last, err := j.store.ReadAttempts(ctx, n.Name, j.cursors[n.Name], want, func(r postgres.Row) error {
				j.engine.ObserveRow(r.Node, r.Key, r.Count)
				j.gauges.rows.Inc()
				got++
				return nil
			})
			j.cursors[n.Name] = last
			budget -= got
			if err != nil {
				return err
			}
			if got < want {
				break
			}
		}
		fc := postgres.FindingsCursor(n.Name)
		last, err := j.store.ReadFindings(ctx, n.Name, j.cursors[fc], func(r postgres.FindingRow) error {
			j.engine.ObserveFinding(r.Node, &r.Incident, r.Lines)
			return nil
		})
		j.cursors[fc] = last
		if err != nil {
			return err
		}
	}
	var problems []check
	horizon := map[string]time.Time{}
	j.forgetRetired(nodes)
	for _, n := range nodes {
		s, ok := j.nodeSeen[n.Name]
		switch {
		case !ok:
			// First seen this term: a node already quiet when this judge
			// took over stays quiet. Its flush time is on its own clock,
			// taken as this judge's here only (a clock ahead counts from
			// now); from now on only changes of it count.
			s = seenAt{reported: n.Seen, local: n.Seen}
			if n.Seen.After(now) {
				s.local = now
			}
			j.nodeSeen[n.Name] = s
		case !s.reported.Equal(n.Seen):
			s = seenAt{reported: n.Seen, local: now}
			j.nodeSeen[n.Name] = s
		}
		if quiet := now.Sub(s.local) > j.cfg.NodeTimeout; quiet {
			problems = append(problems, check{"quiet:" + n.Name, fmt.Sprintf("node %s: no flush for %s; judged without waiting for it", n.Name, now.Sub(s.local).Round(time.Second))})
			if !j.quiet[n.Name] {
				j.quiet[n.Name] = true
				j.log.Warn("node quiet or dead: not waiting for it", "node", n.Name, "last_flush", s.local.UTC())
			}
			continue
		} else if j.quiet[n.Name] {
			delete(j.quiet, n.Name)
			j.log.Info("node back", "node", n.Name)
		}
		for _, c := range n.Clocks {
			if c.Event.IsZero() {
				continue
			}
			k := nodeSource{n.Name, c.Source}
			cs, ok := j.clockAt[k]
			if !ok || !cs.c.Event.Equal(c.Event) || !cs.c.Wall.Equal(c.Wall) {
				cs = clockSeen{c: c, local: now}
				j.clockAt[k] = cs
			}
			at := c.Event
			if c.Behind == 0 {
				at = at.Add(now.Sub(cs.local))
			}
			if h, ok := horizon[c.Source]; !ok || at.Before(h) {
				horizon[c.Source] = at
			}
		}
	}
	sources := make([]string, 0, len(horizon))
	for s := range horizon {
		sources = append(sources, s)
	}
	sort.Strings(sources)
	for _, s := range sources {
		j.engine.TickSource(s, horizon[s].Add(-j.cfg.Lateness))
	}
	if len(sources) == 0 {
		j.engine.Finish() // judge what the rows changed
	}
	j.roundErr.note(j.log, "reading the nodes' rows", "", "", nil, now)
	j.setHealth(problems)
	j.gauges.nodes.WithLabelValues("live").Set(float64(len(nodes) - len(j.quiet)))
	j.gauges.nodes.WithLabelValues("quiet").Set(float64(len(j.quiet)))
	return nil
}

// forgetRetired drops what this judge holds of nodes no longer in the
// database ('spraywatch nodes retire'): they are not reported again.
func (j *fleetJudge) forgetRetired(nodes []postgres.Node) {
	have := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		have[n.Name] = true
	}
	for name := range j.nodeSeen {
		if !have[name] {
			delete(j.nodeSeen, name)
			delete(j.quiet, name)
			for k := range j.clockAt {
				if k.node == name {
					delete(j.clockAt, k)
				}
			}
			j.log.Info("node retired: no longer judged or reported", "node", name)
		}
	}
}

// judgeMetrics are a judge's own, beside the sink metrics.
type judgeMetrics struct {
	active prometheus.Gauge
	nodes  *prometheus.GaugeVec
	rows   prometheus.Counter
}

func newJudgeMetrics(reg *prometheus.Registry) judgeMetrics {
	m := judgeMetrics{
		active: prometheus.NewGauge(prometheus.GaugeOpts{Name: "spraywatch_judge_active",
			Help: "1 while this judge holds the judge lease, 0 on standby."}),
		nodes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "spraywatch_fleet_nodes",
			Help: "Agent nodes by state: live, or quiet (no flush for node_timeout; not waited for)."}, []string{"state"}),
		rows: prometheus.NewCounter(prometheus.CounterOpts{Name: "spraywatch_judge_rows_total",
			Help: "Attempt rows judged."}),
	}
	reg.MustRegister(m.active, m.nodes, m.rows)
	return m
}

func (j *fleetJudge) setAlerts(a *alerting) {
	j.mu.Lock()
	j.alerts = a
	j.mu.Unlock()
}

// sinkStats are the active term's delivery counters; none on a standby.
func (j *fleetJudge) sinkStats() []alert.DestinationStats {
	j.mu.Lock()
	a := j.alerts
	j.mu.Unlock()
	if a == nil {
		return nil
	}
	return a.Stats()
}

func (j *fleetJudge) setActive(a bool) {
	j.mu.Lock()
	j.active = a
	j.mu.Unlock()
	if a {
		j.gauges.active.Set(1)
	} else {
		j.gauges.active.Set(0)
	}
}

// okText is what a healthy judge's /healthz says: a judge reads no logs.
func (j *fleetJudge) okText() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.active {
		return "ok: active judge: every live node's attempt rows are read and judged, incidents are written, alerts are delivered"
	}
	return "ok: standby judge: the database answers and another judge holds the judge lease; this one takes over when that one stops"
}

// check is one failing health check: its name in
// spraywatch_health_failing{check} and what /healthz says of it.
type check struct{ name, text string }

// setHealth sets what /healthz says and which spraywatch_health_failing
// gauges are 1: the checks given (database, quiet:<node>) and, on the
// active judge, alerts:<destination> for a destination that has failed
// every delivery for sink_failing_for. A check no longer failing goes back
// to 0; a quiet node's is dropped, so a retired node leaves no series.
func (j *fleetJudge) setHealth(checks []check) {
	now := time.Now()
	j.mu.Lock()
	a := j.alerts
	j.mu.Unlock()
	failing := map[string]bool{}
	var problems []string
	for _, c := range checks {
		failing[c.name] = true
		problems = append(problems, c.text)
	}
	if a != nil && j.health != nil {
		for dest, f := range j.health.judgeSinks(a.Stats(), j.cfg.Health.SinkFailingFor, now) {
			failing["alerts:"+dest] = f
		}
		problems = append(problems, j.health.problems(j.cfg.Health.SinkFailingFor, now)...)
	}
	j.mu.Lock()
	j.problems = problems
	j.mu.Unlock()
	if j.metrics == nil { // not serving yet
		return
	}
	for name := range j.failing {
		if !failing[name] {
			if strings.HasPrefix(name, "quiet:") {
				j.metrics.failing.DeleteLabelValues(name)
			} else {
				j.metrics.setFailing(name, false)
			}
		}
	}
	for name, f := range failing {
		j.metrics.setFailing(name, f)
	}
	j.failing = failing
}

// healthy: a standby is healthy; the active judge is, while every node
// flushes and the database answers.
func (j *fleetJudge) healthy() (bool, []string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.problems) > 0 {
		return false, append([]string(nil), j.problems...)
	}
	return true, nil
}
