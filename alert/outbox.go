package alert

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/spraywatch/spraywatch/detect"
)

const outboxSchema = `
CREATE TABLE IF NOT EXISTS alert_outbox (
	id          INTEGER PRIMARY KEY,
	destination TEXT NOT NULL,
	incident    INTEGER NOT NULL,   -- 0 for a storm summary
	version     INTEGER NOT NULL,
	kind        TEXT NOT NULL,
	source      TEXT NOT NULL,
	severity    TEXT NOT NULL,
	body        TEXT NOT NULL,      -- incident or summary JSON: labels only, never a raw key
	state       TEXT NOT NULL,      -- pending, sent, superseded, grouped, skipped, failed
	tries       INTEGER NOT NULL DEFAULT 0,
	due         INTEGER NOT NULL,   -- Unix ns: not before
	created     INTEGER NOT NULL,
	done        INTEGER NOT NULL DEFAULT 0,
	error       TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS alert_outbox_version ON alert_outbox(destination, incident, version) WHERE incident != 0;
CREATE INDEX IF NOT EXISTS alert_outbox_due ON alert_outbox(destination, state, due);
CREATE TABLE IF NOT EXISTS alert_threads (
	destination TEXT NOT NULL,
	incident    INTEGER NOT NULL,
	grouped     INTEGER NOT NULL DEFAULT 0, -- folded into a storm summary
	last_sent   INTEGER NOT NULL DEFAULT 0, -- Unix ns of the last message about it
	severity    TEXT NOT NULL DEFAULT '',   -- severity last sent
	channel     TEXT NOT NULL DEFAULT '',
	ref         TEXT NOT NULL DEFAULT '',   -- the sink's message ID (a Slack ts)
	PRIMARY KEY (destination, incident)
) WITHOUT ROWID;
`

// Outbox row states.
const (
	statePending    = "pending"
	stateSent       = "sent"
	stateSuperseded = "superseded"
	stateGrouped    = "grouped"
	stateSkipped    = "skipped"
	stateFailed     = "failed"
)

// OutboxOptions configure OpenOutbox.
type OutboxOptions struct {
	// Interval is the time between delivery rounds in Run; Enqueue also
	// wakes it. 0 turns Run's loop off: tests call Tick.
	Interval time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Rand returns a number in [0,1) for backoff jitter. Default math/rand/v2.
	Rand func() float64
	// BackoffBase and BackoffMax bound the retry delay after a transient
	// failure (5xx, timeout): base, 2*base, 4*base... up to max, each with
	// up to half taken off at random. Defaults 1s and 5m. The destination
	// backs off by its consecutive failures, and the row that failed by its
	// tries, so that one row that keeps failing does not hold back the
	// others.
	BackoffBase, BackoffMax time.Duration
	// SendTimeout bounds one delivery. Default 30s.
	SendTimeout time.Duration
	// DrainTimeout bounds the last delivery round Run makes when its
	// context ends. Default 5s.
	DrainTimeout time.Duration
	// AlertsCommand is the command a storm summary points people to; the
	// kind and source flags are added. Default "spraywatch alerts".
	AlertsCommand string
	// Keep is how long delivered rows stay in the outbox. Default 30 days.
	Keep   time.Duration
	Logger *slog.Logger
}

// DestinationOptions configure one destination of an outbox.
type DestinationOptions struct {
	// Rate is the most messages per second, with bursts of up to Rate.
	// Default 1.
	Rate float64
	// Cooldown is the least time between two messages about one incident;
	// an update due sooner waits (and is replaced by any newer version)
	// unless its severity rose. Default 5m; negative: none.
	Cooldown time.Duration
	// StormThreshold: when more than this many new incidents of one kind
	// and source are due at once, a Summarizer sink gets the first this many
	// and one summary for the rest. Default 5; negative: never group.
	StormThreshold int
	// OnlyEscalations sends an update of an incident already sent only when
	// its severity rose, for sinks that cannot edit what they posted (a Slack
	// incoming webhook), so that a growing incident does not post again.
	OnlyEscalations bool
	// EveryVersion delivers every version of an incident, in order: a
	// pending older version is never replaced by a newer one. For machine
	// readers that keep the history (stdout, a file, a SIEM's webhook),
	// where a dropped first version would hide when an incident began.
	EveryVersion bool
}

