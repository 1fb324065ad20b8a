package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"

	"github.com/spraywatch/spraywatch/alert"
	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/detect/postgres"
	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/ingest/tail"
	"github.com/spraywatch/spraywatch/rules"
)

func newRunCmd(g *globals) *cobra.Command {
	var config, role string
	c := &cobra.Command{
		Use:   "run",
		Short: "Tail the configured logs and raise incidents as attacks happen",
		Long: `run follows every configured source through log rotation (rename, copytruncate,
symlink swaps, delete and recreate, new files matching a glob), counts each
line exactly once, and raises incidents on event time exactly as replay does.
Counts, incidents and read positions are written in one transaction, so a
crash neither loses nor double-counts a line; on start the windows and open
incidents are rebuilt from the database.

Signals: SIGHUP reloads the config (a bad one is rejected and the old one
kept); SIGTERM or SIGINT stops reading, writes counts and positions, and
exits 0; a second one forces exit. Under systemd (Type=notify) it reports
READY, RELOADING, STOPPING and watchdog pings.

Roles, for a fleet of nodes sharing a PostgreSQL database (database: a
postgres:// URL): --role agent tails this node's logs and writes its
per-minute attempt rows and positions, judging nothing; --role judge reads
every node's rows, judges their union, keeps the incidents and delivers the
alerts (one is active at a time, others stand by); --role all (the default)
does everything in one process, on SQLite or PostgreSQL.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch role {
			case roleAll, roleAgent, roleJudge:
			default:
				return fmt.Errorf("%w: --role: %q: must be all, agent or judge", errUsage, role)
			}
			return runDaemon(cmd.Context(), g, config, role, cmd.Flags().Changed("log-level"), cmd.Flags().Changed("log-format"))
		},
	}
	c.Flags().StringVarP(&config, "config", "c", "/etc/spraywatch/spraywatch.yml", "config file")
	c.Flags().StringVar(&role, "role", roleAll, "all (one node), agent (count this node's logs into PostgreSQL) or judge (judge the fleet)")
	return c
}

// lineBatch is lines of one source on their way to the detector. Text
// points into buf. The reader parses them before it hands them over (on
// its own goroutine, so parsing overlaps counting): evs[i] and errs[i] are
// line i's event and parse error.
type lineBatch struct {
	source string
	lines  []tail.Line
	buf    []byte
	evs    []ingest.Event
	errs   []error
	parsed bool
}

// parse parses every line that holds text, with p (nil: none is parsed,
// and the detector counts them as lines without a parser).
func (b *lineBatch) parse(p *ingest.Parser) {
	if p == nil {
		return
	}
	b.evs = slices.Grow(b.evs[:0], len(b.lines))[:len(b.lines)]
	b.errs = slices.Grow(b.errs[:0], len(b.lines))[:len(b.lines)]
	for i := range b.lines {
		l := &b.lines[i]
		if l.PositionOnly || l.TooLong {
			continue
		}
		b.errs[i] = p.Parse(l.Text, &b.evs[i])
	}
	b.parsed = true
}

func (b *lineBatch) add(l *tail.Line) {
	c := *l
	if l.Text != nil {
		start := len(b.buf)
		b.buf = append(b.buf, l.Text...)
		c.Text = b.buf[start:len(b.buf):len(b.buf)]
	}
	if l.Extra != nil {
		x := *l.Extra
		c.Extra = &x
	}
	b.lines = append(b.lines, c)
}

// batchLines is how many lines a reader hands over at a time.
const batchLines = 1024

// batchPool keeps consumed batches for the readers to fill again: under a
// flood a reader fills hundreds a second, and growing a fresh buffer for
// each is most of the garbage of reading.
var batchPool = sync.Pool{New: func() any {
	return &lineBatch{lines: make([]tail.Line, 0, batchLines), buf: make([]byte, 0, batchLines*192)}
}}

func newBatch(source string) *lineBatch {
	b := batchPool.Get().(*lineBatch)
	b.source = source
	return b
}

// release gives a consumed batch back to the pool: nothing may hold on to
// its lines afterwards.
func (b *lineBatch) release() {
	clear(b.lines)
	clear(b.evs)
	clear(b.errs)
	b.lines, b.buf, b.evs, b.errs, b.parsed = b.lines[:0], b.buf[:0], b.evs[:0], b.errs[:0], false
	if cap(b.buf) <= 4*batchLines*192 { // not a batch of huge lines
		batchPool.Put(b)
	}
}

// fix re-points Text into buf after appends moved it.
func (b *lineBatch) fix() {
	off := 0
	for i := range b.lines {
		if t := b.lines[i].Text; t != nil {
			b.lines[i].Text = b.buf[off : off+len(t) : off+len(t)]
			off += len(t)
		}
	}
}

type posKey struct{ source, key string }

// runner is the daemon's state; everything but the readers runs on the
// goroutine of loop.
type runner struct {
	g          *globals
	configPath string
	level      *slog.LevelVar
	log        *slog.Logger
	cfg        Config
	secret     []byte
	role       string
	store      store
	engine     *rules.Engine // nil for an agent
	// det is what lines are fed to: the engine, or an agent's counter.
	det     detector
	alerts  *alerting
	metrics *metrics
	// agent is the fleet store of --role agent, else nil.
	agent *agentStore
	// flushFailed: the last flush failed (reading stops at maxPending).
	flushFailed bool
	// writer writes the engine's batches (nil for an agent, which writes
	// on this goroutine); inFlight is the batch it is writing.
	writer   *writer
	inFlight *flushJob

	parsers   map[string]*ingest.Parser
	positions map[posKey]detect.Position
	dirtyPos  map[posKey]bool
	// held counts, per source, the lines the detector holds back as dated
	// ahead of the source's others; while it holds any (waiting), the
	// source's positions wait in waitPos (see notePos).
	held    map[string]int64
	waiting map[string]bool
	waitPos map[posKey]tail.Position

	readers    *readers
	clocks     map[string]*sourceClock
	lastFlush  time.Time
	incidents  int64
	watchdog   time.Duration
	lastPinged time.Time
	// lastRetention is when old attempt rows were last deleted.
	lastRetention time.Time
	engineSeen    engineSeen
	levelFlag     string // --log-level, which wins over the config

	health *health
	// committed are the positions of the last good write: a database
	// that replaces a corrupt one resumes from them.
	committed map[posKey]detect.Position
	corrupt   bool // the database is corrupt: reading stopped
	dbIno     uint64
	lastCheck time.Time
}

// errDBReplaced ends a session: the corrupt database was replaced.
var errDBReplaced = errors.New("database replaced")

func runDaemon(ctx context.Context, g *globals, path, role string, levelFlag, formatFlag bool) error {
	cfg, err := LoadConfig(path)
	if err != nil {
		return err
	}
	if role != roleAll && !postgres.IsURL(cfg.Database) {
		return fmt.Errorf("%w: database: --role %s needs a postgres:// URL shared by the fleet", errConfig, role)
	}
	if len(cfg.Sources) == 0 {
		return fmt.Errorf("%w: sources: []: run needs at least one source", errConfig)
	}
	r := &runner{g: g, configPath: path, cfg: cfg, role: role, level: new(slog.LevelVar), positions: map[posKey]detect.Position{}, dirtyPos: map[posKey]bool{}}
	if levelFlag {
		cfg.Log.Level = g.logLevel
		r.levelFlag = g.logLevel
	}
	if formatFlag {
		cfg.Log.Format = g.logFormat
	}
	r.level.Set(parseLevel(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: r.level}
	if cfg.Log.Format == "json" {
		r.log = slog.New(slog.NewJSONHandler(g.stderr, opts))
	} else {
		r.log = slog.New(slog.NewTextHandler(g.stderr, opts))
	}
	defer governMemory(int64(cfg.MemoryLimitMB) << 20).Stop()
	if role == roleAll {
		r.secret, err = loadSecret(cfg.FingerprintSecretFile)
	} else {
		r.secret, err = fleetSecret(cfg)
	}
	if err != nil {
		return err
	}
	if err := r.buildParsers(cfg); err != nil {
		return err
	}
	if role == roleJudge {
		return runJudge(ctx, g, cfg, r.noCredential(), r.log)
	}
	if role == roleAgent {
		warnAgentAlerts(cfg, r.log)
	}
	r.health, r.committed = newHealth(), map[posKey]detect.Position{}
	r.metrics = newMetrics()
	if role == roleAgent {
		r.metrics.okText = func() string {
			return "ok: agent: every source is being read and its counts and positions are written to the fleet database (the judges alert)"
		}
	}
	r.metrics.watchSinks(func() []alert.DestinationStats {
		if a := r.currentAlerts(); a != nil {
			return a.Stats()
		}
		return nil
	})
	if cfg.MetricsListen != "" {
		stop, err := r.metrics.serve(cfg.MetricsListen, r.healthy, r.log)
		if err != nil {
			return err
		}
		defer stop()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go forceExitOnSecondSignal(ctx, r.log)
	for {
		err := r.session(ctx, hup)
		if !errors.Is(err, errDBReplaced) {
			return err
		}
		r.log.Warn("the corrupt database was replaced; starting again from the new one", "database", r.cfg.Database)
	}
}

// session runs the daemon on one opening of the database.
func (r *runner) session(ctx context.Context, hup chan os.Signal) error {
	cfg := r.cfg
	var err error
	r.corrupt = false
	if r.role == roleAgent {
		if r.agent, err = openAgentStore(ctx, cfg, r.log, r.metrics.incidents); err != nil {
			return err
		}
		defer r.agent.Close()
		r.store, r.engine = r.agent.Store, nil
		r.det = newCounter(rules.NewEngine(rules.Options{Config: cfg.Rules, Allow: cfg.AllowList(), NoCredential: r.noCredential(),
			MaxGroups: cfg.MaxGroups, MaxEntries: cfg.MaxEntries, MaxIncidentSet: cfg.MaxIncidentSet, Logger: agentLineLog(r.log)}))
		r.engineSeen = engineSeen{} // a new engine counts from 0
	} else {
		// A small page cache: the daemon writes a second's lines at a time and
		// bounds its memory (replay keeps the large default).
		if r.store, err = openStore(ctx, cfg, nodeName(cfg), detect.StoreOptions{CacheKiB: 8192}); err != nil {
			return err
		}
		defer r.store.Close()
		if fi, err := os.Stat(cfg.Database); err == nil && !postgres.IsURL(cfg.Database) {
			r.dbIno = inodeOf(fi)
		}
		r.engine = rules.NewEngine(rules.Options{Config: cfg.Rules, Allow: cfg.AllowList(), NoCredential: r.noCredential(),
			MaxGroups: cfg.MaxGroups, MaxEntries: cfg.MaxEntries, MaxIncidentSet: cfg.MaxIncidentSet, Logger: r.log})
		if err := r.engine.Restore(ctx, r.store); err != nil {
			return err
		}
		r.det = r.engine
		r.writer, r.inFlight = startWriter(context.WithoutCancel(ctx), r.store), nil
		defer func() {
			r.writer.stop()
			r.writer = nil
		}()
	}
	r.clocks = map[string]*sourceClock{}
	r.addClocks()
	saved, err := r.store.Positions(ctx)
	if err != nil {
		return err
	}
	// Positions of the last good write to a database since replaced
	// (corrupt) come first: the lines after them were never stored.
	r.positions, r.dirtyPos = map[posKey]detect.Position{}, map[posKey]bool{}
	r.held, r.waiting, r.waitPos = map[string]int64{}, map[string]bool{}, map[posKey]tail.Position{}
	for _, p := range saved {
		r.positions[posKey{p.Source, p.Path}] = p
	}
	for k, p := range r.committed {
		if _, ok := r.positions[k]; !ok {
			r.positions[k], r.dirtyPos[k] = p, true
		}
	}
	if r.engine != nil { // an agent raises nothing to alert on
		alertCtx, stopAlerts := context.WithCancel(context.WithoutCancel(ctx))
		alerts, err := newAlerting(cfg, r.store, r.log, r.g.stdout)
		if err != nil {
			stopAlerts()
			return err
		}
		r.setAlerts(alerts)
		alertsDone := make(chan error, 1)
		go func() { alertsDone <- alerts.Run(alertCtx) }()
		defer func() {
			stopAlerts()
			<-alertsDone
		}()
	}

	r.setReaders(r.startReaders(ctx))
	r.watchdog, _ = daemon.SdWatchdogEnabled(false)
	_, _ = daemon.SdNotify(false, daemon.SdNotifyReady)
	r.log.Info("spraywatch running", "role", r.role, "sources", len(cfg.Sources), "database", databaseForLog(cfg.Database), "restored_watermark", r.det.Watermark().UTC())
	err = r.loop(ctx, hup)
	if errors.Is(err, errDBReplaced) {
		return err
	}
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	// Stop the readers first, count what they already handed over, then
	// write counts and positions last.
	r.stopReaders()
	// Judge what the last lines changed.
	r.settleHeld(cfg.Sources[0].Name, func() { r.det.TickSource(cfg.Sources[0].Name, time.Time{}) })
	if r.corrupt {
		err = fmt.Errorf("database %s is corrupt; nothing read since the last good write was stored, and it is read again once the database is replaced", cfg.Database)
	} else if ferr := r.flushRetry(context.WithoutCancel(ctx)); ferr != nil && err == nil {
		err = ferr
	}
	if err != nil {
		r.log.Error("spraywatch stopped", "err", err)
	} else {
		r.log.Info("spraywatch stopped: counts and positions written")
	}
	return err
}

func inodeOf(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// replaced reports whether the database file is no longer the one opened
// (moved aside, deleted, or another file put in its place).
func (r *runner) replaced() bool {
	fi, err := os.Stat(r.cfg.Database)
	return err != nil || inodeOf(fi) != r.dbIno
}

func parseLevel(s string) slog.Level {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return lvl
}

// forceExitOnSecondSignal exits at once on a signal after shutdown began.
func forceExitOnSecondSignal(ctx context.Context, log *slog.Logger) {
	<-ctx.Done()
	c := make(chan os.Signal, 1)
	signal.Notify(c, os.Interrupt, syscall.SIGTERM)
	<-c
	log.Error("second signal: exiting without writing counts (they are read again on start)")
	os.Exit(exitRuntime)
}

func (r *runner) buildParsers(cfg Config) error {
	parsers := map[string]*ingest.Parser{}
	for _, s := range cfg.Sources {
		o, err := s.options(r.secret)
		if err != nil {
			return fmt.Errorf("%w: source %s: %w", errConfig, s.Name, err)
		}
		p, err := ingest.NewParser(o)
		if err != nil {
			return fmt.Errorf("%w: source %s: %w", errConfig, s.Name, err)
		}
		parsers[s.Name] = p
	}
	r.parsers = parsers
	return nil
}

func (r *runner) noCredential() map[string]bool {
	m := map[string]bool{}
	for name, p := range r.parsers {
		m[name] = !p.HasCredential()
	}
	return m
}

// readers are the tailer goroutines of every source.
type readers struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	lines   chan *lineBatch
	mu      sync.Mutex
	tailers map[string]*tail.Tailer
}

func (r *runner) startReaders(parent context.Context) *readers {
	ctx, cancel := context.WithCancel(parent)
	rd := &readers{cancel: cancel, lines: make(chan *lineBatch, 16), tailers: map[string]*tail.Tailer{}}
	for _, src := range r.cfg.Sources {
		var saved []tail.Position
		for k, p := range r.positions {
			if _, ok := r.waitPos[k]; !ok && k.source == src.Name {
				saved = append(saved, tail.Position{Key: p.Path, Dev: p.Dev, Inode: p.Inode, Head: p.Head, Offset: p.Offset})
			}
		}
		// Readers restarted in a session go on from where they were,
		// past lines the detector still holds (it counts them).
		for k, p := range r.waitPos {
			if k.source == src.Name {
				saved = append(saved, p)
			}
		}
		t := tail.New(tail.Options{Patterns: src.Paths, Positions: saved, StartAtEnd: r.cfg.StartAt == "end" && len(saved) == 0,
			RotateWait: r.cfg.RotateWait, MaxLineBytes: r.cfg.MaxLineBytes, Logger: r.log.With("source", src.Name)})
		rd.tailers[src.Name] = t
		rd.wg.Add(1)
		p := r.parsers[src.Name]
		go func() {
			defer rd.wg.Done()
			r.read(ctx, src.Name, src.Paths, t, p, rd.lines)
		}()
	}
	return rd
}

// read runs one source's tailer, handing lines over in batches parsed by p.
func (r *runner) read(ctx context.Context, source string, patterns []string, t *tail.Tailer, p *ingest.Parser, out chan<- *lineBatch) {
	defer t.Close()
	// File events wake the tailer at once; the poll stays as the
	// fallback for what events miss.
	var wake <-chan struct{}
	var watch *tail.Watch
	if r.cfg.FileEvents {
		w, err := tail.NewWatch(patterns, r.log.With("source", source))
		if err != nil {
			r.log.Warn("file events unavailable; polling every poll_interval", "source", source, "err", err)
		} else {
			defer w.Close()
			watch, wake = w, w.C()
		}
	}
	b := newBatch(source)
	defer func() { b.release() }()
	send := func() error {
		if len(b.lines) == 0 {
			return nil
		}
		b.fix()
		b.parse(p)
		select {
		case out <- b:
		case <-ctx.Done():
			return ctx.Err()
		}
		b = newBatch(source)
		return nil
	}
	emit := func(l *tail.Line) error {
		b.add(l)
		if len(b.lines) >= batchLines {
			return send()
		}
		return nil
	}
	tick := time.NewTicker(r.cfg.PollInterval)
	defer tick.Stop()
	for {
		if err := t.Tick(ctx, time.Now(), emit); err != nil {
			return // cancelled: unsent lines were not counted and are read again
		}
		if send() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if watch != nil {
				watch.Refresh(patterns)
			}
		case <-wake:
		}
	}
}

// stopReaders stops the tailers and counts the batches they had sent.
func (r *runner) stopReaders() {
	rd := r.readers
	rd.cancel()
	done := make(chan struct{})
	go func() {
		rd.wg.Wait()
		close(done)
	}()
	for {
		select {
		case b := <-rd.lines:
			r.consume(b)
		case <-done:
			for {
				select {
				case b := <-rd.lines:
					r.consume(b)
				default:
					return
				}
			}
		}
	}
}

// loop is the detector: it counts lines, judges on a wall-clock tick, and
// writes everything in one transaction every flush interval.
func (r *runner) loop(ctx context.Context, hup <-chan os.Signal) error {
	tick := time.NewTicker(min(250*time.Millisecond, r.cfg.FlushInterval))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case b := <-r.lines():
			r.consume(b)
			// A new incident is written (and alerted) at once.
			if (r.det.Pending() >= flushAt || r.newIncidents()) && !r.corrupt {
				r.startFlush(ctx)
			}
		case j := <-r.flushDone():
			r.flushed(j)
			if (r.det.Pending() >= flushAt || r.newIncidents()) && !r.corrupt && !r.flushFailed {
				r.startFlush(ctx)
			}
		case <-hup:
			r.reload(ctx)
		case now := <-tick.C:
			if r.corrupt {
				r.observeMetrics(now)
				if now.Sub(r.lastCheck) >= time.Second {
					r.lastCheck = now
					r.flush(ctx) // logged and counted while it lasts
					if r.replaced() {
						return errDBReplaced
					}
				}
				continue
			}
			r.tickClocks(now)
			if r.newIncidents() || now.Sub(r.lastFlush) >= r.cfg.FlushInterval {
				r.startFlush(ctx)
			}
			r.observeMetrics(now)
			if now.Sub(r.lastRetention) >= time.Hour && r.engine != nil { // in a fleet the judge keeps retention
				r.enforceRetention(ctx)
				r.lastRetention = now
			}
			if r.watchdog > 0 && now.Sub(r.lastPinged) >= r.watchdog/3 {
				_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
				r.lastPinged = now
			}
		}
	}
}

// maxPending is how many attempt rows wait in memory before a flush is
// forced; while flushes fail, or the last batch is still being written, no
// more lines are read past it (the files keep them, and the positions say
// where to go on).
const maxPending = 100_000

// flushAt is how many attempt rows start a flush before the flush interval
// is up: small batches keep the pending aggregate, and so the heap the
// collector scans, small under a flood.
const flushAt = 25_000

// lines is the readers' channel, or nil (no reading) while flushes fail
// or one is in flight, and maxPending rows wait.
func (r *runner) lines() <-chan *lineBatch {
	if r.det.Pending() >= maxPending && (r.flushFailed || r.inFlight != nil) {
		return nil
	}
	return r.readers.lines
}

// newIncidents reports whether the engine raised incidents not yet written.
func (r *runner) newIncidents() bool {
	return r.engine != nil && r.engine.Counters.Incidents != r.incidents
}

// futureSlack is how far ahead of this machine's clock a line may be dated.
const futureSlack = 24 * time.Hour

// enforceRetention drops attempt rows older than the retention before the
// latest event time; the windows never need them again.
func (r *runner) enforceRetention(ctx context.Context) {
	cut := r.engine.Watermark().Add(-r.cfg.Retention)
	if n, err := r.store.DeleteAttemptsBefore(ctx, cut); err != nil {
		r.log.Warn("old attempt rows not deleted; will retry", "err", err)
	} else if n > 0 {
		r.log.Info("old attempt rows deleted", "rows", n, "before", cut)
	}
}

// addClocks starts the clocks of sources that have none, from their
// restored event time.
func (r *runner) addClocks() {
	for _, s := range r.cfg.Sources {
		if r.clocks[s.Name] == nil {
			c := &sourceClock{wall: time.Now()}
			if t := r.det.SourceWatermark(s.Name); t.Unix() > 0 {
				c.last = t
			}
			r.clocks[s.Name] = c
		}
	}
}

// sourceClock is what moves a source's event time on while its files are
// quiet.
type sourceClock struct {
	last   time.Time // the source's newest event time
	wall   time.Time // wall time it was read
	behind int64     // bytes not read yet, at the last tick
}

// tickClocks moves each caught-up source's event time on by the wall time
// since its newest line, held back by the lateness so that a late line
// still finds its window, and judges what changed. A source still reading
// a backlog keeps the time of its lines.
func (r *runner) tickClocks(now time.Time) {
	for name, c := range r.clocks {
		at := time.Time{}
		if c.behind == 0 && !c.last.IsZero() {
			at = c.last.Add(now.Sub(c.wall) - r.cfg.Lateness)
		}
		r.settleHeld(name, func() { r.det.TickSource(name, at) })
	}
}

// consume counts a batch its reader parsed, and moves the positions past it.
func (r *runner) consume(b *lineBatch) {
	m := r.metrics.source(b.source)
	now := time.Now()
	// A run of lines of one path keeps only its last position (nothing is
	// flushed while a batch is consumed); positions are noted in line
	// order, and those of lines the detector holds back wait with them.
	var last *tail.Position
	for i := range b.lines {
		l := &b.lines[i]
		if h := r.countLine(b, i, m, now); h.settled || h.started {
			if last != nil {
				r.notePos(b.source, *last)
				last = nil
			}
			if h.settled {
				r.releasePos(b.source)
			}
			if h.started {
				r.waiting[b.source] = true
			}
		}
		if last != nil && (last.Key != l.Pos.Key || l.Extra != nil) {
			r.notePos(b.source, *last)
		}
		last = &l.Pos
		if l.Extra != nil {
			r.notePos(b.source, l.Pos)
			r.notePos(b.source, *l.Extra)
			last = nil
		}
	}
	if last != nil {
		r.notePos(b.source, *last)
	}
	// Lines held back as dated ahead of the source's others are counted
	// now unless they are dated ahead of this machine's clock; their
	// positions move only once they are counted or left out.
	r.settleHeld(b.source, func() { r.det.TakeHeld(b.source, now) })
	if c := r.clocks[b.source]; c != nil {
		if w := r.det.SourceWatermark(b.source); w.After(c.last) {
			c.last = w
		}
	}
	// Judge at once: an incident is raised within a poll of its line.
	r.settleHeld(b.source, func() { r.det.TickSource(b.source, time.Time{}) })
	b.release()
}

// held is what counting a line did to the lines its source's detector
// holds back (rules/clock.go: dated ahead of the source's others).
type held struct {
	// settled: the lines held before it were counted or left out.
	settled bool
	// started: it is the first of a new run of held lines.
	started bool
}

// countLine counts line i of b (or skips it, with the reason), and reports
// what that did to the lines held back.
func (r *runner) countLine(b *lineBatch, i int, m *sourceMetrics, now time.Time) held {
	l := &b.lines[i]
	if l.PositionOnly {
		return held{}
	}
	m.read.Inc()
	if l.TooLong {
		m.skipped(ingest.ErrTooLong.Error())
		r.health.line(b.source, false, false, ingest.ErrTooLong.Error(), nil)
		return held{}
	}
	if !b.parsed {
		m.skipped("no_parser")
		r.health.line(b.source, false, false, "no_parser", nil)
		return held{}
	}
	ev, err := &b.evs[i], b.errs[i]
	switch {
	case err == nil && ev.Time.After(now.Add(futureSlack)):
		// A line dated far ahead (a broken clock, a forged line) must
		// not drag the source's event time away from its real lines.
		m.skipped(ingest.ErrFuture.Error())
		r.health.line(b.source, false, true, "", nil)
		return held{}
	case err == nil:
	case ingest.IsFiltered(err): // route filters, joined flask lines, banners
		m.parsed.Inc()
		m.skipped(err.Error())
		r.health.line(b.source, false, true, err.Error(), l.Text)
		return held{}
	default:
		m.skipped(err.Error())
		r.health.line(b.source, false, false, err.Error(), l.Text)
		return held{}
	}
	r.health.line(b.source, true, true, "", nil)
	m.parsed.Inc()
	ev.Pos = ingest.Pos{File: l.File, Inode: l.Pos.Inode, Offset: l.Offset}
	if ev.Time.Before(r.det.SourceWatermark(b.source).Add(-r.cfg.Lateness)) {
		m.late.Inc()
	}
	before, was := r.linesSettled(), r.held[b.source]
	r.det.Observe(ev)
	d := r.linesSettled() - before
	r.held[b.source] = max(0, was+1-d)
	if c := r.clocks[b.source]; c != nil {
		// The engine's clock, not the line's: a line dated ahead of
		// the source's others does not move it (rules/clock.go).
		if w := r.det.SourceWatermark(b.source); w.After(c.last) {
			c.last = w
		}
		c.wall = now
	}
	m.lastEvent = ev.Time
	// Held lines are counted or left out all at once (with the line
	// that confirms or contradicts them).
	h := held{settled: was > 0 && d >= was}
	h.started = r.held[b.source] > 0 && (was == 0 || h.settled)
	return h
}

// linesSettled is how many of the lines given to the detector it has
// counted or left out (rules.Counters: Events, Ahead); the others it
// holds back as dated ahead of their source's other lines.
func (r *runner) linesSettled() int64 {
	e := r.engine
	if c, ok := r.det.(*counter); ok {
		e = c.lines
	}
	if e == nil {
		return 0
	}
	return e.Events + e.Ahead
}

// settleHeld runs do, which may count or leave out the lines source's
// detector holds back (and only those of source), and moves the source's
// positions past them if it did.
func (r *runner) settleHeld(source string, do func()) {
	before := r.linesSettled()
	do()
	if d := r.linesSettled() - before; d > 0 && r.held[source] > 0 {
		r.held[source] = max(0, r.held[source]-d)
		if r.held[source] == 0 {
			r.releasePos(source)
		}
	}
}

// notePos moves a source's position, or, while the detector holds back
// lines of the source, keeps it until they are counted or left out: a
// position saved past a held line would lose it to a restart (its count
// is not in the database yet), while no line after it is counted before
// it is (the detector holds or drops them all).
func (r *runner) notePos(source string, p tail.Position) {
	if r.waiting[source] {
		r.waitPos[posKey{source, p.Key}] = p
		return
	}
	r.setPos(source, p)
}

// releasePos moves the positions that waited behind a source's held lines.
func (r *runner) releasePos(source string) {
	r.waiting[source] = false
	for k, p := range r.waitPos {
		if k.source == source {
			r.setPos(source, p)
			delete(r.waitPos, k)
		}
	}
}

func (r *runner) setPos(source string, p tail.Position) {
	k := posKey{source, p.Key}
	r.positions[k] = detect.Position{Source: source, Path: p.Key, Dev: p.Dev, Inode: p.Inode, Head: p.Head, Offset: p.Offset}
	r.dirtyPos[k] = true
}

// flushJob is one batch on its way to the writer goroutine: the engine's
// pending counts and changed incidents with the positions of the lines they
// cover, written in one transaction.
type flushJob struct {
	b         detect.Batch
	snaps     []detect.Incident
	pos       []detect.Position
	incidents int64 // the engine's incident counter when the batch was taken
	err       error
}

// writer flushes batches on its own goroutine, so that the detector goes on
// counting the next lines while SQLite writes the last ones. At most one
// batch is in flight: the next is taken only when it is done.
type writer struct {
	jobs chan *flushJob
	done chan *flushJob
	wg   sync.WaitGroup
}

func startWriter(ctx context.Context, s rules.Flusher) *writer {
	w := &writer{jobs: make(chan *flushJob, 1), done: make(chan *flushJob, 1)}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for j := range w.jobs {
			j.err = s.Flush(ctx, j.b)
			w.done <- j
		}
	}()
	return w
}

// stop ends the writer goroutine; a batch still in flight is waited for.
func (w *writer) stop() {
	close(w.jobs)
	go func() {
		for range w.done {
		}
	}()
	w.wg.Wait()
	close(w.done)
}

// takePositions returns the positions moved since the last flush began, and
// forgets that they moved: a failed flush marks them again.
func (r *runner) takePositions() []detect.Position {
	pos := make([]detect.Position, 0, len(r.dirtyPos))
	for k := range r.dirtyPos {
		pos = append(pos, r.positions[k])
	}
	sort.Slice(pos, func(i, j int) bool { return pos[i].Path < pos[j].Path })
	clear(r.dirtyPos)
	return pos
}

// startFlush hands what is pending to the writer goroutine, unless a batch
// is still in flight. An agent writes at once.
func (r *runner) startFlush(ctx context.Context) {
	if r.writer == nil {
		r.flush(ctx)
		return
	}
	if r.inFlight != nil {
		return
	}
	j := &flushJob{pos: r.takePositions(), incidents: r.engine.Counters.Incidents}
	j.b, j.snaps = r.engine.TakeBatch(detect.Batch{Positions: j.pos, Extra: r.alerts.Enqueue})
	r.inFlight = j
	r.lastFlush = time.Now()
	r.writer.jobs <- j
}

// flushDone is the writer's channel of finished batches, or nil when no
// batch is in flight.
func (r *runner) flushDone() <-chan *flushJob {
	if r.inFlight == nil {
		return nil
	}
	return r.writer.done
}

// awaitFlush waits for the batch in flight, if any, and returns its error.
func (r *runner) awaitFlush() error {
	if r.inFlight == nil {
		return nil
	}
	j := <-r.writer.done
	return r.flushed(j)
}

// flushed takes a finished batch: on failure its counts and incidents go
// back into the engine and its positions are marked to be written again
// (with whatever lines came since), so nothing is lost or counted twice.
func (r *runner) flushed(j *flushJob) error {
	r.inFlight = nil
	if j.err != nil {
		r.engine.Requeue(j.b)
	} else {
		r.engine.Recycle(j.b.Attempts)
	}
	return r.noteFlush(j.pos, j.snaps, j.incidents, j.err)
}

// flush writes counts, changed incidents and positions in one transaction
// and waits for it.
func (r *runner) flush(ctx context.Context) error {
	if r.agent != nil {
		pos := r.takePositions()
		err := r.agent.flush(ctx, r.det.(*counter), pos, r.clocks, r.cfg.FlushInterval)
		r.lastFlush = time.Now()
		return r.noteFlush(pos, nil, 0, err)
	}
	_ = r.awaitFlush() // noted; its batch is part of the next
	r.startFlush(ctx)
	return r.awaitFlush()
}

// noteFlush records how a write of pos (and snaps) went.
func (r *runner) noteFlush(pos []detect.Position, snaps []detect.Incident, incidents int64, err error) error {
	r.flushFailed = err != nil
	cause, hint := "", ""
	if err != nil {
		cause, hint = dbCause(err)
		r.metrics.flushErrors.Inc()
		r.metrics.dbErrors.WithLabelValues(cause).Inc()
	}
	r.health.mu.Lock()
	r.health.db.note(r.log.With("database", databaseForLog(r.cfg.Database)), "writing counts, incidents and positions", cause, hint, err, time.Now())
	r.health.mu.Unlock()
	r.metrics.setFailing("database", err != nil)
	if err != nil {
		for _, p := range pos {
			r.dirtyPos[posKey{p.Source, p.Path}] = true
		}
		if errors.Is(err, detect.ErrCorrupt) && !r.corrupt {
			// Stop reading: the positions stay where the last good
			// write left them, so what was read since is read again.
			r.corrupt = true
			r.stopReaders()
		}
		return err
	}
	for _, p := range pos {
		r.committed[posKey{p.Source, p.Path}] = p
	}
	if r.engine == nil {
		return nil
	}
	r.incidents = incidents
	for _, s := range snaps {
		if s.Version == 1 {
			r.metrics.incidents.WithLabelValues(s.Kind).Inc()
		}
	}
	return nil
}

// flushRetry is the last flush, retried briefly if the database is busy.
func (r *runner) flushRetry(ctx context.Context) error {
	var err error
	for i := 0; i < 5; i++ {
		if err = r.flush(ctx); err == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return err
}

// reload reads the config again. Rules, the allow list, parsing and log
// level change in place, keeping windows and incidents; the readers are
// restarted from the positions just written, so no line is lost or read
// twice. A bad config is rejected and the old one stays.
func (r *runner) reload(ctx context.Context) {
	_, _ = daemon.SdNotify(false, daemon.SdNotifyReloading+"\n"+daemon.SdNotifyMonotonicUsec())
	defer daemon.SdNotify(false, daemon.SdNotifyReady)
	cfg, err := LoadConfig(r.configPath)
	if err == nil && len(cfg.Sources) == 0 {
		err = fmt.Errorf("%w: sources: []: run needs at least one source", errConfig)
	}
	if err != nil {
		r.metrics.reloads.WithLabelValues("rejected").Inc()
		r.log.Error("config rejected on reload; keeping the old one", "config", r.configPath, "err", err)
		return
	}
	old := r.parsers
	if err := r.buildParsers(cfg); err != nil {
		r.parsers = old
		r.metrics.reloads.WithLabelValues("rejected").Inc()
		r.log.Error("config rejected on reload; keeping the old one", "config", r.configPath, "err", err)
		return
	}
	for _, what := range []struct {
		name     string
		old, new any
	}{{"database", r.cfg.Database, cfg.Database}, {"metrics_listen", r.cfg.MetricsListen, cfg.MetricsListen},
		{"fingerprint_secret_file", r.cfg.FingerprintSecretFile, cfg.FingerprintSecretFile}, {"max_groups", r.cfg.MaxGroups, cfg.MaxGroups},
		{"max_entries", r.cfg.MaxEntries, cfg.MaxEntries}, {"max_incident_set", r.cfg.MaxIncidentSet, cfg.MaxIncidentSet}} {
		if fmt.Sprint(what.old) != fmt.Sprint(what.new) {
			r.log.Warn("this setting changes only on restart", "field", what.name)
		}
	}
	if fmt.Sprint(r.cfg.Alerts) != fmt.Sprint(cfg.Alerts) {
		r.log.Warn("this setting changes only on restart", "field", "alerts")
	}
	r.stopReaders()
	if err := r.flush(ctx); err != nil {
		r.log.Error("positions not written before restarting readers", "err", err)
	}
	keep := r.cfg
	r.cfg = cfg
	r.cfg.Database, r.cfg.MetricsListen, r.cfg.FingerprintSecretFile, r.cfg.Alerts =
		keep.Database, keep.MetricsListen, keep.FingerprintSecretFile, keep.Alerts
	r.cfg.MaxGroups, r.cfg.MaxEntries, r.cfg.MaxIncidentSet = keep.MaxGroups, keep.MaxEntries, keep.MaxIncidentSet
	if r.engine != nil {
		r.engine.SetConfig(cfg.Rules, cfg.AllowList())
	}
	if c, ok := r.det.(*counter); ok { // an agent's line findings
		c.lines.SetConfig(cfg.Rules, cfg.AllowList())
	}
	r.addClocks()
	if r.levelFlag == "" {
		r.level.Set(parseLevel(cfg.Log.Level))
	}
	r.setReaders(r.startReaders(ctx))
	r.metrics.reloads.WithLabelValues("applied").Inc()
	r.log.Info("config reloaded", "config", r.configPath, "sources", len(cfg.Sources))
}

// healthy reports whether every source is being read: each has at least
// one file and none has a read error. It is safe from any goroutine.
func (r *runner) healthy() (bool, []string) {
	rd := r.currentReaders()
	if rd == nil {
		return false, []string{"starting"}
	}
	var problems []string
	rd.mu.Lock()
	defer rd.mu.Unlock()
	names := make([]string, 0, len(rd.tailers))
	for n := range rd.tailers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		st := rd.tailers[name].Status()
		if len(st) == 0 {
			msg := fmt.Sprintf("source %s: no file matches its paths", name)
			if why := rd.tailers[name].Unmatched(); len(why) > 0 {
				msg += " (" + strings.Join(why, "; ") + ")"
			}
			problems = append(problems, msg)
		}
		for _, s := range st {
			if s.Err != nil {
				problems = append(problems, fmt.Sprintf("source %s: %s: %v", name, s.Path, s.Err))
			}
		}
	}
	problems = append(problems, r.health.problems(r.cfg.Health.SinkFailingFor, time.Now())...)
	return len(problems) == 0, problems
}

var readersMu sync.Mutex

func (r *runner) setAlerts(a *alerting) {
	readersMu.Lock()
	defer readersMu.Unlock()
	r.alerts = a
}

func (r *runner) currentAlerts() *alerting {
	readersMu.Lock()
	defer readersMu.Unlock()
	return r.alerts
}

func (r *runner) setReaders(rd *readers) {
	readersMu.Lock()
	defer readersMu.Unlock()
	r.readers = rd
}

func (r *runner) currentReaders() *readers {
	readersMu.Lock()
	defer readersMu.Unlock()
	return r.readers
}

// observeMetrics copies the detector's and readers' state into gauges.
func (r *runner) observeMetrics(now time.Time) {
	if r.engine != nil {
		r.metrics.observeEngine(r.engine, &r.engineSeen, now, r.log)
	} else if c, ok := r.det.(*counter); ok { // an agent's line findings
		r.metrics.observeEngine(c.lines, &r.engineSeen, now, r.log)
	}
	r.observeReaders(now)
}

func (r *runner) observeReaders(now time.Time) {
	rd := r.readers
	rd.mu.Lock()
	defer rd.mu.Unlock()
	behindOf, secsOf := map[string]int64{}, map[string]float64{}
	defer func() {
		blind, lagging := r.health.judgeSources(r.cfg.Health, behindOf, secsOf, now, r.log)
		for name, b := range blind {
			r.metrics.setFailing("blind:"+name, b)
		}
		for name, b := range lagging {
			r.metrics.setFailing("behind:"+name, b)
		}
		if a := r.alerts; a != nil {
			for dest, b := range r.health.judgeSinks(a.Stats(), r.cfg.Health.SinkFailingFor, now) {
				r.metrics.setFailing("alerts:"+dest, b)
			}
		}
	}()
	for name, t := range rd.tailers {
		var behind int64
		st := t.Status()
		unreadable := len(st) == 0 // no file matches its paths
		for _, s := range st {
			behind += s.Behind
			unreadable = unreadable || s.Err != nil
		}
		r.metrics.setFailing("file:"+name, unreadable)
		m := r.metrics.source(name)
		m.bytesBehind.Set(float64(behind))
		if c := r.clocks[name]; c != nil {
			c.behind = behind
		}
		secs := 0.0
		if behind > 0 && !m.lastEvent.IsZero() {
			secs = max(0, now.Sub(m.lastEvent).Seconds())
		}
		m.secondsBehind.Set(secs)
		behindOf[name], secsOf[name] = behind, secs
	}
}
