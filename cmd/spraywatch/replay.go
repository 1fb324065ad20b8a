package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/detect/postgres"
	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/rules"
)

type replayFlags struct {
	config, db, output, since, until, source string
	node                                     string
	format, layout, identityPath             string
	identityQuery, credentialField           string
	force, noProgress                        bool
}

func newReplayCmd(g *globals) *cobra.Command {
	f := &replayFlags{}
	c := &cobra.Command{
		Use:   "replay [flags] [FILE...|-]",
		Short: "Replay historical logs (plain, rotated and .gz) into incidents",
		Long: `Replay reads logs oldest first (x.log.3.gz, x.log.2.gz, x.log.1, x.log), merges
several sources by event time, and prints the incidents found.

Without --db the case is kept in a temporary database that is removed at the
end; pass --db FILE to keep it for 'spraywatch alerts' and 'spraywatch explain'.
Files already replayed into that database are skipped unless --force; files
a replay into it counted in part (it was interrupted) are refused unless --force.
Without FILE arguments the sources' configured paths (and their rotated
siblings) are read; - reads standard input (plain or gzip; its evidence lines
cannot be shown by 'explain' later, as it is not kept).

A source most of whose lines are skipped gets a WARNING after the summary; a
source that read lines but gave no event at all (nothing fits its layout, or
no line is on its identity paths) makes replay exit 1, because "no incidents"
would then mean nothing.

Without --db, the daemon's fingerprint secret is read if it can be, never
created: when it does not exist or cannot be read, a one-off secret is used
and replay says so.`,
		Args: usageArgs(cobra.ArbitraryArgs),
		RunE: func(cmd *cobra.Command, args []string) error { return runReplay(cmd.Context(), g, f, args) },
	}
	fl := c.Flags()
	fl.StringVarP(&f.config, "config", "c", "", "config file")
	fl.StringVar(&f.db, "db", "", "SQLite database to keep the case in (default: temporary), or a fleet's postgres:// URL")
	fl.StringVar(&f.node, "node", "", "with a postgres:// --db: the node whose logs these are (default: the host name)")
	fl.StringVarP(&f.output, "output", "o", "text", "output: text (table) or json (one incident per line)")
	fl.StringVar(&f.since, "since", "", "only events at or after this time (2026-11-01, or RFC 3339)")
	fl.StringVar(&f.until, "until", "", "only events before this time")
	fl.StringVar(&f.source, "source", "", "read every FILE as this configured source")
	fl.StringVar(&f.format, "format", "nginx", "without --config: the files' format (nginx, gunicorn, flask, json or combined)")
	fl.StringVar(&f.layout, "layout", "", "without --config: the lines' layout, as nginx log_format or gunicorn access_log_format (default: the format's own; spraywatch's own log is --log-format)")
	fl.StringVar(&f.identityPath, "identity-path", "", "without --config: path template holding the client ID, e.g. /api/v1/clients/{identity}/")
	fl.StringVar(&f.identityQuery, "identity-query", "", "without --config: query parameter holding the client ID")
	fl.StringVar(&f.credentialField, "credential-field", "", "without --config: field holding the key or key prefix")
	fl.BoolVar(&f.force, "force", false, "replay files even if this database has seen them")
	fl.BoolVar(&f.noProgress, "no-progress", false, "no progress bar even on a terminal")
	return c
}

// parseWhen reads --since/--until values.
func parseWhen(flag, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: --%s: %q: not a date (2026-11-01) or RFC 3339 time", errUsage, flag, v)
}

// replayConfig loads the config, or builds a one-source config from flags.
func replayConfig(f *replayFlags, dbDir string) (Config, error) {
	if f.config != "" {
		return LoadConfig(f.config)
	}
	c := DefaultConfig()
	c.FingerprintSecretFile = filepath.Join(dbDir, "fingerprint.key")
	src := SourceConfig{Name: "cli", Format: f.format, Credential: CredentialConfig{Field: f.credentialField},
		Identity: IdentityConfig{Query: f.identityQuery}}
	src.LogFormat = f.layout
	if f.identityPath != "" {
		src.Identity.Path = []string{f.identityPath}
	}
	if f.identityPath == "" && f.identityQuery == "" && f.format != ingest.FormatJSON {
		src.Identity.RemoteUser = true
	}
	c.Sources = []SourceConfig{src}
	return c, c.Validate()
}