// DestinationStats are one destination's delivery counters, for metrics.
type DestinationStats struct {
	Destination string
	// Sent counts messages delivered, summaries included.
	Sent      int64
	Summaries int64
	// Grouped counts incidents folded into a summary instead of sent.
	Grouped int64
	// Deferred counts updates held back by the cooldown.
	Deferred int64
	// Retries counts transient failures (5xx, timeouts) that will be retried.
	Retries int64
	// RateLimited counts 429 answers.
	RateLimited int64
	// Misconfigured counts failures that mean the configuration is wrong;
	// the destination is then off until restart.
	Misconfigured int64
	// Rejected counts messages the destination refused and that were dropped.
	Rejected int64
	// Skipped counts updates not sent because the sink cannot edit and the
	// severity did not rise (OnlyEscalations).
	Skipped int64
	// Disabled is true once the destination was found misconfigured.
	Disabled bool
}

// Outbox delivers incidents to destinations from a table in the detection
// database. Enqueue writes rows in the transaction that records the
// incidents, so that an incident is never recorded without its alert nor
// alerted without being recorded; Tick (or Run) delivers them and marks them
// done. Delivery is at least once: a crash between a successful send and
// marking it done sends that one message again.
type Outbox struct {
	db   *sql.DB
	o    OutboxOptions
	log  *slog.Logger
	wake chan struct{}

	tickMu    sync.Mutex // one delivery round at a time
	dests     []*destination
	lastPrune time.Time
	// tokenAt is when a destination that had to stop for its rate in the
	// last round may send again; zero when none had to.
	tokenAt time.Time

	statsMu sync.Mutex
}

type destination struct {
	name       string
	sink       Sink
	summarizer Summarizer
	o          DestinationOptions
	limiter    *rate.Limiter
	log        *slog.Logger

	failures int
	retryAt  time.Time
	stats    DestinationStats
}

// OpenOutbox creates the outbox tables in db if needed.
func OpenOutbox(ctx context.Context, db *sql.DB, o OutboxOptions) (*Outbox, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = time.Second
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 5 * time.Minute
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = 30 * time.Second
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 5 * time.Second
	}
	if o.AlertsCommand == "" {
		o.AlertsCommand = "spraywatch alerts"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if _, err := db.ExecContext(ctx, outboxSchema); err != nil {
		return nil, fmt.Errorf("create alert outbox: %w", err)
	}
	return &Outbox{db: db, o: o, log: o.Logger, wake: make(chan struct{}, 1)}, nil
}

// AddDestination registers a sink under a stable name (the outbox rows
// carry it). Call it before the first Enqueue, Tick or Run.
func (o *Outbox) AddDestination(name string, s Sink, do DestinationOptions) {
	if do.Rate <= 0 {
		do.Rate = 1
	}
	if do.Cooldown == 0 {
		do.Cooldown = 5 * time.Minute
	}
	if do.StormThreshold == 0 {
		do.StormThreshold = 5
	}
	d := &destination{
		name:    name,
		sink:    s,
		o:       do,
		limiter: rate.NewLimiter(rate.Limit(do.Rate), max(1, int(do.Rate))),
		log:     o.log.With("destination", name),
		stats:   DestinationStats{Destination: name},
	}
	d.summarizer, _ = s.(Summarizer)
	o.dests = append(o.dests, d)
	sort.Slice(o.dests, func(i, j int) bool { return o.dests[i].name < o.dests[j].name })
}

