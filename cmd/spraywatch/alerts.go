package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/spraywatch/spraywatch/alert"
	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/detect/postgres"
	"github.com/spraywatch/spraywatch/ingest"
)

// incidentKinds are the values --kind takes.
var incidentKinds = detect.Kinds

// dbFlags find the database: --db, or the config's database.
type dbFlags struct{ db, config string }

func (f *dbFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.db, "db", "", "SQLite database, or a fleet's postgres:// URL, its password from "+envPasswordFile+", PGPASSWORD or ~/.pgpass (default: the config's database)")
	c.Flags().StringVarP(&f.config, "config", "c", "", "config file whose database to read")
}

// open opens the database read-only, and returns the config when given.
// A postgres:// URL takes its password from the config's
// database_password_file or _env, SPRAYWATCH_DATABASE_PASSWORD_FILE,
// PGPASSWORD or ~/.pgpass.
func (f *dbFlags) open(ctx context.Context) (readStore, *Config, error) {
	var cfg *Config
	db := f.db
	if f.config != "" {
		c, err := LoadConfig(f.config)
		if err != nil {
			return nil, nil, err
		}
		cfg = &c
		if db == "" {
			db = c.Database
		}
	}
	if db == "" {
		return nil, nil, fmt.Errorf("%w: --db or --config is required", errUsage)
	}
	if err := checkDatabaseArg(db); err != nil {
		return nil, nil, err
	}
	if postgres.IsURL(db) {
		pcfg := Config{Database: db, DatabasePasswordFile: os.Getenv(envPasswordFile)}
		if cfg != nil && cfg.Database == db {
			pcfg = *cfg
		}
		store, err := openPostgres(ctx, pcfg, postgres.Options{ReadOnly: true})
		if err != nil {
			return nil, nil, err
		}
		return store, cfg, nil
	}
	if _, err := os.Stat(db); err != nil {
		return nil, nil, fmt.Errorf("database: %s (a replay keeps its case with --db FILE; the daemon writes the config's database)", fileProblem(db, err))
	}
	store, err := detect.Open(db, detect.StoreOptions{ReadOnly: true})
	if err != nil {
		return nil, nil, err
	}
	return store, cfg, nil
}

// readerHint is what to do when a role may not read what forensics reads.
const readerHint = "alerts and explain need a role that may read incidents (the reader role, not an agent's): " +
	"give --db the reader role's URL, e.g. --db postgres://spraywatch_reader@HOST/spraywatch, and its password in " +
	envPasswordFile + " (a file, mode 600), PGPASSWORD or ~/.pgpass"

// forensicError says plainly what a fleet database's refusal means: a
// role without the grant (hint, or readerHint), or a password refused or
// missing. Other errors are returned as they are.
func forensicError(err error, hint string) error {
	switch {
	case err == nil:
		return nil
	case postgres.IsPermissionDenied(err):
		if hint == "" {
			hint = readerHint
		}
		return fmt.Errorf("database: this role may not do that (%s); %s", postgres.ServerMessage(err), hint)
	case postgres.IsAuthFailed(err):
		return fmt.Errorf("database: the server refused the role's password (%s); give the role's password in %s (a file, mode 600), PGPASSWORD or ~/.pgpass, or the config's database_password_file", postgres.ServerMessage(err), envPasswordFile)
	}
	return err
}

// oneOf checks a flag's value against the values it takes.
func oneOf(flag, v string, values []string) error {
	if v == "" || slices.Contains(values, v) {
		return nil
	}
	msg := fmt.Sprintf("--%s: %q: must be one of %s", flag, v, strings.Join(values, ", "))
	if s := suggest(v, values); s != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", s)
	}
	return fmt.Errorf("%w: %s", errUsage, msg)
}

