package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/spraywatch/spraywatch/alert"
	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
)

func newAlertsCmd(g *globals) *cobra.Command {
	var db, output, kind, source, state string
	c := &cobra.Command{
		Use:   "alerts --db FILE",
		Short: "List incidents stored by a replay or the daemon",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if db == "" {
				return fmt.Errorf("%w: --db is required", errUsage)
			}
			if output != "text" && output != "json" {
				return fmt.Errorf("%w: --output: %q: must be text or json", errUsage, output)
			}
			store, err := openForReading(cmd.Context(), db)
			if err != nil {
				return err
			}
			defer store.Close()
			incs, err := store.Incidents(cmd.Context(), detect.IncidentFilter{Kind: kind, Source: source, State: state})
			if err != nil {
				return err
			}
			return printIncidents(g.stdout, output, incs)
		},
	}
	c.Flags().StringVar(&db, "db", "", "SQLite database, or postgres:// URL (password: "+envPasswordFile+", PGPASSWORD or ~/.pgpass)")
	c.Flags().StringVarP(&output, "output", "o", "text", "text (table) or json (one incident per line)")
	c.Flags().StringVar(&kind, "kind", "", "only this kind")
	c.Flags().StringVar(&source, "source", "", "only this source")
	c.Flags().StringVar(&state, "state", "", "only open or closed incidents")
	c.AddCommand(newAlertsTestCmd(g))
	return c
}

func newExplainCmd(g *globals) *cobra.Command {
	var db, node string
	var all bool
	c := &cobra.Command{
		Use:   "explain --db FILE ALERT_ID",
		Short: "Show an incident and the log lines behind it, credentials redacted",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil {
				return fmt.Errorf("%w: ALERT_ID: %q: not a number", errUsage, args[0])
			}
			if db == "" {
				return fmt.Errorf("%w: --db is required", errUsage)
			}
			store, err := openForReading(cmd.Context(), db)
			if err != nil {
				return err
			}
			defer store.Close()
			return explain(cmd.Context(), g.stdout, store, id, all, node)
		},
	}
	c.Flags().StringVar(&db, "db", "", "SQLite database, or postgres:// URL (password: "+envPasswordFile+", PGPASSWORD or ~/.pgpass)")
	c.Flags().BoolVar(&all, "identities", false, "list every identity involved")
	c.Flags().StringVar(&node, "node", "", "in a fleet: this machine's node name, whose evidence lines are read here (default: the host name)")
	return c
}

func explain(ctx context.Context, w io.Writer, store readStore, id int64, all bool, node string) error {
	inc, err := store.Incident(ctx, id)
	if err != nil {
		return err
	}
	if err := alert.WriteDetail(w, inc); err != nil {
		return err
	}
	if all {
		idents, err := store.IncidentIdentities(ctx, id)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "\nall %d identities:\n", len(idents))
		for _, s := range idents {
			fmt.Fprintln(w, " ", s)
		}
	}
	fmt.Fprintf(w, "\nevidence (%d lines, credentials redacted):\n", len(inc.Evidence))
	if node == "" {
		node, _ = os.Hostname()
	}
	for _, pos := range inc.Evidence {
		if pos.Node != "" && pos.Node != node {
			// Another node's file: name it; explain on that node reads it.
			fmt.Fprintf(w, "  %s:%s:%d  (on node %s: run explain there, or with --node %s where its logs are)\n", pos.Node, pos.File, pos.Offset, pos.Node, pos.Node)
			continue
		}
		line, where, err := readEvidence(pos)
		if err != nil {
			fmt.Fprintf(w, "  %s:%d  (unavailable: %v)\n", pos.File, pos.Offset, err)
			continue
		}
		fmt.Fprintf(w, "  %s:%d  %s\n", where, pos.Offset, ingest.Redact(line, 400))
	}
	return nil
}

// readEvidence reads the line at pos. When the file has been rotated since,
// it looks for the same inode among the file's rotated siblings.
func readEvidence(pos ingest.Pos) ([]byte, string, error) {
	path := pos.File
	if lf, err := ingest.Open(path); err != nil || lf.Inode != pos.Inode {
		if err == nil {
			lf.Close()
		}
		matches, _ := filepath.Glob(path + "*")
		found := false
		for _, m := range matches {
			if l2, err := ingest.Open(m); err == nil {
				same := l2.Inode == pos.Inode
				l2.Close()
				if same {
					path, found = m, true
					break
				}
			}
		}
		if !found && err != nil {
			return nil, path, err
		}
	} else {
		lf.Close()
	}
	lf, err := ingest.Open(path)
	if err != nil {
		return nil, path, err
	}
	defer lf.Close()
	r := lf.Reader()
	if f, ok := r.(*os.File); ok {
		if _, err := f.Seek(pos.Offset, io.SeekStart); err != nil {
			return nil, path, err
		}
	} else if _, err := io.CopyN(io.Discard, r, pos.Offset); err != nil {
		return nil, path, err
	}
	line, err := bufio.NewReader(r).ReadSlice('\n')
	if err != nil && len(line) == 0 {
		return nil, path, err
	}
	return line[:len(line)-boolInt(line[len(line)-1] == '\n')], path, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func newCheckCmd(g *globals) *cobra.Command {
	var config string
	c := &cobra.Command{
		Use:   "check --config FILE",
		Short: "Validate a config file; every problem names its field and value",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if config == "" {
				return fmt.Errorf("%w: --config is required", errUsage)
			}
			cfg, err := LoadConfig(config)
			if err != nil {
				return err
			}
			// What run reads at start: a secret it cannot have fails here too.
			if err := checkAlertSecrets(cfg.Alerts); err != nil {
				return err
			}
			for _, s := range cfg.Sources {
				fmt.Fprintf(g.stdout, "source %s: format %s, %d path(s)\n", s.Name, s.Format, len(s.Paths))
				opts, err := s.options(nil)
				if err != nil {
					return fmt.Errorf("%w: source %s: %w", errConfig, s.Name, err)
				}
				if p, err := ingest.NewParser(opts); err == nil && !p.HasCredential() {
					fmt.Fprintf(g.stdout, "  note: no credential field: spray is found on identities per address, with credentials unknown; stuffing and brute force are not judged\n")
				}
			}
			fmt.Fprintf(g.stdout, "%s: ok\n", config)
			return nil
		},
	}
	c.Flags().StringVarP(&config, "config", "c", "", "config file")
	return c
}