// Enqueue writes one outbox row per changed incident and destination in tx,
// the transaction that records the incidents; it matches detect.Batch.Extra.
// A pending older version of the same incident is superseded, so that only
// the newest is sent, except to destinations that take EveryVersion.
func (o *Outbox) Enqueue(tx *sql.Tx, changed []*detect.Incident) error {
	if len(changed) == 0 || len(o.dests) == 0 {
		return nil
	}
	now := o.o.Now().UnixNano()
	for _, inc := range changed {
		body, err := json.Marshal(inc)
		if err != nil {
			return fmt.Errorf("enqueue incident %d: %w", inc.ID, err)
		}
		for _, d := range o.dests {
			if !d.o.EveryVersion {
				if _, err := tx.Exec(`UPDATE alert_outbox SET state = ?, done = ?
					WHERE destination = ? AND incident = ? AND state = ? AND version < ?`,
					stateSuperseded, now, d.name, inc.ID, statePending, inc.Version); err != nil {
					return fmt.Errorf("enqueue incident %d: %w", inc.ID, err)
				}
			}
			if _, err := tx.Exec(`INSERT OR IGNORE INTO alert_outbox
				(destination, incident, version, kind, source, severity, body, state, due, created)
				VALUES (?,?,?,?,?,?,?,?,?,?)`,
				d.name, inc.ID, inc.Version, inc.Kind, inc.Source, inc.Severity, string(body), statePending, now, now); err != nil {
				return fmt.Errorf("enqueue incident %d: %w", inc.ID, err)
			}
		}
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return nil
}

// Run delivers until ctx ends, every Interval and whenever Enqueue wakes it,
// then makes one last round bounded by DrainTimeout. With Interval 0 it
// only waits for ctx.
func (o *Outbox) Run(ctx context.Context) error {
	if o.o.Interval <= 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTimer(o.o.Interval)
	defer t.Stop()
	for {
		if err := o.Tick(ctx, o.o.Now()); err != nil && ctx.Err() == nil {
			o.log.Error("alert delivery round failed", "err", err)
		}
		// Come back after the interval, or sooner when a destination's
		// rate lets the next message go.
		wait := o.o.Interval
		if soon := o.tokenAt.Sub(o.o.Now()); !o.tokenAt.IsZero() && soon < wait {
			wait = max(soon, time.Millisecond)
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.o.DrainTimeout)
			defer cancel()
			if err := o.Tick(dctx, o.o.Now()); err != nil {
				o.log.Warn("last alert delivery round failed; pending alerts are sent on next start", "err", err)
			}
			return nil
		case <-t.C:
		case <-o.wake:
		}
	}
}