func runReplay(ctx context.Context, g *globals, f *replayFlags, files []string) error {
	if f.output != "text" && f.output != "json" {
		return fmt.Errorf("%w: --output: %q: must be text or json", errUsage, f.output)
	}
	since, err := parseWhen("since", f.since)
	if err != nil {
		return err
	}
	until, err := parseWhen("until", f.until)
	if err != nil {
		return err
	}
	if !since.IsZero() && !until.IsZero() && !since.Before(until) {
		return fmt.Errorf("%w: --since %s is not before --until %s", errUsage, f.since, f.until)
	}
	log := g.logger()
	// A replay is a batch job: trading some memory for fewer collections
	// makes it about 10% faster, while a soft limit keeps the Go heap
	// under 128 MiB on busy logs, or 40% more than what is live when more
	// is (SQLite's page cache comes on top).
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	defer governMemoryWith(128<<20, replayHeadroom).Stop()
	if err := checkDatabaseArg(f.db); err != nil {
		return err
	}
	pg := postgres.IsURL(f.db)
	if f.node != "" && !pg {
		return fmt.Errorf("%w: --node: only with a postgres:// --db", errUsage)
	}
	dbPath := f.db
	if pg {
		dbPath = ""
	}
	if dbPath == "" {
		tmp, err := os.MkdirTemp("", "spraywatch-replay-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dbPath = filepath.Join(tmp, "case.db")
	}
	cfg, err := replayConfig(f, filepath.Dir(dbPath))
	if err != nil {
		return err
	}
	if pg {
		cfg.Database, dbPath = f.db, postgres.Redact(f.db)
		if f.config == "" {
			cfg.DatabasePasswordFile = os.Getenv(envPasswordFile)
		}
		if f.node != "" {
			cfg.Node = f.node
		}
	}
	secret, err := replaySecret(g, f, cfg)
	if err != nil {
		return err
	}
	files, cleanup, err := spoolStdin(ctx, files, os.Stdin)
	if err != nil {
		return err
	}
	defer cleanup()
	streams, noCred, err := replayStreams(cfg, f.source, files, secret)
	if err != nil {
		return err
	}
	var store store
	if pg {
		store, err = openPostgres(ctx, cfg, postgres.Options{Node: nodeName(cfg)})
	} else {
		// A replay appends attempt rows (their index is left for later)
		// and a flush's rows fit in 8 MiB: a larger page cache buys no
		// speed, only resident memory beside the windows'.
		store, err = detect.Open(dbPath, detect.StoreOptions{DeferIndexes: true, Scratch: true, CacheKiB: 8 << 10})
	}
	if err != nil {
		return err
	}
	defer store.Close()
	streams, skipped, err := skipReplayed(ctx, store, streams, f.force, since)
	if err != nil {
		return err
	}
	for _, p := range skipped {
		fmt.Fprintf(g.stderr, "spraywatch: %s was already replayed into %s; skipped (use --force to read it again)\n", p, dbPath)
	}
	if len(streams) == 0 {
		fmt.Fprintln(g.stderr, "spraywatch: nothing new to replay; see 'spraywatch alerts --db", dbPath+"'")
		return nil
	}
	maxID, err := store.MaxIncidentID(ctx)
	if err != nil {
		return err
	}
	// A goroutine of its own, not the one judging every line, aggregates
	// the batches' lines into attempt rows (DeferRows).
	engine := rules.NewEngine(rules.Options{Config: cfg.Rules, Allow: cfg.AllowList(), NoCredential: noCred, Logger: log, FirstID: maxID + 1,
		DeferRows: true})

	var bar *progressbar.ProgressBar
	if !f.noProgress && isTerminal(g.stderr) {
		w := g.stderr // progressbar.DefaultBytes would write to os.Stderr, not the terminal we were given
		bar = progressbar.NewOptions64(totalSize(streams), progressbar.OptionSetDescription("replaying"),
			progressbar.OptionSetWriter(w), progressbar.OptionShowBytes(true), progressbar.OptionShowTotalBytes(true),
			progressbar.OptionSetWidth(10), progressbar.OptionThrottle(65*time.Millisecond), progressbar.OptionShowCount(),
			progressbar.OptionSpinnerType(14), progressbar.OptionFullWidth(), progressbar.OptionSetRenderBlankState(true))
	}
	failed := map[string]error{}
	tried := 0
	for _, st := range streams {
		tried += len(st.Paths)
	}
	// Lines dated more than a day ahead of this machine's clock are skipped
	// as future_time: a broken clock or a forged line must not stretch the
	// windows.
	// With --since, the day before it is read too, but only to learn which
	// keys their identities already owned: without that history every
	// client's own success would look like a compromise.
	readSince := since
	if !since.IsZero() {
		readSince = since.Add(-max(cfg.Rules.LongestWindow(), cfg.Rules.Compromise.WithinLowAndSlow))
	}
	var history int64
	opts := ingest.ReadOptions{Since: readSince, Until: until, MaxLineBytes: cfg.MaxLineBytes, NotAfter: time.Now().Add(24 * time.Hour),
		FileError: func(path string, err error) {
			failed[path] = err
			fmt.Fprintf(g.stderr, "spraywatch: %s\n", fileProblem(displayName(path), err))
		}}
	if bar != nil {
		opts.Progress = func(n int64) { _ = bar.Add64(n) }
	}
	started := time.Now()
	// While the engine goes on counting, an aggregating goroutine turns
	// its batches' lines into rows and a writer goroutine writes them: on
	// two cores SQLite's work overlaps parsing and judging. The engine
	// hands over a batch every replayBatchRows/16 lines (half a megabyte);
	// the aggregator gathers them into an aggregate of rows and hands it to
	// the writer once it holds replayBatchRows rows. Three such aggregates
	// at most are held (one gathering, one waiting, one being written), as
	// before rows were gathered off the engine's goroutine; a written one
	// is left to the collector rather than kept, for its room would be
	// held through the replay. Emptied batch aggregates (lines) go back to
	// the engine when there is room.
	batches := make(chan detect.Batch, 1)
	spares := make(chan *detect.Attempts, 1)
	writes := make(chan detect.Batch, 1)
	writeErr := make(chan error, 1)
	go func() {
		defer close(writes)
		pending := detect.Batch{Attempts: detect.NewAttempts()}
		for b := range batches {
			mergeBatch(&pending, b)
			b.Attempts.Clear()
			select {
			case spares <- b.Attempts:
			default:
			}
			if pending.Attempts.Len() < replayBatchRows {
				continue
			}
			writes <- pending
			pending = detect.Batch{Attempts: detect.NewAttempts()}
		}
		if pending.Attempts.Len() > 0 || len(pending.Incidents)+len(pending.Quiet)+len(pending.Identities) > 0 {
			writes <- pending
		}
	}()
	go func() {
		var first error
		for b := range writes {
			if first == nil {
				first = store.Flush(ctx, b)
			}
		}
		writeErr <- first
	}()
	sent := 0 // batches handed to the writer
	stats, err := ingest.Read(ctx, streams, opts, func(ev *ingest.Event) error {
		if ev.Time.Before(since) {
			engine.Remember(ev)
			history++
			return nil
		}
		engine.Observe(ev)
		if engine.Pending() >= replayBatchRows/16 {
			select {
			case a := <-spares:
				engine.Recycle(a)
			default:
			}
			b, _ := engine.TakeBatch(detect.Batch{})
			batches <- b // a write error surfaces when the replay ends
			if sent++; replaySentHook != nil {
				replaySentHook(sent)
			}
		}
		return nil
	})
	close(batches)
	if werr := <-writeErr; err == nil && werr != nil {
		err = werr
	}
	if bar != nil {
		_ = bar.Finish()
		fmt.Fprintln(g.stderr)
	}
	if err != nil {
		if f.db != "" && sent > 0 {
			markPartial(g.stderr, store, streams, failed, f.db)
		}
		return fmt.Errorf("replay: %w", err)
	}
	g.writeHeapProfile()
	engine.Finish()
	done := replayedFiles(streams, failed)
	if _, err := engine.Flush(ctx, store, detect.Batch{Replayed: done}); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	// The attempt index is left to the first Open that keeps one (a
	// daemon's): nothing a replay or a forensic query asks needs it.
	elapsed := time.Since(started)
	incs, err := store.Incidents(ctx, detect.IncidentFilter{MinID: maxID + 1})
	if err != nil {
		return err
	}
	// When no file could be read there are no results, not an empty set of
	// them: stdout stays empty rather than saying "no incidents".
	if len(failed) < tried || len(incs) > 0 {
		if err := printIncidents(g.stdout, f.output, incs); err != nil {
			return err
		}
	}
	writeSummary(g.stderr, stats, elapsed, len(incs), dbPath, f.db != "")
	if history > 0 {
		fmt.Fprintf(g.stderr, "%d events before --since were read only to learn which keys identities already owned\n", history)
	}
	if engine.TooOld > 0 {
		fmt.Fprintf(g.stderr, "%d events were older than every window still open on their source's clock: stored, but judged by no rule\n", engine.TooOld)
	}
	if engine.Ahead > 0 {
		fmt.Fprintf(g.stderr, "%d events were dated more than 5 minutes ahead of the lines after them on their source (a wrong clock?): left out, neither stored nor judged\n", engine.Ahead)
	}
	blind := warnBlind(g.stderr, stats)
	switch {
	case len(failed) == tried:
		return fmt.Errorf("no file could be read (%d tried)", tried)
	case len(failed) > 0:
		return fmt.Errorf("%d of %d file(s) could not be read in full; the results cover the other %d", len(failed), tried, tried-len(failed))
	case len(blind) > 0:
		return fmt.Errorf("source(s) %s gave no event: these results mean nothing for them; try 'spraywatch check --sample FILE'", strings.Join(blind, ", "))
	}
	return nil
}

// failuresOnly says what a source that logged failed attempts but no
// success cannot tell, or "" when it logged successes (or too few events
// to say).
func failuresOnly(s *ingest.Stats) string {
	if s.Successes > 0 || s.Failures < 50 {
		return ""
	}
	return fmt.Sprintf("source %s logged %d failed attempts and not one success: without the identities' own successes, an office's typos or a client's stale key look like an attack (false alerts are likely) and a compromise cannot be seen; log successful authentications too, or read the server's access log instead", s.Source, s.Failures)
}

// warnBlind prints a prominent warning for each source most of whose lines
// were skipped, and returns the sources that read lines but gave no event.
func warnBlind(w io.Writer, stats []*ingest.Stats) []string {
	var blind []string
	for _, s := range stats {
		if s.Lines == 0 {
			continue
		}
		skipped := s.Lines - s.Parsed
		useful := s.Parsed - s.FilteredBy[ingest.ErrNotAuthRoute.Error()]
		switch {
		case useful == 0 && skipped >= s.Filtered:
			blind = append(blind, s.Source)
			fmt.Fprintf(w, "\nWARNING: source %s is blind: none of its %d lines fits its layout (%s); compare its log_format with the server's\n", s.Source, s.Lines, skipReasons(s.Skipped))
		case useful == 0:
			blind = append(blind, s.Source)
			fmt.Fprintf(w, "\nWARNING: source %s is blind: none of its %d lines is on its identity paths or routes (%d filtered_route)\n", s.Source, s.Lines, s.FilteredBy[ingest.ErrNotAuthRoute.Error()])
		case skipped*2 > s.Lines:
			fmt.Fprintf(w, "\nWARNING: source %s skipped %d of %d lines (%s): what those lines hold is missing from these results\n", s.Source, skipped, s.Lines, skipReasons(s.Skipped))
		}
		if note := failuresOnly(s); note != "" {
			fmt.Fprintf(w, "\nWARNING: %s\n", note)
		}
	}
	return blind
}

// replaySecret returns the fingerprint secret. Without --db a replay is
// read-only towards the daemon's state: the configured secret is read if
// it can be, never created, and a one-off secret stands in otherwise.
func replaySecret(g *globals, f *replayFlags, cfg Config) ([]byte, error) {
	if f.db != "" || f.config == "" {
		return loadSecret(cfg.FingerprintSecretFile) // the case's own, kept with it
	}
	b, err := os.ReadFile(cfg.FingerprintSecretFile)
	if err == nil && len(b) >= 16 {
		return b, nil
	}
	why := "does not exist"
	switch {
	case err == nil:
		why = fmt.Sprintf("holds %d bytes, fewer than 16", len(b))
	case !errors.Is(err, fs.ErrNotExist):
		why = fmt.Sprintf("cannot be read (%v)", unwrapPath(err))
	}
	fmt.Fprintf(g.stderr, "spraywatch: note: fingerprint_secret_file %s %s; this replay fingerprints whole keys with a one-off secret (labels will not match the daemon's)\n", cfg.FingerprintSecretFile, why)
	return oneOffSecret(), nil
}

// stdinName is how standard input is named to people.
const stdinName = "(standard input)"

// spooled names the spooled copies of standard input and pipes for people.
var spooled = map[string]string{}

// displayName names a file for people: a spooled standard input is
// "(standard input)", a spooled pipe its own name.
func displayName(path string) string {
	if name, ok := spooled[path]; ok {
		return name
	}
	return path
}

// spoolStdin copies standard input, named "-" among files, and any named
// pipe (a shell's <(zcat x.log.gz)) to temporary files in a directory only
// this user can read, so that they can be read like any log (gzip
// included, rotated order, the replayed-files check). They are removed by
// cleanup, at the end of the replay.
func spoolStdin(ctx context.Context, files []string, stdin io.Reader) ([]string, func(), error) {
	i := slices.Index(files, "-")
	if i >= 0 && slices.Index(files[i+1:], "-") >= 0 {
		return nil, nil, fmt.Errorf("%w: - (standard input) can be given once", errUsage)
	}
	if f, ok := stdin.(*os.File); ok && i >= 0 && term.IsTerminal(int(f.Fd())) {
		return nil, nil, fmt.Errorf("%w: - reads standard input, which is a terminal here; pipe a log in (zcat x.log.gz | spraywatch replay ... -)", errUsage)
	}
	var dir string
	var made []string
	cleanup := func() {
		for _, p := range made {
			delete(spooled, p)
		}
		if dir != "" {
			os.RemoveAll(dir)
		}
	}
	out := slices.Clone(files)
	for j, name := range files {
		var in io.Reader
		display := name
		switch {
		case name == "-":
			in, display = stdin, stdinName
		default:
			fi, err := os.Stat(name)
			if err != nil || fi.Mode().IsRegular() || fi.IsDir() {
				continue // the reader reports what is wrong with it
			}
			pipe, err := os.Open(name)
			if err != nil {
				continue
			}
			defer pipe.Close()
			in, display = pipe, name+" (a pipe)"
		}
		if dir == "" {
			var err error
			if dir, err = os.MkdirTemp("", "spraywatch-stdin-"); err != nil {
				return nil, nil, err
			}
		}
		path := filepath.Join(dir, fmt.Sprintf("%d.log", j))
		f, err := os.Create(path)
		if err == nil {
			err = copyUntil(ctx, f, in)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if ctx.Err() != nil {
			cleanup()
			return nil, nil, ctx.Err()
		}
		if err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("read %s: %w", display, err)
		}
		spooled[path] = display
		made = append(made, path)
		out[j] = path
	}
	return out, cleanup, nil
}

// copyUntil copies in to out until in ends or ctx does: a signal stops a
// replay that is still reading a pipe that never ends (tail -f | replay -),
// even while a read waits for input.
func copyUntil(ctx context.Context, out io.Writer, in io.Reader) error {
	done := make(chan error, 2) // the copy's end and ctx's, whichever comes first is taken
	stop := context.AfterFunc(ctx, func() { done <- ctx.Err() })
	defer stop()
	go func() {
		_, err := io.Copy(out, readerCtx{ctx, in})
		done <- err
	}()
	return <-done
}

// readerCtx is a reader that ends once ctx does.
type readerCtx struct {
	ctx context.Context
	r   io.Reader
}

func (r readerCtx) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// replayStreams assigns files to sources and orders rotated sets.
func replayStreams(cfg Config, only string, files []string, secret []byte) ([]ingest.Stream, map[string]bool, error) {
	if len(cfg.Sources) == 0 {
		return nil, nil, fmt.Errorf("%w: sources: []: the config has no sources", errConfig)
	}
	bySource := map[string][]string{}
	noCred := map[string]bool{}
	sources := map[string]SourceConfig{}
	for _, s := range cfg.Sources {
		sources[s.Name] = s
	}
	if only != "" {
		if _, ok := sources[only]; !ok {
			return nil, nil, fmt.Errorf("%w: --source: %q: no such source in the config", errUsage, only)
		}
	}
	switch {
	case len(files) == 0:
		for _, s := range cfg.Sources {
			if only != "" && s.Name != only {
				continue
			}
			for _, p := range s.Paths {
				bySource[s.Name] = append(bySource[s.Name], expandRotated(p)...)
			}
		}
	default:
		for _, file := range files {
			name := only
			if name == "" && len(cfg.Sources) == 1 {
				name = cfg.Sources[0].Name
			}
			if name == "" {
				name = matchSource(cfg.Sources, file)
			}
			if name == "" {
				return nil, nil, fmt.Errorf("%w: %s matches no source's paths; name one with --source", errUsage, displayName(file))
			}
			bySource[name] = append(bySource[name], file)
		}
	}
	var streams []ingest.Stream
	names := make([]string, 0, len(bySource))
	for n := range bySource {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		opts, err := sources[name].options(secret)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: source %s: %w", errConfig, name, err)
		}
		for _, group := range ingest.ReplayOrder(bySource[name]) {
			p, err := ingest.NewParser(opts)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: source %s: %w", errConfig, name, err)
			}
			noCred[name] = !p.HasCredential()
			streams = append(streams, ingest.Stream{Parser: p, Paths: group})
		}
	}
	if len(streams) == 0 {
		return nil, nil, fmt.Errorf("%w: no files to replay: pass FILE arguments or set sources[].paths", errUsage)
	}
	return streams, noCred, nil
}

