package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spraywatch/spraywatch/alert"
	"github.com/spraywatch/spraywatch/alert/slack"
	"github.com/spraywatch/spraywatch/alert/webhook"
	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/detect/postgres"
)

// alertInterval is how often the outbox looks for due alerts; Enqueue
// wakes it at once, so new incidents do not wait for it.
const alertInterval = 250 * time.Millisecond

// alerting delivers new and updated incidents to every configured sink
// through the outbox in the detection database. Enqueue is called inside
// the flush transaction that records the incidents (as detect.Batch.Extra);
// Run delivers them, and after a restart delivers what was still pending.
type alerting struct {
	box     *alert.Outbox
	closers []io.Closer
}

func newAlerting(cfg Config, store interface{ DB() *sql.DB }, log *slog.Logger, stdout io.Writer) (*alerting, error) {
	return newFencedAlerting(cfg, store, log, stdout, "", nil)
}

// newFencedAlerting is newAlerting for a judge: claimant names it in the
// claims its outbox records before each send, and fence keeps it from
// sending once it is no longer the active judge.
func newFencedAlerting(cfg Config, store interface{ DB() *sql.DB }, log *slog.Logger, stdout io.Writer, claimant string, fence func(context.Context, *sql.Tx) error) (*alerting, error) {
	box, err := alert.OpenOutbox(context.Background(), store.DB(), alert.OutboxOptions{
		Interval:      alertInterval,
		AlertsCommand: "spraywatch alerts --db " + databaseForLog(cfg.Database),
		Logger:        log.With("component", "alerts"),
		Postgres:      postgres.IsURL(cfg.Database),
		Claimant:      claimant,
		Fence:         fence,
	})
	if err != nil {
		return nil, err
	}
	sinks, closers, err := buildSinks(cfg, box, log, stdout)
	if err != nil {
		return nil, err
	}
	configured := map[string]bool{}
	for _, s := range sinks {
		box.AddDestination(s.name, s.sink, s.opts)
		configured[s.name] = true
	}
	pending, err := box.Pending(context.Background())
	if err != nil {
		return nil, fmt.Errorf("read alert outbox: %w", err)
	}
	for name, n := range pending {
		if !configured[name] {
			log.Warn("alerts pending for a destination no longer configured; they are not sent (keep its name to send them)", "destination", name, "pending", n)
		}
	}
	return &alerting{box: box, closers: closers}, nil
}

// Enqueue writes the changed incidents to the outbox in tx; it matches
// detect.Batch.Extra.
func (a *alerting) Enqueue(tx *sql.Tx, changed []*detect.Incident) error {
	return a.box.Enqueue(tx, changed)
}

// Run delivers until ctx ends, makes a last round for what the final flush
// enqueued, and closes the sinks' files.
func (a *alerting) Run(ctx context.Context) error {
	defer func() {
		for _, c := range a.closers {
			c.Close()
		}
	}()
	return a.box.Run(ctx)
}

// Stats returns each destination's delivery counters, for metrics.
func (a *alerting) Stats() []alert.DestinationStats { return a.box.Stats() }

// namedSink is one configured destination.
type namedSink struct {
	name, describe string
	sink           alert.Sink
	opts           alert.DestinationOptions
}