// Tick makes one delivery round at time now: for every destination not
// waiting out a failure, it groups storms and sends what is due, as far as
// the destination's rate allows.
func (o *Outbox) Tick(ctx context.Context, now time.Time) error {
	o.tickMu.Lock()
	defer o.tickMu.Unlock()
	o.tokenAt = time.Time{}
	var errs []error
	for _, d := range o.dests {
		if err := o.tickDestination(ctx, d, now); err != nil {
			errs = append(errs, fmt.Errorf("destination %s: %w", d.name, err))
		}
	}
	if now.Sub(o.lastPrune) >= time.Hour {
		o.lastPrune = now
		if _, err := o.db.ExecContext(ctx, `DELETE FROM alert_outbox WHERE state != ? AND done < ?`,
			statePending, now.Add(-o.o.Keep).UnixNano()); err != nil {
			errs = append(errs, fmt.Errorf("prune alert outbox: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Stats returns every destination's counters, by name.
func (o *Outbox) Stats() []DestinationStats {
	o.statsMu.Lock()
	defer o.statsMu.Unlock()
	out := make([]DestinationStats, len(o.dests))
	for i, d := range o.dests {
		out[i] = d.stats
	}
	return out
}

// Pending returns how many rows wait for delivery, per destination, those
// of destinations no longer configured included.
func (o *Outbox) Pending(ctx context.Context) (map[string]int, error) {
	rows, err := o.db.QueryContext(ctx, `SELECT destination, COUNT(*) FROM alert_outbox WHERE state = ? GROUP BY destination`, statePending)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var name string
		var n int
		if err := rows.Scan(&name, &n); err != nil {
			return nil, err
		}
		out[name] = n
	}
	return out, rows.Err()
}

func (o *Outbox) count(f func()) {
	o.statsMu.Lock()
	f()
	o.statsMu.Unlock()
}

// row is one outbox row to deliver.
type row struct {
	id             int64
	incident       int64
	version        int
	kind, source   string
	severity, body string
	tries          int
	lastSent       int64
	sentSeverity   string
	grouped        bool
}

func (o *Outbox) tickDestination(ctx context.Context, d *destination, now time.Time) error {
	if d.stats.Disabled || now.Before(d.retryAt) {
		return nil
	}
	if d.summarizer != nil && d.o.StormThreshold > 0 {
		if err := o.groupStorms(ctx, d, now); err != nil {
			return err
		}
	}
	for d.limiter.TokensAt(now) >= 1 {
		r, ok, err := o.next(ctx, d, now)
		if err != nil || !ok {
			return err
		}
		if r.incident != 0 && r.grouped {
			if err := o.finish(ctx, d, r, stateGrouped, now, ""); err != nil {
				return err
			}
			continue
		}
		rose := severityRank(r.severity) > severityRank(r.sentSeverity)
		if r.incident != 0 && r.lastSent != 0 && d.o.OnlyEscalations && !rose {
			if err := o.finish(ctx, d, r, stateSkipped, now, ""); err != nil {
				return err
			}
			o.count(func() { d.stats.Skipped++ })
			continue
		}
		if r.incident != 0 && r.lastSent != 0 && d.o.Cooldown > 0 && !rose {
			if until := time.Unix(0, r.lastSent).Add(d.o.Cooldown); now.Before(until) {
				if _, err := o.db.ExecContext(ctx, `UPDATE alert_outbox SET due = ? WHERE id = ?`, until.UnixNano(), r.id); err != nil {
					return err
				}
				o.count(func() { d.stats.Deferred++ })
				continue
			}
		}
		if !d.limiter.AllowN(now, 1) {
			return nil
		}
		if tokens := d.limiter.TokensAt(now); tokens < 1 {
			// More may be due: come back when the rate allows one.
			at := now.Add(time.Duration((1 - tokens) / d.o.Rate * float64(time.Second)))
			if o.tokenAt.IsZero() || at.Before(o.tokenAt) {
				o.tokenAt = at
			}
		}
		if stop, err := o.deliver(ctx, d, r, now); stop || err != nil {
			return err
		}
	}
	return nil
}

// next returns the oldest due pending row, with what the destination
// already sent about its incident.
func (o *Outbox) next(ctx context.Context, d *destination, now time.Time) (row, bool, error) {
	var r row
	var grouped, lastSent sql.NullInt64
	var sev sql.NullString
	err := o.db.QueryRowContext(ctx, `SELECT o.id, o.incident, o.version, o.kind, o.source, o.severity, o.body, o.tries,
			t.last_sent, t.severity, t.grouped
		FROM alert_outbox o LEFT JOIN alert_threads t ON t.destination = o.destination AND t.incident = o.incident
		WHERE o.destination = ? AND o.state = ? AND o.due <= ?
		ORDER BY o.due, o.id LIMIT 1`, d.name, statePending, now.UnixNano()).Scan(
		&r.id, &r.incident, &r.version, &r.kind, &r.source, &r.severity, &r.body, &r.tries,
		&lastSent, &sev, &grouped)
	if errors.Is(err, sql.ErrNoRows) {
		return r, false, nil
	}
	if err != nil {
		return r, false, err
	}
	r.lastSent, r.sentSeverity, r.grouped = lastSent.Int64, sev.String, grouped.Int64 != 0
	return r, true, nil
}

// deliver sends one row and records the outcome. stop says the destination
// should get nothing more this round.
func (o *Outbox) deliver(ctx context.Context, d *destination, r row, now time.Time) (stop bool, err error) {
	sctx, cancel := context.WithTimeout(ctx, o.o.SendTimeout)
	defer cancel()
	var serr error
	if r.incident == 0 && d.summarizer == nil {
		// Queued for a sink that summarized; the destination changed since.
		return false, o.finish(ctx, d, r, stateSkipped, now, "")
	}
	if r.incident == 0 {
		var s Summary
		if err := json.Unmarshal([]byte(r.body), &s); err != nil {
			return false, o.finish(ctx, d, r, stateFailed, now, "decode summary: "+err.Error())
		}
		serr = d.summarizer.SendSummary(sctx, s)
	} else {
		var inc detect.Incident
		if err := json.Unmarshal([]byte(r.body), &inc); err != nil {
			return false, o.finish(ctx, d, r, stateFailed, now, "decode incident: "+err.Error())
		}
		serr = d.sink.Send(sctx, inc)
	}
	log := d.log.With("incident", r.incident, "version", r.version, "kind", r.kind, "source", r.source)
	if serr == nil {
		d.failures = 0
		o.count(func() {
			d.stats.Sent++
			if r.incident == 0 {
				d.stats.Summaries++
			}
		})
		log.Debug("alert sent")
		return false, o.finish(ctx, d, r, stateSent, now, "")
	}
	if ctx.Err() != nil {
		return true, nil // shutting down: the row stays pending
	}
	var ra *RetryAfterError
	switch {
	case errors.As(serr, &ra):
		d.retryAt = now.Add(ra.Wait)
		o.count(func() { d.stats.RateLimited++ })
		log.Warn("alert destination rate limited; waiting as asked", "retry_after", ra.Wait)
		return true, o.retry(ctx, r, serr, time.Time{})
	case errors.Is(serr, ErrMisconfigured):
		o.count(func() {
			d.stats.Misconfigured++
			d.stats.Disabled = true
		})
		log.Error("alert destination misconfigured: not retried, nothing more is sent to it until restart; pending alerts are kept, fix the config and restart", "err", serr)
		return true, o.retry(ctx, r, serr, time.Time{})
	case errors.Is(serr, ErrRejected):
		o.count(func() { d.stats.Rejected++ })
		log.Error("alert rejected by destination; dropped", "err", serr)
		return false, o.finish(ctx, d, r, stateFailed, now, serr.Error())
	}
	// The destination waits out its consecutive failures; the row waits
	// out its own, so that one that keeps failing (or a sink that keeps
	// failing on it) lets the rows behind it go meanwhile.
	d.failures++
	wait := o.backoff(d.failures)
	d.retryAt = now.Add(wait)
	due := now.Add(o.backoff(r.tries + 1))
	o.count(func() { d.stats.Retries++ })
	log.Warn("alert not delivered; will retry", "err", serr, "retry_in", wait.Round(time.Millisecond), "failures", d.failures, "tries", r.tries+1)
	return true, o.retry(ctx, r, serr, due)
}

// backoff is the delay after n consecutive failures: capped exponential,
// with up to half taken off at random so that restarts do not align.
func (o *Outbox) backoff(n int) time.Duration {
	wait := o.o.BackoffMax
	if n < 31 {
		if w := o.o.BackoffBase << (n - 1); w > 0 && w < wait {
			wait = w
		}
	}
	return wait - time.Duration(o.o.Rand()*float64(wait)/2)
}

// retry keeps a row pending after a failed try, not before due when due is
// set.
func (o *Outbox) retry(ctx context.Context, r row, err error, due time.Time) error {
	if due.IsZero() {
		_, xerr := o.db.ExecContext(ctx, `UPDATE alert_outbox SET tries = tries + 1, error = ? WHERE id = ?`, err.Error(), r.id)
		return xerr
	}
	_, xerr := o.db.ExecContext(ctx, `UPDATE alert_outbox SET tries = tries + 1, error = ?, due = MAX(due, ?) WHERE id = ?`,
		err.Error(), due.UnixNano(), r.id)
	return xerr
}

// finish closes a row and, for an incident sent, remembers when and at what
// severity.
func (o *Outbox) finish(ctx context.Context, d *destination, r row, state string, now time.Time, msg string) error {
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	tries := 0
	if state == stateSent || state == stateFailed {
		tries = 1
	}
	if _, err := tx.ExecContext(ctx, `UPDATE alert_outbox SET state = ?, done = ?, tries = tries + ?, error = ? WHERE id = ?`,
		state, now.UnixNano(), tries, msg, r.id); err != nil {
		return err
	}
	if state == stateSent && r.incident != 0 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO alert_threads (destination, incident, last_sent, severity) VALUES (?,?,?,?)
			ON CONFLICT(destination, incident) DO UPDATE SET last_sent = excluded.last_sent, severity = excluded.severity`,
			d.name, r.incident, now.UnixNano(), r.severity); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// groupStorms folds, per kind and source, the new incidents due beyond the
// threshold into one summary row. The ones kept are claimed so that a later
// round does not fold them into another summary.
func (o *Outbox) groupStorms(ctx context.Context, d *destination, now time.Time) error {
	rows, err := o.db.QueryContext(ctx, `SELECT o.id, o.incident, o.kind, o.source
		FROM alert_outbox o LEFT JOIN alert_threads t ON t.destination = o.destination AND t.incident = o.incident
		WHERE o.destination = ? AND o.state = ? AND o.due <= ? AND o.incident != 0 AND t.incident IS NULL
		ORDER BY o.id`, d.name, statePending, now.UnixNano())
	if err != nil {
		return err
	}
	type key struct{ kind, source string }
	type item struct{ id, incident int64 }
	groups := map[key][]item{}
	var order []key
	for rows.Next() {
		var k key
		var it item
		if err := rows.Scan(&it.id, &it.incident, &k.kind, &k.source); err != nil {
			rows.Close()
			return err
		}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], it)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, k := range order {
		items := groups[k]
		if len(items) <= d.o.StormThreshold {
			continue
		}
		keep, fold := items[:d.o.StormThreshold], items[d.o.StormThreshold:]
		s := Summary{Kind: k.kind, Source: k.source,
			Command: fmt.Sprintf("%s --kind %s --source %s", o.o.AlertsCommand, k.kind, k.source)}
		for _, it := range fold {
			s.IDs = append(s.IDs, it.incident)
		}
		body, err := json.Marshal(s)
		if err != nil {
			return err
		}
		tx, err := o.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		err = func() error {
			for _, it := range keep {
				if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO alert_threads (destination, incident) VALUES (?,?)`, d.name, it.incident); err != nil {
					return err
				}
			}
			for _, it := range fold {
				if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO alert_threads (destination, incident, grouped) VALUES (?,?,1)`, d.name, it.incident); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `UPDATE alert_outbox SET state = ?, done = ? WHERE id = ?`, stateGrouped, now.UnixNano(), it.id); err != nil {
					return err
				}
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO alert_outbox (destination, incident, version, kind, source, severity, body, state, due, created)
				VALUES (?,0,0,?,?,'',?,?,?,?)`, d.name, k.kind, k.source, string(body), statePending, now.UnixNano(), now.UnixNano())
			return err
		}()
		if err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		o.count(func() { d.stats.Grouped += int64(len(fold)) })
		d.log.Info("alert storm: incidents folded into one summary", "kind", k.kind, "source", k.source, "sent", len(keep), "folded", len(fold))
	}
	return nil
}