func newAlertsCmd(g *globals) *cobra.Command {
	var output, kind, source, state string
	f := &dbFlags{}
	c := &cobra.Command{
		Use:   "alerts (--db FILE | --config FILE)",
		Short: "List incidents stored by a replay or the daemon",
		Args:  unknownCommand,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("%w: --output: %q: must be text or json", errUsage, output)
			}
			if err := oneOf("kind", kind, incidentKinds); err != nil {
				return err
			}
			if err := oneOf("state", state, []string{detect.StateOpen, detect.StateClosed}); err != nil {
				return err
			}
			store, _, err := f.open(cmd.Context())
			if err != nil {
				return forensicError(err, "")
			}
			defer store.Close()
			incs, err := store.Incidents(cmd.Context(), detect.IncidentFilter{Kind: kind, Source: source, State: state})
			if err != nil {
				return forensicError(err, "")
			}
			return printIncidents(g.stdout, output, incs)
		},
	}
	f.register(c)
	c.Flags().StringVarP(&output, "output", "o", "text", "text (table) or json (one incident per line)")
	c.Flags().StringVar(&kind, "kind", "", "only this kind: "+strings.Join(incidentKinds, ", "))
	c.Flags().StringVar(&source, "source", "", "only this source")
	c.Flags().StringVar(&state, "state", "", "only open or closed incidents")
	c.AddCommand(newAlertsTestCmd(g))
	return c
}

