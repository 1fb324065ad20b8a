// Command spraywatch finds password and API-key spraying in web access logs.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"

	"github.com/spf13/cobra"
)

// errUsage marks bad command lines (exit code 2).
var errUsage = errors.New("usage")

// Exit codes.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

type globals struct {
	logLevel   string
	logFormat  string
	cpuProfile string
	memProfile string
	stdout     io.Writer
	stderr     io.Writer
}

func (g *globals) logger() *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if g.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(g.stderr, opts))
	}
	return slog.New(slog.NewTextHandler(g.stderr, opts))
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "spraywatch",
		Short:         "Find password and API-key spraying in web access logs",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "warn", "log level: debug, info, warn, error (run: the config's log.level, info, unless this is given)")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "format of spraywatch's own log on stderr: text or json")
	root.PersistentFlags().StringVar(&g.cpuProfile, "cpuprofile", "", "write a CPU profile to this file (for performance work)")
	_ = root.PersistentFlags().MarkHidden("cpuprofile")
	root.PersistentFlags().StringVar(&g.memProfile, "memprofile", "", "replay: write a heap profile to this file when the last line is counted (for performance work)")
	_ = root.PersistentFlags().MarkHidden("memprofile")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if g.logFormat != "text" && g.logFormat != "json" {
			return fmt.Errorf("%w: --log-format: %q: must be text or json (it is spraywatch's own log; the layout of a log to replay is replay --layout)", errUsage, g.logFormat)
		}
		var lvl slog.Level
		if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
			return fmt.Errorf("%w: --log-level: %q: must be debug, info, warn or error", errUsage, g.logLevel)
		}
		if g.cpuProfile == "" {
			return nil
		}
		f, err := os.Create(g.cpuProfile)
		if err != nil {
			return err
		}
		return pprof.StartCPUProfile(f)
	}
	root.PersistentPostRun = func(*cobra.Command, []string) {
		if g.cpuProfile != "" {
			pprof.StopCPUProfile()
		}
	}
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return fmt.Errorf("%w: %w", errUsage, err) })
	root.Args = unknownCommand
	root.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	root.AddCommand(newRunCmd(g), newReplayCmd(g), newAlertsCmd(g), newExplainCmd(g), newCheckCmd(g), newDemoCmd(g))
	root.AddCommand(newNodesCmd(g))
	root.AddCommand(newParseCmd(g))
	return root
}

// writeHeapProfile writes the live heap to --memprofile, if given.
func (g *globals) writeHeapProfile() {
	if g.memProfile == "" {
		return
	}
	f, err := os.Create(g.memProfile)
	if err == nil {
		runtime.GC() // the profile shows what the last collection found live
		err = pprof.Lookup("heap").WriteTo(f, 0)
		f.Close()
	}
	if err != nil {
		fmt.Fprintf(g.stderr, "spraywatch: --memprofile: %v\n", err)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	root := newRoot(g)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		// A signal ended the command: say so rather than "context canceled".
		fmt.Fprintln(stderr, "spraywatch: interrupted by a signal")
		return exitRuntime
	}
	fmt.Fprintln(stderr, "spraywatch:", err)
	if errors.Is(err, errUsage) || errors.Is(err, errConfig) {
		return exitUsage
	}
	return exitRuntime
}

// usageArgs marks cobra's argument errors as usage errors.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		return nil
	}
}

// unknownCommand rejects arguments to a command that only has
// subcommands, suggesting the closest one.
func unknownCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	if s := suggest(args[0], names); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	} else if cmd.HasAvailableSubCommands() {
		msg += fmt.Sprintf("; see '%s --help'", cmd.CommandPath())
	}
	return fmt.Errorf("%w: %s", errUsage, msg)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