// expandRotated returns the files a configured path names, with their
// rotated siblings (path.1, path.2.gz, path-20261101.gz).
func expandRotated(pattern string) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range []string{pattern, pattern + ".*", pattern + "-*"} {
		matches, _ := filepath.Glob(p)
		for _, m := range matches {
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	if len(out) == 0 && !strings.ContainsAny(pattern, "*?[") {
		out = append(out, pattern) // let the reader report it missing
	}
	return out
}

func matchSource(sources []SourceConfig, file string) string {
	for _, s := range sources {
		for _, p := range s.Paths {
			for _, cand := range []string{p, p + ".*", p + "-*"} {
				if ok, _ := filepath.Match(cand, file); ok {
					return s.Name
				}
				if ok, _ := filepath.Match(filepath.Base(cand), filepath.Base(file)); ok {
					return s.Name
				}
			}
		}
	}
	return ""
}

type fileID struct {
	dev, inode uint64
	size       int64  // of the content: decompressed, for a compressed file
	head       string // "c:" and a hash of the content's first and last 4 KiB
	start      string // "s:" and a hash of the content's first 4 KiB
	// For a compressed file, its size and hash taken over the compressed
	// bytes, as versions before content hashing recorded it.
	legacySize int64
	legacy     string
}

// identify returns what identifies a file for the replayed-files check:
// the size of its content and a hash of the content's first and last 4 KiB
// (so a log that grew, or a copy of one, is told apart, and a rotated log
// compressed since is the same), a hash of its first 4 KiB (to tell that a
// log grew since), and its device and inode for the record.
func identify(path string) (fileID, error) {
	lf, err := ingest.Open(path)
	if err != nil {
		return fileID{}, err
	}
	defer lf.Close()
	f, err := os.Open(path)
	if err != nil {
		return fileID{}, err
	}
	defer f.Close()
	id := fileID{dev: lf.Dev, inode: lf.Inode}
	onDisk, first, err := hashEnds(f, lf.Size)
	if err != nil {
		return fileID{}, err
	}
	var magic [2]byte
	if n, _ := f.ReadAt(magic[:], 0); n < 2 || magic != [2]byte{0x1f, 0x8b} {
		id.size, id.head = lf.Size, onDisk
		id.start = startHash(first)
		return id, nil
	}
	// Compressed: the same hashes over the content, read whole.
	id.legacySize, id.legacy = lf.Size, onDisk
	first = make([]byte, 4096)
	n, err := io.ReadFull(lf.Reader(), first)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fileID{}, err
	}
	first = first[:n]
	last := &lastBytes{keep: 4096}
	rest, err := io.Copy(last, lf.Reader())
	if err != nil {
		return fileID{}, err
	}
	id.size = int64(n) + rest
	h := sha256.New()
	h.Write(first)
	h.Write(last.tail(min(4096, rest)))
	id.head = "c:" + hex.EncodeToString(h.Sum(nil)[:8])
	id.start = startHash(first)
	return id, nil
}

