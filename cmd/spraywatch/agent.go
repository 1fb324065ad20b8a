package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/detect/postgres"
	"github.com/spraywatch/spraywatch/ingest"
)

// detector is what the daemon's loop feeds lines to: the rules engine in
// role all, or an agent's counter, which only counts.
type detector interface {
	Observe(ev *ingest.Event)
	TickSource(source string, now time.Time)
	SourceWatermark(source string) time.Time
	Watermark() time.Time
	Pending() int
}

// counter is an agent's detector: it aggregates events into per-minute
// attempt rows for the judge and keeps each source's event time, and judges
// nothing.
type counter struct {
	attempts *detect.Attempts
	clocks   map[string]time.Time
	newest   time.Time
}

func newCounter() *counter {
	return &counter{attempts: detect.NewAttempts(), clocks: map[string]time.Time{}}
}

func (c *counter) Observe(ev *ingest.Event) {
	c.attempts.Add(ev)
	if ev.Time.After(c.clocks[ev.Source]) {
		c.clocks[ev.Source] = ev.Time
	}
	if ev.Time.After(c.newest) {
		c.newest = ev.Time
	}
}

// TickSource does nothing: the judge moves event time on from the clocks
// each flush reports.
func (c *counter) TickSource(string, time.Time) {}

func (c *counter) SourceWatermark(source string) time.Time { return c.clocks[source] }
func (c *counter) Watermark() time.Time                    { return c.newest }
func (c *counter) Pending() int                            { return c.attempts.Len() }

var _ detector = (*counter)(nil)

// agentStore is an agent's side of the fleet database: its node's rows and
// positions, under a lock that keeps a second process from writing as the
// same node.
type agentStore struct {
	*postgres.Store
	lease *postgres.Lease
	log   *slog.Logger
}

// openAgentStore connects as this node, waiting for the database (an agent
// cannot start reading before it knows its saved positions).
func openAgentStore(ctx context.Context, cfg Config, log *slog.Logger) (*agentStore, error) {
	node := nodeName(cfg)
	for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
		s, err := openPostgres(ctx, cfg, postgres.Options{Node: node, NoMigrate: true})
		if err == nil {
			a := &agentStore{Store: s, log: log}
			if a.lease, err = s.LockNode(ctx); err == nil {
				log.Info("agent connected", "node", node, "database", s.Path())
				return a, nil
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
	err := a.FlushAgent(fctx, detect.Batch{Attempts: c.attempts, Positions: pos}, cl, time.Now())
	if a.LandedInDoubt() > landed {
		a.log.Warn("an earlier flush whose commit got no answer was written after all; its rows were not written again")
	}
	return err
}

// Close releases the node lock and the connections.
func (a *agentStore) Close() error {
	a.lease.Release()
	return a.Store.Close()
}
