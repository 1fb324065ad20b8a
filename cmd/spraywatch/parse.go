package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spraywatch/spraywatch/ingest"
)

type parseFlags struct {
	config, source string
	quiet          bool
}

func newParseCmd(g *globals) *cobra.Command {
	f := &parseFlags{}
	c := &cobra.Command{
		Use:   "parse --config FILE [--source NAME] LOG",
		Short: "Show how a source's config reads a log: events, skips and their reasons",
		Long: `parse reads LOG with a configured source exactly as replay and run would, and
prints every event as a JSON line (credentials as labels only: a logged prefix,
or the first characters of a whole key and its keyed fingerprint). It then
prints a summary on stderr: lines matched, lines filtered and why, lines
skipped by reason with one redacted example each, the fields no line ever
filled, and a warning when the credential is only ever a bare scheme prefix
such as sk_live_, which cannot tell keys apart.

Without --source, LOG is read as the config's only source, or as the source
whose paths match it.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runParse(cmd.Context(), g, f, args[0])
		},
	}
	fl := c.Flags()
	fl.StringVarP(&f.config, "config", "c", "", "config file (required)")
	fl.StringVar(&f.source, "source", "", "read LOG as this configured source")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print only the summary")
	return c
}

// parseReport is what parsing one file came to.
type parseReport struct {
	Stats *ingest.Stats
	// Unfilled lists the roles the source can fill that no line did.
	Unfilled []string
	// NoCredential is set for sources whose format logs no credential.
	NoCredential bool
	// EphemeralSecret is set when the fingerprint secret file did not
	// exist or could not be read, so fingerprints differ from the stored ones.
	EphemeralSecret bool
}

func runParse(ctx context.Context, g *globals, f *parseFlags, file string) error {
	if f.config == "" {
		return fmt.Errorf("%w: --config is required", errUsage)
	}
	cfg, err := LoadConfig(f.config)
	if err != nil {
		return err
	}
	src, err := pickSource(cfg, f.source, file)
	if err != nil {
		return err
	}
	var events io.Writer = g.stdout
	if f.quiet {
		events = io.Discard
	}
	rep, err := parseLog(ctx, cfg, src, file, events, time.Now())
	if err != nil {
		return err
	}
	writeParseSummary(g.stderr, src, rep)
	return nil
}

// pickSource returns the source a file is read as.
func pickSource(cfg Config, name, file string) (SourceConfig, error) {
	if name == "" && len(cfg.Sources) == 1 {
		name = cfg.Sources[0].Name
	}
	if name == "" {
		name = matchSource(cfg.Sources, file)
	}
	for _, s := range cfg.Sources {
		if s.Name == name {
			return s, nil
		}
	}
	if name == "" {
		return SourceConfig{}, fmt.Errorf("%w: %s matches no source's paths; name one with --source", errUsage, file)
	}
	return SourceConfig{}, fmt.Errorf("%w: --source: %q: no such source in the config", errUsage, name)
}

// parseSecret reads the fingerprint secret without creating it: parse is a
// dry run. A missing file gives a random secret for this run.
func parseSecret(path string) ([]byte, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return oneOffSecret(), true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read fingerprint secret %s: %w", path, err)
	}
	return b, false, nil
}

// oneOffSecret is a random fingerprint secret for one run.
func oneOffSecret() []byte {
	secret := make([]byte, 32)
	_, _ = rand.Read(secret) // crypto/rand.Read never fails on Linux
	return secret
}

// eventJSON is an event as parse prints it.
type eventJSON struct {
	Time          string  `json:"time"`
	Source        string  `json:"source"`
	IP            string  `json:"ip"`
	Identity      string  `json:"identity,omitempty"`
	Credential    string  `json:"credential,omitempty"`
	RawCredential bool    `json:"raw_credential,omitempty"`
	Outcome       string  `json:"outcome"`
	Status        int     `json:"status,omitempty"`
	Method        string  `json:"method,omitempty"`
	Route         string  `json:"route,omitempty"`
	LatencyMS     float64 `json:"latency_ms,omitempty"`
	Offset        int64   `json:"offset"`
}

func toJSON(ev *ingest.Event) eventJSON {
	e := eventJSON{Time: ev.Time.UTC().Format(time.RFC3339Nano), Source: ev.Source, IP: ev.IP.String(), Identity: ev.Identity,
		Credential: ev.Credential, RawCredential: ev.RawCredential, Outcome: ev.Outcome.String(), Status: ev.Status,
		Method: ev.Method, Route: ev.Route, Offset: ev.Pos.Offset}
	if ev.HasLatency {
		e.LatencyMS = float64(ev.Latency.Microseconds()) / 1000
	}
	return e
}

// parseLog reads file as src, writing events to out as JSON lines. now
// bounds event times: later than a day after it is future_time.
func parseLog(ctx context.Context, cfg Config, src SourceConfig, file string, out io.Writer, now time.Time) (*parseReport, error) {
	secret, ephemeral, err := parseSecret(cfg.FingerprintSecretFile)
	if err != nil {
		secret, ephemeral = oneOffSecret(), true // a dry run needs no daemon's secret
	}
	opts, err := src.options(secret)
	if err != nil {
		return nil, fmt.Errorf("%w: source %s: %w", errConfig, src.Name, err)
	}
	p, err := ingest.NewParser(opts)
	if err != nil {
		return nil, fmt.Errorf("%w: source %s: %w", errConfig, src.Name, err)
	}
	enc := json.NewEncoder(out)
	stats, err := scanLog(ctx, p, file, scanOptions{maxLineBytes: cfg.MaxLineBytes, notAfter: now.Add(24 * time.Hour)},
		func(ev *ingest.Event) error { return enc.Encode(toJSON(ev)) })
	if err != nil {
		return nil, err
	}
	rep := &parseReport{Stats: stats, NoCredential: !p.HasCredential(), EphemeralSecret: ephemeral}
	for role, filled := range p.Filled() {
		if !filled {
			rep.Unfilled = append(rep.Unfilled, role)
		}
	}
	sort.Strings(rep.Unfilled)
	return rep, nil
}

// scanOptions bound what scanLog reads.
type scanOptions struct {
	// tailBytes, when set, reads only the last tailBytes of a plain file
	// (from the first whole line); maxLines, when set, stops after that
	// many lines.
	tailBytes    int64
	maxLines     int64
	maxLineBytes int
	// notAfter: events later than it are skipped as future_time.
	notAfter time.Time
}

// scanLog reads one file with p, counting every line and calling fn with
// each event kept.
func scanLog(ctx context.Context, p *ingest.Parser, file string, o scanOptions, fn func(*ingest.Event) error) (*ingest.Stats, error) {
	lf, err := ingest.Open(file)
	if err != nil {
		return nil, errors.New(fileProblem(file, err))
	}
	defer lf.Close()
	stats := ingest.NewStats(p.Name())
	stats.Files = 1
	var start int64
	r := lf.Reader()
	if f, ok := r.(*os.File); ok && o.tailBytes > 0 && lf.Size > o.tailBytes {
		start = lf.Size - o.tailBytes
		if _, err := f.Seek(start, io.SeekStart); err != nil {
			return nil, errors.New(fileProblem(file, err))
		}
	}
	lr := ingest.NewLineReader(r, start, o.maxLineBytes)
	if start > 0 {
		_, _, _ = lr.Next() // the first line read is most likely cut
	}
	var ev ingest.Event
	for n := int64(0); o.maxLines == 0 || n < o.maxLines; n++ {
		line, off, err := lr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, ingest.ErrTooLong) {
			stats.Lines++
			stats.Skip(ingest.ErrTooLong.Error(), lr.TooLongHead())
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("cannot read %s at byte %d: %w", file, off, unwrapPath(err))
		}
		if n&1023 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// Parse may rewrite the line in place; keep the original for the
		// redacted sample.
		orig := append([]byte(nil), line...)
		perr := p.Parse(line, &ev)
		if perr == nil && !o.notAfter.IsZero() && ev.Time.After(o.notAfter) {
			perr = ingest.ErrFuture
		}
		if !stats.Classify(perr, orig) {
			continue
		}
		ev.Pos = ingest.Pos{File: file, Inode: lf.Inode, Offset: off}
		stats.Observe(&ev)
		if err := fn(&ev); err != nil {
			return nil, err
		}
	}
	return stats, nil
}

// unwrapPath drops a *fs.PathError's own "op path:" when the message
// already names the path.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func writeParseSummary(w io.Writer, src SourceConfig, rep *parseReport) {
	s := rep.Stats
	skipped := s.Lines - s.Parsed
	fmt.Fprintf(w, "source %s (format %s): %d lines, %d matched, %d filtered, %d skipped\n",
		src.Name, src.Format, s.Lines, s.Parsed-s.Filtered, s.Filtered, skipped)
	for _, r := range sortedKeys(s.FilteredBy) {
		fmt.Fprintf(w, "  filtered %-18s %d  (%s)\n", r, s.FilteredBy[r], filteredWhy[r])
	}
	for _, r := range sortedKeys(s.Skipped) {
		fmt.Fprintf(w, "  skipped  %-18s %d  e.g. %s\n", r, s.Skipped[r], s.Samples[r])
	}
	if len(rep.Unfilled) > 0 {
		fmt.Fprintf(w, "  fields never filled: %s\n", strings.Join(rep.Unfilled, ", "))
	}
	switch {
	case s.SchemeOnly > 0 && s.SchemeOnly == s.Credentials:
		fmt.Fprintf(w, "  warning: the credential is only ever a bare scheme prefix such as sk_live_ (%d events), which cannot tell keys apart; log more of the key (e.g. its first 12 characters)\n", s.SchemeOnly)
	case s.SchemeOnly > 0:
		fmt.Fprintf(w, "  warning: %d of %d credentials are only a bare scheme prefix such as sk_live_, which cannot tell keys apart\n", s.SchemeOnly, s.Credentials)
	}
	if s.RawCredentials > 0 {
		fmt.Fprintf(w, "  warning: %d lines held whole API keys (fingerprinted at once, shown as labels); log a prefix instead (raw_credentials_in_logs; if the field holds prefixes already, set credential.kind: prefix)\n", s.RawCredentials)
	}
	if rep.NoCredential {
		fmt.Fprintf(w, "  note: no credential in this format: spray is found on identities per address with credentials unknown; spray and stuffing are not told apart\n")
	}
	if s.OutOfOrder > 0 {
		fmt.Fprintf(w, "  note: %d lines were more than a minute older than lines before them\n", s.OutOfOrder)
	}
	if rep.EphemeralSecret {
		fmt.Fprintf(w, "  note: fingerprint_secret_file does not exist or cannot be read; fingerprints shown use a one-off secret\n")
	}
}

var filteredWhy = map[string]string{
	ingest.ErrNotAuthRoute.Error(): "outside the configured routes or identity paths",
	ingest.ErrJoined.Error():       "werkzeug access line of a request the app line already counted",
	ingest.ErrNoise.Error():        "server banner or traceback, not a request",
}

func sortedKeys(m map[string]int64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