// hashEnds hashes the first and last 4 KiB of the size bytes of f, and
// returns the first bytes.
func hashEnds(f *os.File, size int64) (string, []byte, error) {
	h := sha256.New()
	first := make([]byte, 4096)
	n, _ := io.ReadFull(f, first)
	first = first[:n]
	h.Write(first)
	if size > int64(n) {
		tail := make([]byte, min(4096, size-int64(n)))
		if _, err := f.ReadAt(tail, size-int64(len(tail))); err != nil {
			return "", nil, err
		}
		h.Write(tail)
	}
	return "c:" + hex.EncodeToString(h.Sum(nil)[:8]), first, nil
}

func startHash(first []byte) string {
	sum := sha256.Sum256(first)
	return "s:" + hex.EncodeToString(sum[:8])
}

// lastBytes is a writer that keeps the last keep bytes written to it.
type lastBytes struct {
	keep int
	buf  []byte
}

func (l *lastBytes) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	if len(l.buf) > 2*l.keep {
		l.buf = append(l.buf[:0], l.buf[len(l.buf)-l.keep:]...)
	}
	return len(p), nil
}

// tail returns the last n (at most keep) bytes written.
func (l *lastBytes) tail(n int64) []byte { return l.buf[len(l.buf)-int(n):] }

func skipReplayed(ctx context.Context, store store, streams []ingest.Stream, force bool, since time.Time) ([]ingest.Stream, []string, error) {
	if force {
		return streams, nil, nil
	}
	var out []ingest.Stream
	var skipped []string
	for _, st := range streams {
		var keep []string
		for _, p := range st.Paths {
			id, err := identify(p)
			if err != nil {
				keep = append(keep, p) // the reader reports it
				continue
			}
			prev, seen, err := store.WasReplayed(ctx, id.size, id.head)
			if err == nil && !seen && id.legacy != "" {
				prev, seen, err = store.WasReplayed(ctx, id.legacySize, id.legacy)
			}
			if err != nil {
				return nil, nil, err
			}
			if seen {
				skipped = append(skipped, fmt.Sprintf("%s (as %s)", p, prev))
				continue
			}
			if prev, partial, err := store.WasReplayed(ctx, -id.size, id.head); err != nil {
				return nil, nil, err
			} else if partial {
				return nil, nil, fmt.Errorf("%w: %s (as %s)", errPartlyReplayed, p, prev)
			}
			if prev, size, ok, err := store.ReplayedStart(ctx, id.start); err != nil {
				return nil, nil, err
			} else if ok && size < id.size {
				t, known := lineTimeBefore(p, size, st.Parser)
				if !known || since.IsZero() || !t.Before(since) {
					return nil, nil, grownError(p, prev, size, t, known)
				}
				// --since after what was read then: only its later lines count.
			}
			keep = append(keep, p)
		}
		if len(keep) > 0 {
			out = append(out, ingest.Stream{Parser: st.Parser, Paths: keep})
		}
	}
	return out, skipped, nil
}