func newExplainCmd(g *globals) *cobra.Command {
	var all bool
	var node string
	f := &dbFlags{}
	c := &cobra.Command{
		Use:   "explain (--db FILE | --config FILE) INCIDENT_ID",
		Short: "Show an incident and the log lines behind it, credentials redacted",
		Long: `explain prints an incident (as listed by 'spraywatch alerts') and the log lines
it was raised on, each with its file and byte offset. Credentials appear in the
lines as in the incident: a logged key prefix as itself, a whole key as its
label when the fingerprint secret can be read (with --config), anything else
that looks like a secret masked.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || id <= 0 {
				return fmt.Errorf("%w: INCIDENT_ID: %q: not an incident number (see 'spraywatch alerts')", errUsage, args[0])
			}
			store, cfg, err := f.open(cmd.Context())
			if err != nil {
				return forensicError(err, "")
			}
			defer store.Close()
			var secret []byte
			if cfg != nil {
				if b, err := os.ReadFile(cfg.FingerprintSecretFile); err == nil {
					secret = b
				}
			}
			return forensicError(explain(cmd.Context(), g.stdout, store, id, all, secret, node), "")
		},
	}
	f.register(c)
	c.Flags().BoolVar(&all, "identities", false, "list every identity involved")
	c.Flags().StringVar(&node, "node", "", "in a fleet: this machine's node name, whose evidence lines are read here (default: the host name)")
	return c
}

// explain prints incident id and its evidence. secret, when set, lets whole
// keys in the lines be shown as the incident's labels. In a fleet, lines of
// another node than node are named, not read.
func explain(ctx context.Context, w io.Writer, store readStore, id int64, all bool, secret []byte, node string) error {
	inc, err := store.Incident(ctx, id)
	if errors.Is(err, detect.ErrNotFound) {
		return fmt.Errorf("%w in this database; 'spraywatch alerts' lists the incidents it holds", err)
	}
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
	fmt.Fprintf(w, "\nevidence (%s, as FILE (byte OFFSET), credentials as above):\n", counted(len(inc.Evidence), "line", "lines"))
	if node == "" {
		node, _ = os.Hostname()
	}
	for _, pos := range inc.Evidence {
		if pos.Node != "" && pos.Node != node {
			// Another node's file: explain on that node reads it.
			fmt.Fprintf(w, "  %s:%s (byte %d)  on node %s: run explain there, or with --node %s where its logs are\n", pos.Node, pos.File, pos.Offset, pos.Node, pos.Node)
			continue
		}
		belongs := namesAddress(inc.IPs)
		if len(inc.IPs) == 0 {
			// A finding that names no address (a route's timing): a whole
			// line at the offset is all that can be checked.
			belongs = func([]byte) bool { return true }
		}
		line, where, err := readEvidence(pos, belongs)
		if err == nil && len(inc.IPs) == 0 {
			where += " (not checked against the incident: it names no address)"
		}
		if err != nil {
			fmt.Fprintf(w, "  %s (byte %d)  unavailable: %s\n", pos.File, pos.Offset, fileProblem(pos.File, err))
			continue
		}
		fmt.Fprintf(w, "  %s (byte %d)  %s\n", where, pos.Offset, redactEvidence(line, inc.Credentials, secret))
	}
	return nil
}

// redactEvidence redacts a log line as the incident shows credentials: a
// token that is one of the incident's labels (a logged prefix), or a whole
// key whose keyed fingerprint is one, is shown as that label; the rest of
// the line is redacted as everywhere else. It does not count on the line
// being whole: the first and the last token (the last one also where a long
// line is cut) may be the piece of a key whose context was cut off, so
// either is masked when it holds 8 or more letters and digits of both kinds
// in a row and is no address.
func redactEvidence(line []byte, labels []string, secret []byte) string {
	const max = 400
	if len(line) > max {
		line = line[:max]
	}
	known := map[string]bool{}
	for _, l := range labels {
		known[l] = true
	}
	type span struct{ i, j int }
	var toks []span
	for i := 0; i < len(line); {
		if !isTokenByte(line[i]) {
			i++
			continue
		}
		j := i
		for j < len(line) && isTokenByte(line[j]) {
			j++
		}
		toks = append(toks, span{i, j})
		i = j
	}
	var out strings.Builder
	last := 0
	for n, t := range toks {
		tok := line[t.i:t.j]
		label := ""
		switch {
		case known[string(tok)] && !strings.Contains(string(tok), "…"):
			label = string(tok)
		case secret != nil && len(tok) > ingest.PrefixMaxLen:
			if fp := ingest.Fingerprint(secret, tok); known[fp] {
				label = fp
			}
		case (n == 0 || n == len(toks)-1) && mayBeKeyPiece(tok):
			label = "…[redacted]"
		}
		if label != "" {
			out.WriteString(ingest.Redact(line[last:t.i], 0))
			out.WriteString(label)
			last = t.j
		}
	}
	out.WriteString(ingest.Redact(line[last:], 0))
	return out.String()
}

// mayBeKeyPiece reports a token that could be the rest of a key cut off
// from what marked it: a run of 8 or more ASCII letters and digits that
// holds both, in a token that is no IP address.
func mayBeKeyPiece(tok []byte) bool {
	if _, err := netip.ParseAddr(string(tok)); err == nil {
		return false
	}
	run, letters, digits := 0, false, false
	for _, c := range tok {
		switch {
		case c >= '0' && c <= '9':
			run, digits = run+1, true
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			run, letters = run+1, true
		default:
			run, letters, digits = 0, false, false
		}
		if run >= 8 && letters && digits {
			return true
		}
	}
	return false
}

// isTokenByte reports bytes a logged credential is made of.
func isTokenByte(c byte) bool {
	return c > ' ' && c < 0x7f && !strings.ContainsRune("\"'=&,;[](){}<>", rune(c))
}

// errNotOnDisk: no file beside an evidence position holds its line any more.
var errNotOnDisk = errors.New("the line is no longer on disk")

// readEvidence reads the line at pos, and only that line: a text is taken
// as it only when it starts a line at pos.Offset (offset 0, or a newline
// before it) and belongs says it is the incident's (it names one of its
// addresses). The file read is first the one with pos's inode (the path,
// or the rotated sibling that kept it); when that holds other content now
// (rewritten, or truncated in place by copytruncate) or is gone, the
// rotated siblings are tried, newest first, at the same offset: a
// copytruncate copy or a compressed rotation holds the line where it was
// read. A file of another inode under the path itself took the name: it
// is never read. where names the file, and says when the line was matched by
// content. Without a match the error says the line is no longer on disk:
// a fragment of another line is never returned.
func readEvidence(pos ingest.Pos, belongs func([]byte) bool) (line []byte, where string, err error) {
	path, ferr := evidenceFile(pos)
	if ferr == nil {
		if l, ok := lineStartingAt(path, pos.Offset); ok && belongs(l) {
			return l, path, nil
		}
	}
	matches, _ := filepath.Glob(pos.File + "*")
	var siblings []string
	for _, g := range ingest.ReplayOrder(matches) {
		for i := len(g) - 1; i >= 0; i-- { // newest first
			siblings = append(siblings, g[i])
		}
	}
	for _, m := range siblings {
		if m == path || m == pos.File {
			continue // read above, or another file that took the name
		}
		if l, ok := lineStartingAt(m, pos.Offset); ok && belongs(l) {
			how := "copied since"
			if strings.HasSuffix(m, ".gz") {
				how = "compressed since"
			}
			return l, m + " (" + how + "; matched by content)", nil
		}
	}
	if ferr == nil {
		return nil, pos.File, fmt.Errorf("%s holds other content at that byte now (rewritten, or truncated by a copytruncate rotation), and no rotated copy beside it (%s*) holds the incident's line there: %w", path, filepath.Base(pos.File), errNotOnDisk)
	}
	if len(matches) == 0 {
		return nil, pos.File, ferr
	}
	return nil, pos.File, fmt.Errorf("%s has been rotated since, and no file named %s* holds the incident's line at that byte: %w", pos.File, filepath.Base(pos.File), errNotOnDisk)
}

// evidenceFile finds the file pos was read from: its path, or the rotated
// sibling with its inode.
func evidenceFile(pos ingest.Pos) (string, error) {
	lf, err := ingest.Open(pos.File)
	if err == nil {
		same := lf.Inode == pos.Inode || pos.Inode == 0
		lf.Close()
		if same {
			return pos.File, nil
		}
	}
	matches, _ := filepath.Glob(pos.File + "*")
	for _, m := range matches {
		if l2, err := ingest.Open(m); err == nil {
			same := l2.Inode == pos.Inode
			l2.Close()
			if same {
				return m, nil
			}
		}
	}
	if err != nil && len(matches) == 0 {
		return "", err
	}
	return "", fmt.Errorf("%s has been rotated since (no file named %s* is the one read, inode %d)", pos.File, filepath.Base(pos.File), pos.Inode)
}

// lineStartingAt reads the line at offset in path (decompressed), if a
// line starts there: ok is false when the byte before offset is no
// newline, or nothing is there.
func lineStartingAt(path string, offset int64) (line []byte, ok bool) {
	lf, err := ingest.Open(path)
	if err != nil {
		return nil, false
	}
	defer lf.Close()
	r := lf.Reader()
	skip := max(offset-1, 0)
	if f, isFile := r.(*os.File); isFile {
		if _, err := f.Seek(skip, io.SeekStart); err != nil {
			return nil, false
		}
	} else if _, err := io.CopyN(io.Discard, r, skip); err != nil {
		return nil, false
	}
	br := bufio.NewReader(r)
	if offset > 0 {
		if c, err := br.ReadByte(); err != nil || c != '\n' {
			return nil, false
		}
	}
	line, err = br.ReadSlice('\n')
	if len(line) == 0 || (err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull)) {
		return nil, false
	}
	return bytes.TrimSuffix(line, []byte("\n")), true
}

// namesAddress reports whether line names one of ips as a whole token.
func namesAddress(ips []string) func([]byte) bool {
	return func(line []byte) bool {
		for _, ip := range ips {
			for i := 0; ; {
				j := bytes.Index(line[i:], []byte(ip))
				if j < 0 {
					break
				}
				at, end := i+j, i+j+len(ip)
				if (at == 0 || !isAddrByte(line[at-1])) && (end == len(line) || !isAddrByte(line[end])) {
					return true
				}
				i = end
			}
		}
		return false
	}
}

func isAddrByte(c byte) bool {
	return c == '.' || c == ':' || c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
