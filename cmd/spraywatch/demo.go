package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/spraywatch/spraywatch/ingest/loggen"
)

// demoConfig is the config the demo writes next to its log.
const demoConfig = `# Written by 'spraywatch demo'. The log is nginx with this log_format, where
# $api_key_prefix is a map of the X-API-Key header to its first 12 characters.
database: demo.db
fingerprint_secret_file: fingerprint.key
sources:
  - name: api-nginx
    format: nginx
    paths: [access.log]
    log_format: '%s'
    credential:
      field: api_key_prefix
      kind: prefix
    identity:
      path: ["%s"]
    timezone: UTC
`

type demoFlags struct {
	dir, output  string
	keep         bool
	lines, hours int
	clients      int
	multiDay     bool
}

func newDemoCmd(g *globals) *cobra.Command {
	f := &demoFlags{}
	c := &cobra.Command{
		Use:   "demo",
		Short: "Write a realistic log with hidden attacks, replay it, and print the incidents",
		Long: `demo writes an nginx access log of a small API: benign clients, 40 people
behind one NAT address, a client retrying a rotated key, and hidden in that
traffic a spray (followed by a success with the sprayed key), a brute force and
a credential-stuffing run. It then replays the log exactly as
'spraywatch replay' would and prints what it found.

With the default flags the log is the one bundled as
testdata/demo/access.log.gz. --write DIR only writes the log and its config
(used by the benchmark).`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.multiDay {
				switch {
				case !cmd.Flags().Changed("hours"):
					f.hours = allAttacksHours
				case f.hours < allAttacksHours:
					return fmt.Errorf("%w: --hours: %d: --all-attacks needs at least %d hours (the low-and-slow spray takes a day)", errUsage, f.hours, allAttacksHours)
				}
			}
			if f.hours <= 0 {
				return fmt.Errorf("%w: --hours: %d: must be at least 1", errUsage, f.hours)
			}
			return runDemo(cmd.Context(), g, f)
		},
	}
	c.Flags().StringVar(&f.dir, "write", "", "write the log and config to this directory and stop")
	c.Flags().StringVarP(&f.output, "output", "o", "text", "text or json")
	c.Flags().BoolVar(&f.keep, "keep", false, "keep the temporary directory with the log, config and database")
	c.Flags().IntVar(&f.lines, "lines", 40_000, "benign lines to generate")
	c.Flags().IntVar(&f.hours, "hours", 6, "hours of traffic; --all-attacks makes the default 30")
	c.Flags().IntVar(&f.clients, "clients", 200, "benign clients, each with its own address and key")
	c.Flags().BoolVar(&f.multiDay, "all-attacks", false, "also hide a distributed and a low-and-slow spray, in 30 hours of traffic")
	return c
}

// demoOptions is the traffic the demo writes; with the default flags it is
// the log bundled as testdata/demo/access.log.gz.
func demoOptions(f *demoFlags) loggen.Options {
	d := time.Duration(f.hours) * time.Hour
	start := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	if d > longestFromStart {
		// A longer log (a benchmark's week) ends where a 48-hour one
		// does, so that none of it is dated after the day this was written:
		// a replay skips lines over a day ahead of the clock as future_time.
		start = start.Add(longestFromStart - d)
	}
	return loggen.Options{Start: start, Duration: d, Clients: f.clients, Lines: f.lines, Seed: 7,
		Spray: true, BruteForce: true, Stuffing: true, NAT: true, Stale: true, Compromise: true,
		Distributed: f.multiDay, LowAndSlow: f.multiDay}
}

// longestFromStart is the longest log that starts on the demo's fixed day.
const longestFromStart = 48 * time.Hour

// allAttacksHours is the traffic --all-attacks needs: the low-and-slow
// spray is spread over a day.
const allAttacksHours = 30

func runDemo(ctx context.Context, g *globals, f *demoFlags) error {
	dir := f.dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "spraywatch-demo-")
		if err != nil {
			return err
		}
		if !f.keep {
			defer os.RemoveAll(tmp)
		}
		dir = tmp
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	logPath := filepath.Join(dir, "access.log")
	out, err := os.Create(logPath)
	if err != nil {
		return err
	}
	if _, err := loggen.Write(out, demoOptions(f)); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "spraywatch.yml")
	cfg := fmt.Sprintf(demoConfig, loggen.LogFormat, loggen.IdentityPath)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	// The demo's own fingerprint secret, so that its replay is like a real one.
	if err := os.WriteFile(filepath.Join(dir, "fingerprint.key"), oneOffSecret(), 0o600); err != nil {
		return err
	}
	if f.dir != "" {
		fmt.Fprintf(g.stdout, "wrote %s and %s\n", logPath, cfgPath)
		return nil
	}
	if f.keep {
		fmt.Fprintf(g.stderr, "demo log %s (%d hours of API traffic), config %s\n\n", logPath, f.hours, cfgPath)
	} else {
		fmt.Fprintf(g.stderr, "demo log: %d hours of API traffic, in a temporary directory removed at the end (--keep keeps it)\n\n", f.hours)
	}
	rf := &replayFlags{config: cfgPath, output: f.output, noProgress: true}
	if f.keep {
		rf.db = filepath.Join(dir, "demo.db")
	}
	if err := runReplay(ctx, g, rf, nil); err != nil {
		return err
	}
	if f.keep {
		fmt.Fprintf(g.stderr, "\ntry: spraywatch alerts --db %s\n     spraywatch explain --db %s 1\n", rf.db, rf.db)
	}
	return nil
}