// grownError refuses a file that begins like one replayed into the database
// when it held size bytes (prev): it grew since, and reading it again would
// count those bytes twice. It names the time of the last line then read
// (last, when known), for --since.
func grownError(path, prev string, size int64, last time.Time, known bool) error {
	msg := fmt.Sprintf("%s begins like %s, which was replayed into this database when it held %d bytes: it grew since, and replaying it again would count those bytes twice", path, prev, size)
	if known {
		msg += fmt.Sprintf("; replay only its later lines with --since %s (the earlier replay read up to a line of %s)", last.Add(time.Second).UTC().Format(time.RFC3339), last.UTC().Format(time.RFC3339))
	}
	return fmt.Errorf("%s, or replay into a new database (--force reads it all again)", msg)
}

// lineTimeBefore parses the last line of path that ends within its first
// size bytes (of content) and returns its time.
func lineTimeBefore(path string, size int64, p *ingest.Parser) (time.Time, bool) {
	lf, err := ingest.Open(path)
	if err != nil {
		return time.Time{}, false
	}
	defer lf.Close()
	lr := ingest.NewLineReader(io.LimitReader(lf.Reader(), size), 0, 64<<10)
	var last []byte
	for {
		line, _, err := lr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil {
			last = append(last[:0], line...)
		}
	}
	var ev ingest.Event
	if last == nil || p.Parse(last, &ev) != nil {
		return time.Time{}, false
	}
	return ev.Time, true
}

