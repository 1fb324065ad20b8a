package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/spraywatch/spraywatch/detect/postgres"
	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/ingest/gunicorn"
	"github.com/spraywatch/spraywatch/ingest/tail"
)

type checkFlags struct {
	config, sample, source string
	role                   string
}

func newCheckCmd(g *globals) *cobra.Command {
	f := &checkFlags{}
	c := &cobra.Command{
		Use:   "check --config FILE [--sample LOG [--source NAME]]",
		Short: "Validate a config, then read each source's newest log to see that it would detect",
		Long: `check validates the config (every problem names its field and value), then
reads the end of each source's newest log, or LOG given with --sample, exactly as
run and replay would, and reports what would keep the source from detecting:

  error    a path that matches no file or cannot be read; no line fits the
           layout; no line is on an identity path; the identity, the credential
           or the status is never filled; the credential is only ever a bare
           scheme prefix such as sk_live_; lines dated ahead of this machine's
           clock (a wrong timezone)
  warning  many lines skipped; one or two loopback or private addresses (a
           proxy's) carrying most events or every success; a Flask source
           whose app and access lines never join; an address taken from
           X-Forwarded-For without trusted_proxies; secret files that others can read; a database
           or fingerprint secret this user cannot create or write, or a
           metrics_listen address already taken (run would stop at start)
  note     fields never filled; a format without credentials

Any error exits with status 2, as a bad config does.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCheck(cmd.Context(), g, f, time.Now())
		},
	}
	c.Flags().StringVarP(&f.config, "config", "c", "", "config file (required)")
	c.Flags().StringVar(&f.sample, "sample", "", "check the source against this log instead of its paths")
	c.Flags().StringVar(&f.source, "source", "", "with --sample: read LOG as this source (default: the only one, or the one whose paths match)")
	c.Flags().StringVar(&f.role, "role", roleAll, "the role run will have: all or agent read the sources' logs; judge reads none, so they are not read")
	return c
}

// checkTailBytes is how much of the end of a plain log check reads;
// checkMaxLines bounds the lines read from a compressed one.
const (
	checkTailBytes = 4 << 20
	checkMaxLines  = 50_000
)

// aheadHint is what to do about lines dated ahead of the clock: the zone
// applies only to times written without one.
const aheadHint = "if the log's times carry no zone, set timezone to the zone they are written in; if they carry one (+0000), this machine's clock or the log's host's is wrong"

// sourceCheck is what checking one source against its log came to.
type sourceCheck struct {
	file                    string
	stats                   *ingest.Stats
	errs, warnings, notes   []string
	unfilled                []string
	ahead                   time.Duration
	identities, attempts    int64
	noCredential, ephemeral bool
	addrs                   addrCounts
	trusted                 []netip.Prefix
	// keyed and unkeyed count a Flask source's events with a credential
	// (its app lines) and without (werkzeug's access lines).
	keyed, unkeyed int64
}

// addrCounts counts events and successes per client address, up to
// maxCheckAddrs addresses (past that no one or two can carry most lines).
type addrCounts struct {
	events, successes map[netip.Addr]int64
}

const maxCheckAddrs = 10_000

func (a *addrCounts) add(ev *ingest.Event) {
	if a.events == nil {
		a.events, a.successes = map[netip.Addr]int64{}, map[netip.Addr]int64{}
	}
	if _, ok := a.events[ev.IP]; !ok && len(a.events) >= maxCheckAddrs {
		return
	}
	a.events[ev.IP]++
	if ev.Outcome == ingest.Success {
		a.successes[ev.IP]++
	}
}

// top returns the (at most) two addresses with the most counts in m, most
// first, and their sum.
func top2(m map[netip.Addr]int64) ([]netip.Addr, int64) {
	var out []netip.Addr
	for a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, func(x, y netip.Addr) int {
		if m[x] != m[y] {
			return int(m[y] - m[x])
		}
		return x.Compare(y)
	})
	if len(out) > 2 {
		out = out[:2]
	}
	var n int64
	for _, a := range out {
		n += m[a]
	}
	return out, n
}

func (c *sourceCheck) errorf(format string, a ...any) {
	c.errs = append(c.errs, fmt.Sprintf(format, a...))
}
func (c *sourceCheck) warnf(format string, a ...any) {
	c.warnings = append(c.warnings, fmt.Sprintf(format, a...))
}
func (c *sourceCheck) notef(format string, a ...any) {
	c.notes = append(c.notes, fmt.Sprintf(format, a...))
}

func runCheck(ctx context.Context, g *globals, f *checkFlags, now time.Time) error {
	if f.config == "" {
		return fmt.Errorf("%w: --config is required", errUsage)
	}
	if f.source != "" && f.sample == "" {
		return fmt.Errorf("%w: --source only applies with --sample", errUsage)
	}
	switch f.role {
	case "", roleAll, roleAgent, roleJudge:
	default:
		return fmt.Errorf("%w: --role: %q: must be all, agent or judge", errUsage, f.role)
	}
	cfg, err := LoadConfig(f.config)
	if err != nil {
		return err
	}
	// What run reads at start: a secret it cannot have fails here too.
	if err := checkAlertSecrets(cfg.Alerts); err != nil {
		return err
	}
	for _, w := range openSecretFiles(cfg) {
		fmt.Fprintf(g.stdout, "warning: %s\n", w)
	}
	for _, w := range stateProblems(cfg) {
		fmt.Fprintf(g.stdout, "warning: %s\n", w)
	}
	sources := cfg.Sources
	if f.sample != "" {
		src, err := pickSource(cfg, f.source, f.sample)
		if err != nil {
			return err
		}
		sources = []SourceConfig{src}
	}
	if len(sources) == 0 {
		return fmt.Errorf("%w: sources: []: the config has no sources, so nothing is read", errConfig)
	}
	if f.role == roleJudge && f.sample == "" {
		// A judge reads no logs: its sources only name what the agents send.
		fmt.Fprintf(g.stdout, "%s: ok (judge: %d source(s) validated; their logs are read by the agents, check them there)\n", f.config, len(sources))
		return nil
	}
	var failing []string
	for _, s := range sources {
		fmt.Fprintf(g.stdout, "source %s: format %s, %d path(s)\n", s.Name, s.Format, len(s.Paths))
		var files []string
		if f.sample != "" {
			files = []string{f.sample}
		}
		sc := checkSource(ctx, cfg, s, files, now)
		writeSourceCheck(g.stdout, sc)
		if len(sc.errs) > 0 {
			failing = append(failing, s.Name)
		}
	}
	if len(failing) > 0 {
		return fmt.Errorf("%w: %s: source(s) %s would miss attacks as configured; see the errors above", errConfig, f.config, strings.Join(failing, ", "))
	}
	fmt.Fprintf(g.stdout, "%s: ok\n", f.config)
	return nil
}

// stateProblems lists what would stop run at start although the config is
// valid: a database or fingerprint secret this user cannot create or
// write, a metrics address already taken. They are warnings, not errors,
// because check may be run as another user than the daemon (the systemd
// unit's StateDirectory creates /var/lib/spraywatch for it).
func stateProblems(cfg Config) []string {
	const hint = "run check as the user spraywatch runs as"
	var out []string
	if !postgres.IsURL(cfg.Database) {
		if why := unwritable(cfg.Database); why != "" {
			out = append(out, fmt.Sprintf("database: %s: %s, so run would stop at start (%s)", cfg.Database, why, hint))
		}
	}
	if f := cfg.FingerprintSecretFile; f != "" {
		if _, err := os.Stat(f); err == nil {
			if r, err := os.Open(f); err != nil {
				out = append(out, fmt.Sprintf("fingerprint_secret_file: %s cannot be read (%v), so run would stop at start (%s)", f, unwrapPath(err), hint))
			} else {
				r.Close()
			}
		} else if why := unwritable(f); why != "" {
			out = append(out, fmt.Sprintf("fingerprint_secret_file: %s does not exist and cannot be created: %s (%s)", f, why, hint))
		}
	}
	if addr := cfg.MetricsListen; addr != "" {
		if l, err := net.Listen("tcp", addr); err != nil {
			why := ""
			if errors.Is(err, syscall.EADDRINUSE) {
				why = "; is another spraywatch running?"
			}
			out = append(out, fmt.Sprintf("metrics_listen: %s cannot be listened on (%v), so run would stop at start%s", addr, unwrapNet(err), why))
		} else {
			l.Close()
		}
	}
	return out
}

// unwritable says why this user could not create or write the file at
// path, or "" if it could: an existing file must be writable, a new one
// needs a writable directory (or the nearest existing ancestor, which run
// creates the rest under).
func unwritable(path string) string {
	if st, err := os.Stat(path); err == nil {
		if st.IsDir() {
			return "is a directory"
		}
		if err := syscall.Access(path, 0x2 /* W_OK */); err != nil {
			return fmt.Sprintf("is not writable by this user (%v)", err)
		}
		return ""
	}
	dir := filepath.Dir(path)
	for {
		st, err := os.Stat(dir)
		if err == nil {
			if !st.IsDir() {
				return fmt.Sprintf("%s is not a directory", dir)
			}
			if err := syscall.Access(dir, 0x2|0x1 /* W_OK|X_OK */); err != nil {
				return fmt.Sprintf("directory %s is not writable by this user (%v)", dir, err)
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// unwrapNet drops the "listen tcp ADDR:" prefix a net error repeats.
func unwrapNet(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// openSecretFiles lists the secret files others can read, as run warns.
func openSecretFiles(cfg Config) []string {
	var out []string
	if secretFileTooOpen(cfg.FingerprintSecretFile) {
		out = append(out, fmt.Sprintf("fingerprint_secret_file: %s is readable by others; chmod 600 it", cfg.FingerprintSecretFile))
	}
	for i, a := range cfg.Alerts {
		for _, r := range a.secretRefs() {
			if !r.env && secretFileTooOpen(r.value) {
				out = append(out, fmt.Sprintf("alerts[%d].%s: %s is readable by others; chmod 600 it", i, r.key, r.value))
			}
		}
	}
	return out
}

// checkSource reads the newest of a source's files (or files, when given)
// and judges whether the source would detect anything.
func checkSource(ctx context.Context, cfg Config, src SourceConfig, files []string, now time.Time) *sourceCheck {
	sc := &sourceCheck{}
	if files == nil {
		if len(src.Paths) == 0 {
			sc.notef("no paths: only FILE arguments to replay are read as this source")
			return sc
		}
		for j, p := range src.Paths {
			matches, _ := filepath.Glob(p)
			why := tail.Unfollowed(p)
			switch {
			case len(matches) > 0 && why != "":
				// A directory, or only rotated files: run follows none
				// (a replay reads rotated ones).
				sc.warnf("paths[%d]: %s", j, why)
				files = append(files, matches...)
			case len(matches) > 0:
				files = append(files, matches...)
			case strings.ContainsAny(p, "*?["):
				sc.errorf("paths[%d]: %q: matches no file", j, p)
			default:
				if _, err := os.Stat(p); err != nil {
					sc.errorf("paths[%d]: %s", j, fileProblem(p, err))
				}
			}
		}
	}
	file, err := newestReadable(files)
	if err != nil {
		sc.errorf("%s", err)
		return sc
	}
	if file == "" {
		return sc
	}
	sc.file = file
	secret, ephemeral, err := parseSecret(cfg.FingerprintSecretFile)
	if err != nil {
		secret, ephemeral = oneOffSecret(), true
	}
	sc.ephemeral = ephemeral
	opts, err := src.options(secret)
	if err != nil {
		sc.errorf("%v", err)
		return sc
	}
	p, err := ingest.NewParser(opts)
	if err != nil {
		sc.errorf("%v", err)
		return sc
	}
	sc.noCredential = !p.HasCredential()
	sc.trusted = opts.TrustedProxies
	if sc.trusted == nil {
		sc.trusted = ingest.DefaultTrustedProxies
	}
	idents := map[string]bool{}
	notAfter := now.Add(24 * time.Hour)
	stats, err := scanLog(ctx, p, file, scanOptions{tailBytes: checkTailBytes, maxLines: checkMaxLines, maxLineBytes: cfg.MaxLineBytes, notAfter: notAfter},
		func(ev *ingest.Event) error {
			if ev.Identity != "" && len(idents) < 1000 {
				idents[ev.Identity] = true
			}
			if ev.Outcome.Attempt() {
				sc.attempts++
			}
			sc.addrs.add(ev)
			if ev.Credential != "" {
				sc.keyed++
			} else {
				sc.unkeyed++
			}
			if d := ev.Time.Sub(now); d > sc.ahead {
				sc.ahead = d
			}
			return nil
		})
	if err != nil {
		sc.errorf("%v", err)
		return sc
	}
	sc.stats = stats
	sc.identities = int64(len(idents))
	for role, filled := range p.Filled() {
		if !filled {
			sc.unfilled = append(sc.unfilled, role)
		}
	}
	slices.Sort(sc.unfilled)
	judge(sc, src)
	return sc
}

// judge turns what a source's log came to into errors, warnings and notes.
func judge(sc *sourceCheck, src SourceConfig) {
	s := sc.stats
	if s.Lines == 0 {
		sc.warnf("%s is empty: nothing to judge the layout by; check again with --sample on a log that has lines", sc.file)
		return
	}
	events := s.Parsed - s.Filtered
	skipped := s.Lines - s.Parsed
	top, topN := "", int64(0)
	for r, n := range s.Skipped {
		if n > topN || (n == topN && r < top) {
			top, topN = r, n
		}
	}
	if events == 0 {
		switch {
		case s.Skipped[ingest.ErrFuture.Error()] == skipped && skipped > s.Filtered:
			sc.errorf("timezone: %q: every line is dated more than a day ahead of this machine's clock (%d future_time); %s", src.Timezone, skipped, aheadHint)
		case skipped >= s.Filtered:
			sc.errorf("no line fits the layout: %d of %d lines skipped (%s), e.g. %s; compare log_format with the server's, character for character", skipped, s.Lines, skipReasons(s.Skipped), s.Samples[top])
		case s.FilteredBy[ingest.ErrNotAuthRoute.Error()] > 0:
			sc.errorf("no line is on an identity path or route: %d of %d lines filtered_route; check identity.path %q (the client ID's segment is written {identity}), routes and ignore_routes", s.FilteredBy[ingest.ErrNotAuthRoute.Error()], s.Lines, src.Identity.Path)
		default:
			sc.errorf("no line gives an event: %d of %d lines filtered (%s)", s.Filtered, s.Lines, strings.TrimPrefix(filteredBy(s.FilteredBy), ": "))
		}
		return
	}
	switch rate := float64(skipped) / float64(s.Lines); {
	case rate > 0.5:
		sc.errorf("most lines do not fit: %d of %d skipped (%s), e.g. %s", skipped, s.Lines, skipReasons(s.Skipped), s.Samples[top])
	case skipped > 0 && rate > 0.01:
		sc.warnf("%d of %d lines skipped (%s), e.g. %s", skipped, s.Lines, skipReasons(s.Skipped), s.Samples[top])
	}
	if slices.Contains(sc.unfilled, "identity") {
		sc.errorf("identity: no line gave a client ID: check identity (path %q, query %q, field %q, remote_user %v); a path template names its segment {identity}",
			src.Identity.Path, src.Identity.Query, src.Identity.Field, src.Identity.RemoteUser)
	}
	if !sc.noCredential && slices.Contains(sc.unfilled, "credential") {
		sc.errorf("credential: no line carried one (every value empty or -): check credential.field %q against the log", credentialField(src))
	}
	switch {
	case s.SchemeOnly > 0 && s.SchemeOnly == s.Credentials:
		sc.errorf("credential: only ever a bare scheme prefix such as sk_live_ (%d events), which cannot tell keys apart: log more of the key, e.g. its first 12 characters", s.SchemeOnly)
	case s.SchemeOnly > 0:
		sc.warnf("%d of %d credentials are only a bare scheme prefix such as sk_live_, which cannot tell keys apart", s.SchemeOnly, s.Credentials)
	}
	if slices.Contains(sc.unfilled, "status") && slices.Contains(sc.unfilled, "outcome") {
		sc.errorf("no line has a status or an outcome, so no attempt can be told to have failed")
	}
	if sc.ahead > 5*time.Minute {
		zone := src.Timezone
		if zone == "" {
			zone = "Local"
		}
		sc.errorf("timezone: %q: lines are dated up to %s ahead of this machine's clock; %s", zone, sc.ahead.Round(time.Minute), aheadHint)
	}
	if note := failuresOnly(s); note != "" {
		sc.warnf("%s", note)
	}
	proxyWarnings(sc, src, events)
	if s.RawCredentials > 0 {
		sc.warnf("%d lines held whole API keys (fingerprinted at once, never stored); log a prefix instead (if the field holds prefixes already, a name saying key makes them count as keys: set credential.kind: prefix)", s.RawCredentials)
	}
}

// Thresholds of the proxy warnings: how many events (and successes) a log
// needs before one or two addresses carrying most of them means a proxy.
const (
	proxyMinEvents    = 50
	proxyMinSuccesses = 10
	proxyShare        = 0.9
)

// proxyWarnings warns about a source that sees a proxy's address rather
// than its clients': one or two loopback or private addresses carry most
// events or every success (werkzeug behind nginx without ProxyFix, nginx
// behind a load balancer without real_ip), or a Flask source's app and
// access lines never agree on the address. It also says how a
// forwarded-for address field, which the client writes, is read.
func proxyWarnings(sc *sourceCheck, src SourceConfig, events int64) {
	ipField := src.Fields["ip"]
	forwarded := ipField != "" && ingest.IsForwardedField(strings.TrimPrefix(gunicornField(src.Format, ipField), "$"))
	if forwarded {
		how := "the rightmost entry that is not a trusted proxy is the client (as nginx's real_ip_recursive and werkzeug's ProxyFix read it), and the client-written entries left of it are never taken"
		if src.TrustedProxies == nil {
			sc.warnf("fields.ip: %q is a header the client writes: %s; trusted_proxies is not set, so only loopback and private addresses are trusted: list your proxies (a CDN's or load balancer's public ranges) in trusted_proxies, and log the address the server was connected from too ($remote_addr, %%(h)s), which ends the list", ipField, how)
		} else {
			sc.notef("fields.ip: %q is a header the client writes: %s; trusted: %s", ipField, how, strings.Join(src.TrustedProxies, ", "))
		}
	}
	private := func(as []netip.Addr) bool {
		for _, a := range as {
			if !slices.ContainsFunc(sc.trusted, func(p netip.Prefix) bool { return p.Contains(a.Unmap()) }) && !a.Unmap().IsLoopback() && !a.Unmap().IsPrivate() {
				return false
			}
		}
		return len(as) > 0
	}
	list := func(as []netip.Addr) string {
		parts := make([]string, len(as))
		for i, a := range as {
			parts[i] = a.String()
		}
		return strings.Join(parts, " and ")
	}
	hint := "it is a proxy's address, not the clients': "
	switch src.Format {
	case ingest.FormatFlask:
		hint += "behind a proxy, wrap the app in werkzeug's ProxyFix (app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)) so that werkzeug logs the client"
	case ingest.FormatGunicorn:
		hint += `log the proxy's X-Forwarded-For (%({x-forwarded-for}i)s) and set fields.ip: "{x-forwarded-for}i", or set gunicorn's forwarded_allow_ips`
	default:
		hint += "behind a load balancer, set nginx's real_ip_header X-Forwarded-For and set_real_ip_from, or log $http_x_forwarded_for and set fields.ip: http_x_forwarded_for"
	}
	if forwarded {
		hint = "it is a proxy's address: the header holds only trusted proxies, or is not set by the proxy in front"
	}
	a := &sc.addrs
	if events >= proxyMinEvents {
		if top, n := top2(a.events); private(top) && float64(n) >= proxyShare*float64(events) && len(a.events) > 0 {
			sc.warnf("%d of %d events come from %s: every attack looks like one address, and spray, stuffing and compromise are missed; %s", n, events, list(top), hint)
			return
		}
	}
	var successes int64
	for _, n := range a.successes {
		successes += n
	}
	if successes >= proxyMinSuccesses {
		if top, n := top2(a.successes); private(top) && n == successes && len(a.events) > len(top) {
			sc.warnf("all %d successes come from %s while failures come from %d other addresses: a compromise (a success from an attacking address) can never be seen; %s", successes, list(top), len(a.events)-len(top), hint)
		}
	}
	if src.Format == ingest.FormatFlask && sc.keyed >= proxyMinSuccesses && sc.unkeyed >= proxyMinSuccesses && sc.stats.FilteredBy[ingest.ErrJoined.Error()] == 0 {
		sc.warnf("no werkzeug access line joined an app line (%d app lines, %d access lines): they disagree on the address (or the time), so each failure counts twice; behind a proxy, wrap the app in werkzeug's ProxyFix so that werkzeug logs the client's address", sc.keyed, sc.unkeyed)
	}
}

// gunicornField is a gunicorn atom as NewParser keeps it.
func gunicornField(format, name string) string {
	if format == ingest.FormatGunicorn {
		return gunicorn.Field(name)
	}
	return name
}

func credentialField(src SourceConfig) string {
	if src.Credential.Field != "" {
		return src.Credential.Field
	}
	return src.Fields["credential"]
}

func skipReasons(m map[string]int64) string {
	parts := make([]string, 0, len(m))
	for _, r := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%d %s", m[r], r))
	}
	return strings.Join(parts, ", ")
}

func writeSourceCheck(w io.Writer, sc *sourceCheck) {
	if s := sc.stats; s != nil {
		fmt.Fprintf(w, "  read the end of %s: %d lines, %d events (%d filtered, %d skipped), %d identities, %d failed attempts\n",
			sc.file, s.Lines, s.Parsed-s.Filtered, s.Filtered, s.Lines-s.Parsed, sc.identities, sc.attempts)
	}
	for _, e := range sc.errs {
		fmt.Fprintf(w, "  error: %s\n", e)
	}
	for _, e := range sc.warnings {
		fmt.Fprintf(w, "  warning: %s\n", e)
	}
	if s := sc.stats; len(sc.unfilled) > 0 && s != nil && s.Parsed > s.Filtered {
		fmt.Fprintf(w, "  note: fields never filled: %s\n", strings.Join(sc.unfilled, ", "))
	}
	if sc.noCredential {
		fmt.Fprintf(w, "  note: no credential field: spray is found on identities per address, with credentials unknown; stuffing and brute force are not judged\n")
	}
	for _, e := range sc.notes {
		fmt.Fprintf(w, "  note: %s\n", e)
	}
}

// newestReadable returns the most recently modified of files, or an error
// naming every file that cannot be read when none can.
func newestReadable(files []string) (string, error) {
	var newest string
	var newestT time.Time
	var problems []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			msg := fileProblem(f, err)
			if errors.Is(err, fs.ErrPermission) {
				msg += " (run check as the user spraywatch runs as)"
			}
			problems = append(problems, msg)
			continue
		}
		st, err := fh.Stat()
		fh.Close()
		if err != nil || st.IsDir() {
			problems = append(problems, fmt.Sprintf("%s is a directory, not a log", f))
			continue
		}
		if newest == "" || st.ModTime().After(newestT) {
			newest, newestT = f, st.ModTime()
		}
	}
	if newest == "" && len(problems) > 0 {
		return "", errors.New(strings.Join(problems, "; "))
	}
	return newest, nil
}

// fileProblem says what happened to a file in words: "cannot open X:
// permission denied", without the doubled prefixes of wrapped errors.
func fileProblem(path string, err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		verb := "cannot read"
		if pe.Op == "open" || pe.Op == "stat" {
			verb = "cannot open"
		}
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Sprintf("%s does not exist", path)
		case errors.Is(err, fs.ErrPermission):
			return fmt.Sprintf("%s %s: permission denied", verb, path)
		}
		return fmt.Sprintf("%s %s: %v", verb, path, pe.Err)
	}
	msg := err.Error()
	if strings.Contains(msg, path) {
		return msg
	}
	return fmt.Sprintf("cannot read %s: %s", path, msg)
}
