package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
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
		line, where, err := readEvidence(pos, namesAddress(inc.IPs))
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
// the line is redacted as everywhere else.
func redactEvidence(line []byte, labels []string, secret []byte) string {
	const max = 400
	if len(line) > max {
		line = line[:max]
	}
	known := map[string]bool{}
	for _, l := range labels {
		known[l] = true
	}
	var out strings.Builder
	last := 0
	for i := 0; i < len(line); {
		if !isTokenByte(line[i]) {
			i++
			continue
		}
		j := i
		for j < len(line) && isTokenByte(line[j]) {
			j++
		}
		tok := line[i:j]
		label := ""
		switch {
		case known[string(tok)] && !strings.Contains(string(tok), "…"):
			label = string(tok)
		case secret != nil && len(tok) > ingest.PrefixMaxLen:
			if fp := ingest.Fingerprint(secret, tok); known[fp] {
				label = fp
			}
		}
		if label != "" {
			out.WriteString(ingest.Redact(line[last:i], 0))
			out.WriteString(label)
			last = j
		}
		i = j
	}
	out.WriteString(ingest.Redact(line[last:], 0))
	return out.String()
}

// isTokenByte reports bytes a logged credential is made of.
func isTokenByte(c byte) bool {
	return c > ' ' && c < 0x7f && !strings.ContainsRune("\"'=&,;[](){}<>", rune(c))
}

// readEvidence reads the line at pos. When the file has been rotated since,
// it looks for the same inode among the file's rotated siblings; a line is
// never read from another file that took the name. A compressed sibling
// has an inode of its own, so there the line at the same offset is taken
// only when belongs says it is the incident's (it names one of its
// addresses), and where says it was matched by content.
func readEvidence(pos ingest.Pos, belongs func([]byte) bool) (line []byte, where string, err error) {
	path, err := evidenceFile(pos)
	if err == nil {
		line, err = lineAt(path, pos.Offset)
		return line, path, err
	}
	matches, _ := filepath.Glob(pos.File + "*")
	for _, m := range matches {
		if !strings.HasSuffix(m, ".gz") {
			continue
		}
		if l, lerr := lineAt(m, pos.Offset); lerr == nil && belongs(l) {
			return l, m + " (compressed since; matched by content)", nil
		}
	}
	return nil, pos.File, err
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
	return "", fmt.Errorf("%s has been rotated since (no file named %s* is the one read, inode %d; a compressed or deleted copy cannot be told by its inode)", pos.File, filepath.Base(pos.File), pos.Inode)
}

// lineAt reads the line that starts at offset in path (decompressed).
func lineAt(path string, offset int64) ([]byte, error) {
	lf, err := ingest.Open(path)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	r := lf.Reader()
	if f, ok := r.(*os.File); ok {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			return nil, err
		}
	} else if _, err := io.CopyN(io.Discard, r, offset); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(r).ReadSlice('\n')
	if err != nil && len(line) == 0 {
		return nil, err
	}
	return line[:len(line)-boolInt(line[len(line)-1] == '\n')], nil
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

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