// replayBatchRows is how many rows a replay gathers before it writes them.
// The engine hands them over in batches of a sixteenth as many lines,
// small enough to be read back from the cache the two cores share.
// replaySentHook, when set (by tests), is called with the number of
// batches handed over so far.
var (
	replayBatchRows = 50_000
	replaySentHook  func(sent int)
)

// mergeBatch adds newer to b, to be written in one transaction as writing
// b and then newer would: the counts are added, and an incident's newer
// snapshot replaces its older one.
func mergeBatch(b *detect.Batch, newer detect.Batch) {
	b.Attempts.Absorb(newer.Attempts)
	seen := map[int64]bool{}
	for _, inc := range append(newer.Incidents[:len(newer.Incidents):len(newer.Incidents)], newer.Quiet...) {
		seen[inc.ID] = true
	}
	older := func(inc *detect.Incident) bool { return seen[inc.ID] }
	b.Incidents = append(slices.DeleteFunc(b.Incidents, older), newer.Incidents...)
	b.Quiet = append(slices.DeleteFunc(b.Quiet, older), newer.Quiet...)
	if b.Identities == nil {
		b.Identities = map[int64][]string{}
	}
	for id, idents := range newer.Identities {
		b.Identities[id] = append(b.Identities[id], idents...)
	}
	b.Positions = append(b.Positions, newer.Positions...)
	b.Replayed = append(b.Replayed, newer.Replayed...)
}

