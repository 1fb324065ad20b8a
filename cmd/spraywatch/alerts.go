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
			store, err := detect.Open(db, detect.StoreOptions{ReadOnly: true})
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
	c.Flags().StringVar(&db, "db", "", "SQLite database")
	c.Flags().StringVarP(&output, "output", "o", "text", "text (table) or json (one incident per line)")
	c.Flags().StringVar(&kind, "kind", "", "only this kind")
	c.Flags().StringVar(&source, "source", "", "only this source")
	c.Flags().StringVar(&state, "state", "", "only open or closed incidents")
	c.AddCommand(newAlertsTestCmd(g))
	return c
}

func newExplainCmd(g *globals) *cobra.Command {
	var db string
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
			store, err := detect.Open(db, detect.StoreOptions{ReadOnly: true})
			if err != nil {
				return err
			}
			defer store.Close()
			return explain(cmd.Context(), g.stdout, store, id, all)
		},
	}
	c.Flags().StringVar(&db, "db", "", "SQLite database")
	c.Flags().BoolVar(&all, "identities", false, "list every identity involved")
	return c
}

func explain(ctx context.Context, w io.Writer, store *detect.Store, id int64, all bool) error {
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
	for _, pos := range inc.Evidence {
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