// MessageRefs returns where a destination's sink keeps, per incident, the
// message it posted (a Slack channel and ts), in the outbox database.
func (o *Outbox) MessageRefs(destination string) *MessageRefs {
	return &MessageRefs{db: o.db, destination: destination}
}

// MessageRefs stores one destination's message per incident.
type MessageRefs struct {
	db          *sql.DB
	destination string
}

// Ref returns the message posted for incident, if any.
func (m *MessageRefs) Ref(ctx context.Context, incident int64) (MessageRef, bool, error) {
	var r MessageRef
	err := m.db.QueryRowContext(ctx, `SELECT channel, ref FROM alert_threads WHERE destination = ? AND incident = ? AND ref != ''`,
		m.destination, incident).Scan(&r.Channel, &r.ID)
	if errors.Is(err, sql.ErrNoRows) {
		return r, false, nil
	}
	return r, err == nil, err
}

// SaveRef remembers the message posted for incident.
func (m *MessageRefs) SaveRef(ctx context.Context, incident int64, r MessageRef) error {
	_, err := m.db.ExecContext(ctx, `INSERT INTO alert_threads (destination, incident, channel, ref) VALUES (?,?,?,?)
		ON CONFLICT(destination, incident) DO UPDATE SET channel = excluded.channel, ref = excluded.ref`,
		m.destination, incident, r.Channel, r.ID)
	return err
}

func severityRank(s string) int {
	switch s {
	case detect.SeverityLow:
		return 1
	case detect.SeverityMedium:
		return 2
	case detect.SeverityHigh:
		return 3
	case detect.SeverityCritical:
		return 4
	}
	return 0
}