// errPartlyReplayed refuses a file that a replay which stopped before its
// end counted in part into the database: counting it again would count that
// part twice.
var errPartlyReplayed = errors.New("an earlier replay into this database stopped before the end of this file, so it holds the counts of part of it; replaying it again would count that part twice: replay into a new database (or pass --force to count it all again anyway)")

// markPartial records the files of a replay that stopped before its end
// after writing counts: each is recorded as replayed with its size negated,
// so that a later replay into the database refuses it (see
// errPartlyReplayed). It is written even when the replay was interrupted.
func markPartial(w io.Writer, store store, streams []ingest.Stream, failed map[string]error, db string) {
	files := replayedFiles(streams, failed)
	for i := range files {
		files[i].Size = -files[i].Size
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := store.Flush(ctx, detect.Batch{Replayed: files}); err != nil {
		fmt.Fprintf(w, "spraywatch: %s holds the counts of part of the replayed files, and marking them so failed (%v): do not replay them into it again; replay into a new database\n", db, err)
		return
	}
	fmt.Fprintf(w, "spraywatch: %s holds the counts of part of the replayed files; a later replay of them into it is refused (it would count that part twice)\n", db)
}

func replayedFiles(streams []ingest.Stream, failed map[string]error) []detect.ReplayedFile {
	var out []detect.ReplayedFile
	for _, st := range streams {
		for _, p := range st.Paths {
			if failed[p] != nil {
				continue
			}
			if id, err := identify(p); err == nil {
				f := detect.ReplayedFile{Dev: id.dev, Inode: id.inode, Size: id.size, Head: id.head, Path: p, Source: st.Parser.Name(), At: time.Now()}
				out = append(out, f)
				if f.Head = id.start; f.Head != id.head { // what the log began with, to tell it grew
					out = append(out, f)
				}
			}
		}
	}
	return out
}

func totalSize(streams []ingest.Stream) int64 {
	var n int64
	for _, st := range streams {
		for _, p := range st.Paths {
			if fi, err := os.Stat(p); err == nil {
				n += fi.Size()
			}
		}
	}
	return n
}

// writeSummary prints what the replay read, per source.
func writeSummary(w io.Writer, stats []*ingest.Stats, elapsed time.Duration, incidents int, db string, kept bool) {
	var lines int64
	for _, s := range stats {
		lines += s.Lines
		span := "no events"
		if !s.First.IsZero() {
			span = s.First.UTC().Format(time.RFC3339) + " .. " + s.Last.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "source %s: %s, %d lines read, %d parsed (%d filtered%s), %d skipped; %s\n",
			s.Source, counted(s.Files, "file", "files"), s.Lines, s.Parsed, s.Filtered, filteredBy(s.FilteredBy), s.Lines-s.Parsed, span)
		reasons := make([]string, 0, len(s.Skipped))
		for r := range s.Skipped {
			reasons = append(reasons, r)
		}
		sort.Strings(reasons)
		for _, r := range reasons {
			fmt.Fprintf(w, "  skipped %-16s %d  e.g. %s\n", r, s.Skipped[r], s.Samples[r])
		}
		if s.SchemeOnly > 0 {
			fmt.Fprintf(w, "  warning: %d credentials were only a scheme prefix such as sk_live_, which cannot tell keys apart; log more of the key prefix\n", s.SchemeOnly)
		}
		if s.RawCredentials > 0 {
			fmt.Fprintf(w, "  warning: %d lines held whole API keys (fingerprinted, never stored); log a prefix instead (if the field holds prefixes already, set credential.kind: prefix)\n", s.RawCredentials)
		}
		if s.OutOfOrder > 0 {
			fmt.Fprintf(w, "  note: %d lines were more than a minute older than lines before them\n", s.OutOfOrder)
		}
	}
	rate := float64(lines) / max(elapsed.Seconds(), 1e-9)
	fmt.Fprintf(w, "%d incidents; %d lines in %s (%.0f lines/s", incidents, lines, elapsed.Round(time.Millisecond), rate)
	if rss := peakRSS(); rss > 0 {
		fmt.Fprintf(w, ", peak RSS %d MB", rss>>20)
	}
	fmt.Fprint(w, ")")
	if kept {
		fmt.Fprintf(w, "; case kept in %s", db)
	}
	fmt.Fprintln(w)
}

// filteredBy renders ": 20 filtered_route, 125 joined" for the summary.
func filteredBy(m map[string]int64) string {
	if len(m) == 0 {
		return ""
	}
	reasons := make([]string, 0, len(m))
	for r := range m {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = fmt.Sprintf("%d %s", m[r], r)
	}
	return ": " + strings.Join(parts, ", ")
}

// peakRSS returns the process's peak resident set size in bytes (Linux
// VmHWM), or 0 where it is not available.
func peakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb << 10
		}
	}
	return 0
}
