package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/spraywatch/spraywatch/alert"
	"github.com/spraywatch/spraywatch/detect"
)

// alerting delivers new and updated incidents to every configured sink.
// Enqueue is called inside the flush transaction that records the
// incidents (as detect.Batch.Extra); Run delivers them.
type alerting struct {
	log     *slog.Logger
	sinks   []alert.Sink
	closers []io.Closer
	mu      sync.Mutex
	pending []detect.Incident
	wake    chan struct{}
}

func newAlerting(cfg Config, _ *detect.Store, log *slog.Logger, stdout io.Writer) (*alerting, error) {
	a := &alerting{log: log, wake: make(chan struct{}, 1)}
	for i, ac := range cfg.Alerts {
		w := stdout
		if ac.Type == "file" {
			f, err := os.OpenFile(ac.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
			if err != nil {
				return nil, fmt.Errorf("alerts[%d]: open %s: %w", i, ac.Path, err)
			}
			a.closers = append(a.closers, f)
			w = f
		}
		if ac.Format == "json" || (ac.Format == "" && ac.Type == "file") {
			a.sinks = append(a.sinks, alert.NewJSONLines(w))
		} else {
			a.sinks = append(a.sinks, alert.NewText(w))
		}
	}
	return a, nil
}

// Enqueue queues the changed incidents; it matches detect.Batch.Extra.
func (a *alerting) Enqueue(_ *sql.Tx, changed []*detect.Incident) error {
	a.mu.Lock()
	for _, inc := range changed {
		a.pending = append(a.pending, *inc)
	}
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
	return nil
}

// Run delivers queued incidents until ctx ends, then delivers what is left.
func (a *alerting) Run(ctx context.Context) error {
	defer func() {
		a.deliver(context.WithoutCancel(ctx))
		for _, c := range a.closers {
			c.Close()
		}
	}()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.wake:
		case <-t.C:
		}
		a.deliver(ctx)
	}
}

func (a *alerting) deliver(ctx context.Context) {
	a.mu.Lock()
	batch := a.pending
	a.pending = nil
	a.mu.Unlock()
	for _, inc := range batch {
		for _, s := range a.sinks {
			if err := s.Send(ctx, inc); err != nil {
				a.log.Error("alert not delivered", "incident", inc.ID, "err", err)
			}
		}
	}
}