// buildSinks turns the alerts config into sinks. box, when not nil, keeps
// Slack bot messages per incident in the database; without it ('alerts
// test') they are kept in memory.
func buildSinks(cfg Config, box *alert.Outbox, log *slog.Logger, stdout io.Writer) (sinks []namedSink, closers []io.Closer, err error) {
	defer func() {
		if err != nil {
			for _, c := range closers {
				c.Close()
			}
		}
	}()
	names := sinkNames(cfg.Alerts)
	seen := map[string]bool{}
	for i, ac := range cfg.Alerts {
		field := fmt.Sprintf("alerts[%d]", i)
		name := names[i]
		if seen[name] {
			return nil, closers, fmt.Errorf("%w: %s.name: %q: is used by another sink", errConfig, field, name)
		}
		seen[name] = true
		ns := namedSink{name: name, opts: alert.DestinationOptions{Rate: ac.Rate, Cooldown: ac.Cooldown, StormThreshold: ac.StormThreshold}}
		switch ac.Type {
		case "stdout", "file":
			w, where := stdout, "stdout"
			if ac.Type == "file" {
				f, err := os.OpenFile(ac.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
				if err != nil {
					return nil, closers, fmt.Errorf("%s: open %s: %w", field, ac.Path, err)
				}
				closers = append(closers, f)
				w, where = f, ac.Path
			}
			if ac.Format == "json" || (ac.Format == "" && ac.Type == "file") {
				ns.sink, ns.describe = alert.NewJSONLines(w), "JSON lines to "+where
			} else {
				ns.sink, ns.describe = alert.NewText(w), "text to "+where
			}
			// Local output: every version, as fast as it comes.
			if ns.opts.Rate == 0 {
				ns.opts.Rate = 1000
			}
			ns.opts = everyVersion(ns.opts)
		case "slack":
			sec, err := readSinkSecrets(field, ac)
			if err != nil {
				return nil, closers, err
			}
			warnOpen(log, field, sec.files...)
			msg := slack.MessageOptions{ExplainCommand: "spraywatch explain --db " + databaseForLog(cfg.Database)}
			if sec.url != "" {
				if ns.sink, err = slack.NewWebhook(slack.WebhookOptions{URL: sec.url, Timeout: ac.Timeout, Message: msg}); err != nil {
					return nil, closers, fmt.Errorf("%s: %w", field, err)
				}
				ns.describe = "slack incoming webhook"
				// A webhook cannot edit what it posted: post again only
				// when the severity rises.
				ns.opts.OnlyEscalations = true
				break
			}
			bo := slack.BotOptions{Token: sec.token, Channel: ac.Channel, Updates: ac.Updates, Timeout: ac.Timeout, Message: msg,
				Logger: log.With("component", "alerts", "destination", name)}
			if ac.APIURL != "" {
				bo.APIURL = strings.TrimSuffix(ac.APIURL, "/") + "/"
			}
			if box != nil {
				bo.Refs = box.MessageRefs(name)
			}
			if ns.sink, err = slack.NewBot(bo); err != nil {
				return nil, closers, fmt.Errorf("%s: %w", field, err)
			}
			ns.describe = "slack bot in " + ac.Channel
		case "webhook":
			sec, err := readSinkSecrets(field, ac)
			if err != nil {
				return nil, closers, err
			}
			warnOpen(log, field, sec.files...)
			if ns.sink, err = webhook.New(webhook.Options{URL: sec.url, Secret: []byte(sec.key), Timeout: ac.Timeout}); err != nil {
				return nil, closers, fmt.Errorf("%s: %w", field, err)
			}
			ns.describe = "webhook"
			// A receiver deduplicates on id and version.
			ns.opts = everyVersion(ns.opts)
			if sec.key != "" {
				ns.describe += ", signed"
			}
		default:
			return nil, closers, fmt.Errorf("%w: %s.type: %q: must be stdout, file, slack or webhook", errConfig, field, ac.Type)
		}
		sinks = append(sinks, ns)
	}
	return sinks, closers, nil
}

// everyVersion makes a machine reader's destination get every version of
// every incident as it comes, unless its config sets a cooldown (then the
// versions inside one are coalesced, the newest sent).
func everyVersion(o alert.DestinationOptions) alert.DestinationOptions {
	if o.Cooldown == 0 {
		o.Cooldown, o.EveryVersion = -1, true
	}
	return o
}

func warnOpen(log *slog.Logger, field string, files ...string) {
	for _, file := range files {
		if secretFileTooOpen(file) {
			log.Warn("secret file is readable by others; chmod 600 it", "field", field, "file", file)
		}
	}
}

func newAlertsTestCmd(g *globals) *cobra.Command {
	var config string
	c := &cobra.Command{
		Use:   "test --config FILE",
		Short: "Send a test message to every configured sink and report the result for each",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if config == "" {
				return fmt.Errorf("%w: --config is required", errUsage)
			}
			cfg, err := LoadConfig(config)
			if err != nil {
				return err
			}
			sinks, closers, err := buildSinks(cfg, nil, g.logger(), g.stdout)
			if err != nil {
				return err
			}
			defer func() {
				for _, c := range closers {
					c.Close()
				}
			}()
			return testSinks(cmd.Context(), g.stdout, sinks, time.Now())
		},
	}
	c.Flags().StringVarP(&config, "config", "c", "", "config file")
	return c
}

// testSinks sends the test incident to every sink and reports each.
func testSinks(ctx context.Context, w io.Writer, sinks []namedSink, now time.Time) error {
	inc := alert.TestIncident(now)
	failed := 0
	for _, s := range sinks {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := s.sink.Send(sctx, inc)
		cancel()
		if err == nil {
			fmt.Fprintf(w, "%s (%s): ok\n", s.name, s.describe)
			continue
		}
		failed++
		var ra *alert.RetryAfterError
		hint := "temporary failure; spraywatch run retries these"
		switch {
		case errors.As(err, &ra):
			hint = "rate limited; spraywatch run waits as asked"
		case errors.Is(err, alert.ErrMisconfigured):
			hint = "misconfigured: check the URL or token and the channel; spraywatch run tries it again only every few minutes"
		case errors.Is(err, alert.ErrRejected):
			hint = "the destination refused the message"
		}
		fmt.Fprintf(w, "%s (%s): FAILED: %v (%s)\n", s.name, s.describe, err, hint)
	}
	if failed > 0 {
		return fmt.Errorf("alerts test: %d of %d sinks failed", failed, len(sinks))
	}
	return nil
}
