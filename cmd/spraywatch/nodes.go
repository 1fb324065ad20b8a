package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/spraywatch/spraywatch/detect/postgres"
)

// newNodesCmd is 'spraywatch nodes': a fleet's nodes as the judge sees
// them, and retiring one that is gone for good.
func newNodesCmd(g *globals) *cobra.Command {
	f := &dbFlags{}
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "nodes (--db postgres://… | --config FILE) [list | retire NODE]",
		Short: "List a fleet's nodes, or retire one that is gone for good",
		Long: `nodes lists every node that has written to a fleet's PostgreSQL database: its
last flush (on the node's own clock), how long ago that was on this machine's
clock, and whether the judge reports it quiet (no flush for node_timeout:
--node-timeout, the config's, or 30s). A quiet node keeps the active judge's /healthz at 503.

'nodes retire NODE' takes a node that is gone for good (scaled in, renamed)
out of the judge's view: the judge no longer waits for it nor reports it.
Its attempt rows, findings, positions and incidents stay; a node that writes
again under that name is simply back. Its agent must be stopped (a running
node is refused). Retiring needs the judge's role (it owns the tables):
give --db the judge's URL. The password comes from the config's
database_password_file or _env, SPRAYWATCH_DATABASE_PASSWORD_FILE,
PGPASSWORD or ~/.pgpass.`,
		Args: unknownCommand,
		RunE: func(cmd *cobra.Command, _ []string) error { return listNodes(cmd.Context(), g.stdout, f, timeout) },
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the fleet's nodes (the default)",
		Args:  usageArgs(cobra.NoArgs),
		RunE:  func(cmd *cobra.Command, _ []string) error { return listNodes(cmd.Context(), g.stdout, f, timeout) },
	}
	retire := &cobra.Command{
		Use:   "retire NODE",
		Short: "Take a node that is gone for good out of the judge's view",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, _, err := f.openFleet(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			switch err := s.RetireNode(cmd.Context(), args[0]); {
			case errors.Is(err, postgres.ErrNodeInUse):
				return fmt.Errorf("%w: stop its agent first (a node that still runs is not retired)", err)
			case errors.Is(err, postgres.ErrUnknownNode):
				return fmt.Errorf("%w (see 'spraywatch nodes list')", err)
			case err != nil:
				return forensicError(err, "retiring a node needs the judge's role: give --db the judge's URL")
			}
			fmt.Fprintf(g.stdout, "node %s retired: the judge no longer waits for it or reports it; its rows and incidents are kept\n", args[0])
			return nil
		},
	}
	for _, cmd := range []*cobra.Command{c, list, retire} {
		f.register(cmd)
	}
	for _, cmd := range []*cobra.Command{c, list} {
		cmd.Flags().DurationVar(&timeout, "node-timeout", 0, "a node without a flush for this long is quiet (default: the config's node_timeout, or 30s)")
	}
	c.AddCommand(list, retire)
	return c
}

// openFleet opens the fleet's database; nodes has no meaning on SQLite.
func (f *dbFlags) openFleet(ctx context.Context) (*postgres.Store, *Config, error) {
	rs, cfg, err := f.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	s, ok := rs.(*postgres.Store)
	if !ok {
		rs.Close()
		return nil, nil, fmt.Errorf("%w: nodes: the database is SQLite, a single node's; nodes are a fleet's (a postgres:// URL)", errUsage)
	}
	return s, cfg, nil
}

func listNodes(ctx context.Context, w io.Writer, f *dbFlags, timeout time.Duration) error {
	s, cfg, err := f.openFleet(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	nodes, err := s.Nodes(ctx)
	if err != nil {
		return forensicError(err, "")
	}
	switch {
	case timeout > 0:
	case cfg != nil:
		timeout = cfg.NodeTimeout
	default:
		timeout = DefaultConfig().NodeTimeout
	}
	if len(nodes) == 0 {
		fmt.Fprintln(w, "no nodes have written to this database yet")
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tLAST FLUSH\tAGO\tSTATE\tSOURCES")
	for _, n := range nodes {
		ago := now.Sub(n.Seen)
		state := "live"
		if ago > timeout {
			state = "quiet"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", n.Name, n.Seen.UTC().Format(time.RFC3339), max(0, ago).Round(time.Second), state, len(n.Clocks))
	}
	return tw.Flush()
}
