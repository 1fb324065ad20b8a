// Package postgres is spraywatch's store on PostgreSQL, for a fleet: agents
// on every web node write their per-minute attempt rows and read positions
// under their node's name, and one judge at a time (an advisory lock decides
// which) reads every node's new rows, judges their union and keeps the
// incidents and the alert outbox. It has the SQLite store's tables, with a
// node column where rows come from a node, and the same methods, so the
// rules engine and the outbox work on either.
//
// Exactly once across processes rests on two things. A node's flushes are
// one transaction each and one at a time (a second process with the same
// node name is refused), so its attempt rows become visible in ID order and
// the judge can follow each node with a cursor: the last ID it judged. The
// judge writes its cursors in the transaction that records the incidents
// those rows produced, so a judge that takes over resumes exactly there.
package postgres

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
)

// Errors from the store.
var (
	// ErrNotActive: another judge holds the judge lease.
	ErrNotActive = errors.New("not the active judge: another judge took over")
	// ErrNodeInUse: another process writes as the same node.
	ErrNodeInUse = errors.New("node name is in use by another spraywatch process")
	// ErrFlushConflict: the node's last flush in the database is neither
	// this agent's last one nor one it has in doubt: another process wrote
	// as this node.
	ErrFlushConflict = errors.New("the node's rows were written by another process")
	// ErrPasswordInURL: the password must come from a file or the
	// environment, never the config.
	ErrPasswordInURL = errors.New("the URL holds a password; give it in a file or the environment instead")
	// ErrNoNode: writing attempt rows or positions needs a node name.
	ErrNoNode = errors.New("no node name")
	// ErrNoSchema: the tables are not there yet; the judge (the schema's
	// owner) creates them on its first start.
	ErrNoSchema = errors.New("the spraywatch tables do not exist yet: start a judge first, it creates them")
)

// Channel is the LISTEN/NOTIFY channel an agent's flush notifies.
const Channel = "spraywatch_attempts"

// lockClass is the first key of spraywatch's advisory locks ("spry").
const lockClass = 0x73707279

// IsURL reports whether a database setting names PostgreSQL rather than a
// SQLite file.
func IsURL(s string) bool {
	l := strings.ToLower(s)
	return strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://")
}

// keywordDSN matches libpq's keyword/value connection strings
// ("host=db dbname=spraywatch password=…").
var keywordDSN = regexp.MustCompile(`(?i)(^|\s)(host|hostaddr|port|dbname|user|password|passfile|sslmode|service)\s*=`)

// IsKeywordDSN reports whether s is a libpq keyword/value connection
// string rather than a URL or a file path. Such a string may hold a
// password, so it must never be echoed, logged or taken for a file name.
func IsKeywordDSN(s string) bool { return !IsURL(s) && keywordDSN.MatchString(s) }

// ErrKeywordDSN: a libpq keyword/value string was given where a URL is
// needed.
var ErrKeywordDSN = errors.New("a libpq keyword/value connection string (not shown: it may hold a password) is not supported; write it as a postgres://user@host:port/dbname URL, with the password in database_password_file or database_password_env")

// Options configure Open.
type Options struct {
	// URL is a postgres:// URL without a password (sslmode, sslrootcert and
	// the other libpq parameters are honoured).
	URL string
	// Password, read by the caller from a file or the environment. Empty:
	// libpq's own sources (PGPASSWORD, ~/.pgpass) or none.
	Password string
	// Node names this node: attempt rows, positions and replayed files carry
	// it. A judge that only reads may leave it empty.
	Node string
	// ReadOnly opens for queries only: no schema changes.
	ReadOnly bool
	// NoMigrate leaves the schema to the role that owns it (the judge's):
	// Open only checks that it is there. Agents, which may only insert,
	// set it.
	NoMigrate bool
	// ConnectTimeout bounds each connection attempt. Default 5s.
	ConnectTimeout time.Duration
	// MaxConns bounds the pool. Default 4.
	MaxConns int
	// FlushTimeout bounds a Flush of a node's rows. Default 30s.
	FlushTimeout time.Duration
	// SecretCheck is SecretCheck(the node's fingerprint secret), written
	// with every flush of the node's rows.
	SecretCheck string
}

// secretCheckText is what SecretCheck hashes.
const secretCheckText = "spraywatch fingerprint secret check"

// SecretCheck is a keyed hash of a fixed text under secret: equal for
// equal secrets, and telling nothing of the secret itself.
func SecretCheck(secret []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(secretCheckText))
	return hex.EncodeToString(m.Sum(nil))[:16]
}

// PublishSecretCheck records the judge's secret check for agents to
// compare theirs with (FleetSecretCheck).
func (s *Store) PublishSecretCheck(ctx context.Context, check string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO fleet_settings VALUES ('secret_check', $1)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, check)
	return err
}

// FleetSecretCheck is the judge's published secret check, "" if none yet.
func (s *Store) FleetSecretCheck(ctx context.Context) (string, error) {
	var v string
	err := s.db.QueryRowContext(ctx, `SELECT value FROM fleet_settings WHERE key = 'secret_check'`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

// NodeSecretChecks maps each node that has flushed to its secret check
// ("" for one that has not written it yet).
func (s *Store) NodeSecretChecks(ctx context.Context) (map[string]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT node, secret_check FROM nodes`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var n, c string
		if err := rows.Scan(&n, &c); err != nil {
			return nil, err
		}
		out[n] = c
	}
	return out, rows.Err()
}

// Store is the PostgreSQL store. It is safe for concurrent use.
type Store struct {
	db   *sql.DB
	cfg  *pgx.ConnConfig
	node string
	url  string

	// standby is the connection a judge on standby tries the judge lock
	// on, kept between tries.
	standbyMu sync.Mutex
	standby   *pgx.Conn

	// A node's flush chain (an agent's, or a single-node daemon's or a
	// replay's): token is what nodes.flush holds after this node's last
	// flush known written; doubts are the flushes since whose COMMIT got
	// no answer, each with a copy of the rows it wrote.
	agentMu      sync.Mutex
	flushTimeout time.Duration
	secretCheck  string
	tokenKnown   bool
	token        int64
	doubts       []doubtFlush
	landed       atomic.Int64
}

// LandedInDoubt counts the agent's flushes that got no answer to their
// COMMIT, were found written by a later flush, and so were not written
// twice.
func (s *Store) LandedInDoubt() int64 { return s.landed.Load() }

// doubtFlush is a flush whose COMMIT may or may not have landed.
type doubtFlush struct {
	token int64
	rows  []doubtRow
}

type doubtRow struct {
	k detect.AttemptKey
	n int64
}

// Open connects, and unless ReadOnly creates the schema if needed.
func Open(ctx context.Context, o Options) (*Store, error) {
	cfg, err := ParseConfig(o.URL, o.Password)
	if err != nil {
		return nil, err
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 4
	}
	cfg.ConnectTimeout = o.ConnectTimeout
	cfg.RuntimeParams["application_name"] = "spraywatch"
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(o.MaxConns)
	db.SetMaxIdleConns(o.MaxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if o.FlushTimeout <= 0 {
		o.FlushTimeout = 30 * time.Second
	}
	s := &Store{db: db, cfg: cfg, node: o.Node, url: Redact(o.URL), flushTimeout: o.FlushTimeout, secretCheck: o.SecretCheck}
	switch {
	case o.ReadOnly:
		err = db.PingContext(ctx)
	case o.NoMigrate:
		var ok bool
		if err = db.QueryRowContext(ctx, `SELECT to_regclass('judge_lease') IS NOT NULL`).Scan(&ok); err == nil && !ok {
			err = ErrNoSchema
		}
	default:
		err = s.migrate(ctx)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open database %s: %w", s.url, err)
	}
	return s, nil
}

// CheckURL checks a database URL's form without reading the files it
// names: a postgres:// URL with a host, and no password in it.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || !IsURL(raw) || u.Host == "" {
		return fmt.Errorf("database %s: not a postgres://[user@]host[:port]/database URL", Redact(raw))
	}
	if _, ok := u.User.Password(); ok {
		return fmt.Errorf("database %s: %w", Redact(raw), ErrPasswordInURL)
	}
	for k := range u.Query() {
		if strings.EqualFold(k, "password") {
			return fmt.Errorf("database %s: %w", Redact(raw), ErrPasswordInURL)
		}
	}
	return nil
}

// ParseConfig parses a postgres:// URL and sets the password, refusing a
// URL that holds one.
func ParseConfig(raw, password string) (*pgx.ConnConfig, error) {
	if err := CheckURL(raw); err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(raw)
	if err != nil {
		// pgx's message may quote the URL; the URL holds no password here.
		return nil, fmt.Errorf("database %s: %w", Redact(raw), err)
	}
	if password != "" {
		cfg.Password = password
	}
	return cfg, nil
}

// Redact returns a URL fit for logs: any password is masked and query
// parameters other than sslmode are dropped.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable database URL)"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	q := url.Values{}
	if m := u.Query().Get("sslmode"); m != "" {
		q.Set("sslmode", m)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// DB exposes the handle for packages that keep their own tables in the same
// database (the alert outbox).
func (s *Store) DB() *sql.DB { return s.db }

// Path returns the database URL, redacted.
func (s *Store) Path() string { return s.url }

// Node returns this store's node name.
func (s *Store) Node() string { return s.node }

// Close closes the pool.
func (s *Store) Close() error {
	s.standbyMu.Lock()
	if s.standby != nil {
		s.standby.Close(context.Background())
		s.standby = nil
	}
	s.standbyMu.Unlock()
	return s.db.Close()
}

// EnsureIndexes is a no-op: PostgreSQL keeps its indexes as it goes.
func (s *Store) EnsureIndexes(context.Context) error { return nil }

const schema = `
CREATE TABLE IF NOT EXISTS attempts (
	id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	node       TEXT NOT NULL,
	source     TEXT NOT NULL,
	minute     BIGINT NOT NULL, -- Unix minute of the events
	ip         TEXT NOT NULL,
	identity   TEXT NOT NULL,
	credential TEXT NOT NULL,   -- label: key prefix or fingerprint, never a raw key
	outcome    TEXT NOT NULL,
	count      BIGINT NOT NULL, -- rows are deltas: SUM(count) over a key is the total
	file       TEXT NOT NULL,   -- first event's line, for evidence
	inode      BIGINT NOT NULL,
	"offset"   BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_node ON attempts(node, id);
CREATE INDEX IF NOT EXISTS attempts_minute ON attempts(minute);
CREATE INDEX IF NOT EXISTS attempts_credential ON attempts(source, credential, minute);
CREATE INDEX IF NOT EXISTS attempts_identity ON attempts(source, identity, minute);
CREATE INDEX IF NOT EXISTS attempts_ip ON attempts(source, ip, minute);

CREATE OR REPLACE VIEW window_by_ip AS
	SELECT source, ip, (minute / 15) * 15 * 60 AS window_start,
	       SUM(CASE WHEN outcome IN ('failure','unknown_identity','throttled') THEN count ELSE 0 END) AS failures,
	       SUM(CASE WHEN outcome = 'success' THEN count ELSE 0 END) AS successes,
	       COUNT(DISTINCT identity) AS identities, COUNT(DISTINCT credential) AS credentials,
	       string_agg(DISTINCT identity, ',') AS identity_set, string_agg(DISTINCT node, ',') AS nodes
	FROM attempts GROUP BY source, ip, minute / 15;
CREATE OR REPLACE VIEW window_by_credential AS
	SELECT source, credential, (minute / 15) * 15 * 60 AS window_start,
	       SUM(CASE WHEN outcome IN ('failure','unknown_identity','throttled') THEN count ELSE 0 END) AS failures,
	       SUM(CASE WHEN outcome = 'success' THEN count ELSE 0 END) AS successes,
	       COUNT(DISTINCT identity) AS identities, COUNT(DISTINCT ip) AS ips,
	       string_agg(DISTINCT identity, ',') AS identity_set, string_agg(DISTINCT node, ',') AS nodes
	FROM attempts WHERE credential != '' GROUP BY source, credential, minute / 15;
CREATE OR REPLACE VIEW window_by_identity AS
	SELECT source, identity, (minute / 15) * 15 * 60 AS window_start,
	       SUM(CASE WHEN outcome IN ('failure','unknown_identity','throttled') THEN count ELSE 0 END) AS failures,
	       SUM(CASE WHEN outcome = 'success' THEN count ELSE 0 END) AS successes,
	       COUNT(DISTINCT credential) AS credentials, COUNT(DISTINCT ip) AS ips,
	       string_agg(DISTINCT credential, ',') AS credential_set, string_agg(DISTINCT node, ',') AS nodes
	FROM attempts WHERE identity != '' GROUP BY source, identity, minute / 15;

CREATE TABLE IF NOT EXISTS incidents (
	id         BIGINT PRIMARY KEY,
	kind       TEXT NOT NULL,
	severity   TEXT NOT NULL,
	source     TEXT NOT NULL,
	grp        TEXT NOT NULL,
	state      TEXT NOT NULL,
	first_seen BIGINT NOT NULL, -- Unix nanoseconds
	last_seen  BIGINT NOT NULL,
	attempts   BIGINT NOT NULL,
	identities BIGINT NOT NULL,
	body       JSONB NOT NULL   -- the whole incident
);
CREATE INDEX IF NOT EXISTS incidents_open ON incidents(state, kind, source, grp);
CREATE INDEX IF NOT EXISTS incidents_last_seen ON incidents(last_seen);
CREATE TABLE IF NOT EXISTS incident_identities (
	incident BIGINT NOT NULL,
	identity TEXT NOT NULL,
	PRIMARY KEY (incident, identity)
);

CREATE TABLE IF NOT EXISTS positions (
	node   TEXT NOT NULL,
	source TEXT NOT NULL,
	path   TEXT NOT NULL,
	dev    BIGINT NOT NULL,
	inode  BIGINT NOT NULL,
	head   TEXT NOT NULL,
	"offset" BIGINT NOT NULL,
	PRIMARY KEY (node, source, path)
);

CREATE TABLE IF NOT EXISTS replayed_files (
	node   TEXT NOT NULL,
	dev    BIGINT NOT NULL,
	inode  BIGINT NOT NULL,
	size   BIGINT NOT NULL,
	head   TEXT NOT NULL,
	path   TEXT NOT NULL,
	source TEXT NOT NULL,
	at     BIGINT NOT NULL,
	PRIMARY KEY (node, dev, inode, size, head)
);

-- Every node that has written, with the event time of each of its sources:
-- the judge judges up to the slowest live node.
CREATE TABLE IF NOT EXISTS nodes (
	node    TEXT PRIMARY KEY,
	seen    BIGINT NOT NULL  -- Unix ns (the node's wall clock) of its last flush
);
-- flush: the token of the node's last flush; each flush replaces it only if
-- it is still the one the agent last wrote, so that a flush whose COMMIT
-- was held in the network and landed after the agent gave up on it is
-- found, not written again.
ALTER TABLE nodes ADD COLUMN IF NOT EXISTS flush BIGINT NOT NULL DEFAULT 0;
-- secret_check: a keyed hash of a fixed text under the node's fingerprint
-- secret (it tells nothing of the secret), so that the judge can see a node
-- whose whole keys get other labels than everyone else's.
ALTER TABLE nodes ADD COLUMN IF NOT EXISTS secret_check TEXT NOT NULL DEFAULT '';
-- fleet_settings: what the judge publishes to agents (its secret_check).
CREATE TABLE IF NOT EXISTS fleet_settings (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS node_clocks (
	node    TEXT NOT NULL,
	source  TEXT NOT NULL,
	event   BIGINT NOT NULL, -- Unix s: the source's newest event on this node
	wall    BIGINT NOT NULL, -- Unix ns: when that event was read
	behind  BIGINT NOT NULL, -- bytes not read yet
	PRIMARY KEY (node, source)
);
-- The last attempt row of each node the judge has judged.
-- Findings an agent judged from its own lines (statuses, latencies, whole
-- keys: what attempt rows do not carry), for the judge to make one incident
-- of across the fleet. body: the node's incident JSON, labels only.
CREATE TABLE IF NOT EXISTS findings (
	id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	node    TEXT NOT NULL,
	kind    TEXT NOT NULL,
	source  TEXT NOT NULL,
	grp     TEXT NOT NULL,
	lines   BIGINT NOT NULL,  -- lines counted since the node last reported it
	body    JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS findings_node ON findings (node, id);
CREATE TABLE IF NOT EXISTS judge_cursors (
	node    TEXT PRIMARY KEY,
	last_id BIGINT NOT NULL
);
-- Fencing for the judge lease: every takeover raises the epoch, and a judge
-- writes only while the epoch is still its own.
CREATE TABLE IF NOT EXISTS judge_lease (
	id     INTEGER PRIMARY KEY CHECK (id = 1),
	epoch  BIGINT NOT NULL,
	holder TEXT NOT NULL,
	since  BIGINT NOT NULL
);
INSERT INTO judge_lease VALUES (1, 0, '', 0) ON CONFLICT DO NOTHING;
`

// migrate creates the schema, serialized by an advisory lock so that nodes
// starting together do not race on CREATE.
func (s *Store) migrate(ctx context.Context) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1, 1)`, lockClass); err != nil {
		return err
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1, 1)`, lockClass)
	_, err = conn.ExecContext(ctx, schema)
	return err
}

// Clock is one source's event time on a node, as its agent saw it.
type Clock struct {
	Source string
	Event  time.Time // the source's newest event time
	Wall   time.Time // when it was read
	Behind int64     // bytes not read yet
}

// Flush writes b in one transaction as a single-node daemon or a replay
// does: the node's attempt rows and positions, the incidents and the
// outbox (Extra). The rows it writes count as judged. On success the
// batch's attempts are cleared.
//
// With a node, flushes are chained by the node's flush token as an agent's
// are (see FlushAgentFindings), so that a flush whose COMMIT got no answer
// and landed all the same is not written twice when retried; and each
// flush is bounded by FlushTimeout, so that a database that stops
// answering (a network black hole) is an error the caller sees and
// reports, not a flush that hangs.
func (s *Store) Flush(ctx context.Context, b detect.Batch) error {
	cursors := func(tx *sql.Tx) error {
		if s.node == "" {
			return nil
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO judge_cursors
			SELECT $1::text, COALESCE(MAX(id), 0) FROM attempts WHERE node = $1::text
			ON CONFLICT (node) DO UPDATE SET last_id = excluded.last_id`, s.node)
		return err
	}
	if s.node == "" {
		return s.flush(ctx, b, cursors)
	}
	ctx, cancel := context.WithTimeout(ctx, s.flushTimeout)
	defer cancel()
	s.agentMu.Lock()
	defer s.agentMu.Unlock()
	now := time.Now()
	return s.chained(ctx, b, func(next int64) error {
		return s.flushTx(ctx, b, func(tx *sql.Tx) error { return s.swapToken(ctx, tx, now, next) }, cursors)
	})
}

// Finding is a line finding an agent raised on its own lines: its incident
// as the node has it, and the lines counted since the node last reported it.
type Finding struct {
	Incident *detect.Incident
	Lines    int64
}

// FindingRow is a finding as the judge reads it.
type FindingRow struct {
	ID       int64
	Node     string
	Incident detect.Incident
	Lines    int64
}

// FindingsCursor is the judge cursor key of a node's findings.
func FindingsCursor(node string) string { return "findings/" + node }

// ReadFindings calls fn with node's findings after id after, in order, and
// returns the last ID read.
func (s *Store) ReadFindings(ctx context.Context, node string, after int64, fn func(FindingRow) error) (int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, lines, body FROM findings WHERE node = $1 AND id > $2 ORDER BY id LIMIT 1000`, node, after)
	if err != nil {
		return after, err
	}
	defer rows.Close()
	last := after
	for rows.Next() {
		r := FindingRow{Node: node}
		var body []byte
		if err := rows.Scan(&r.ID, &r.Lines, &body); err != nil {
			return last, err
		}
		if err := json.Unmarshal(body, &r.Incident); err != nil {
			return last, fmt.Errorf("finding %d of node %s: %w", r.ID, node, err)
		}
		if err := fn(r); err != nil {
			return last, err
		}
		last = r.ID
	}
	return last, rows.Err()
}

// FlushAgent is FlushAgentFindings without findings.
func (s *Store) FlushAgent(ctx context.Context, b detect.Batch, clocks []Clock, now time.Time) error {
	return s.FlushAgentFindings(ctx, b, clocks, nil, now)
}

// FlushAgentFindings writes an agent's attempt rows, positions, clocks and
// line findings in one transaction and notifies the judges. Incidents in b are an error: agents
// do not judge.
//
// A flush whose COMMIT got no answer (the network dropped it, the flush
// timed out) may still land later. Each flush therefore replaces the
// node's flush token only if it still holds the one of the last flush
// known written, and keeps a copy of the rows of a flush in doubt: when
// the next flush finds the token of one in doubt, that one landed, and its
// rows are taken out of b before writing the rest; when the next flush
// lands, the ones in doubt never can. Either way every row is written
// once.
func (s *Store) FlushAgentFindings(ctx context.Context, b detect.Batch, clocks []Clock, findings []Finding, now time.Time) error {
	if len(b.Incidents) > 0 || len(b.Quiet) > 0 || len(b.Identities) > 0 {
		return errors.New("flush: an agent does not write incidents")
	}
	s.agentMu.Lock()
	defer s.agentMu.Unlock()
	return s.chained(ctx, b, func(next int64) error { return s.flushAgent(ctx, b, clocks, findings, now, next) })
}

// chained runs try, a flush that replaces the node's flush token with next
// if it still holds s.token, until it is written once: after a flush in
// doubt it looks at which token the node holds, and when that is one in
// doubt, takes its rows out of b and tries again. The caller holds agentMu.
func (s *Store) chained(ctx context.Context, b detect.Batch, try func(next int64) error) error {
	if !s.tokenKnown {
		err := s.db.QueryRowContext(ctx, `SELECT flush FROM nodes WHERE node = $1`, s.node).Scan(&s.token)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("flush: %w", err)
		}
		s.tokenKnown = true
	}
	for {
		next := rand.Int64N(math.MaxInt64-1) + 1
		err := try(next)
		switch {
		case err == nil:
			s.token, s.doubts = next, nil
			return nil
		case errors.Is(err, errCommitUnknown) && b.Attempts != nil:
			d := doubtFlush{token: next}
			b.Attempts.Each(func(k detect.AttemptKey, c detect.AttemptCount) { d.rows = append(d.rows, doubtRow{k, c.Count}) })
			s.doubts = append(s.doubts, d)
			return err
		case !errors.Is(err, ErrFlushConflict):
			return err
		}
		var cur int64
		if err := s.db.QueryRowContext(ctx, `SELECT flush FROM nodes WHERE node = $1`, s.node).Scan(&cur); err != nil {
			return fmt.Errorf("flush: %w", err)
		}
		i := slices.IndexFunc(s.doubts, func(d doubtFlush) bool { return d.token == cur })
		if i < 0 {
			return fmt.Errorf("flush: node %s: %w", s.node, ErrFlushConflict)
		}
		// That flush landed after all: its rows are in; write the rest.
		for _, r := range s.doubts[i].rows {
			b.Attempts.Take(r.k, r.n)
		}
		s.token, s.doubts = cur, nil
		s.landed.Add(1)
	}
}

// swapToken replaces the node's flush token with next if it still holds
// s.token (ErrFlushConflict otherwise). A flush still open on another
// connection (its COMMIT held in the network) holds the node's row: this
// waits for it to end.
func (s *Store) swapToken(ctx context.Context, tx *sql.Tx, now time.Time, next int64) error {
	res, err := tx.ExecContext(ctx, `INSERT INTO nodes (node, seen, flush, secret_check) VALUES ($1, $2, $3, $5)
		ON CONFLICT (node) DO UPDATE SET seen = excluded.seen, flush = excluded.flush, secret_check = excluded.secret_check
		WHERE nodes.flush = $4`,
		s.node, now.UnixNano(), next, s.token, s.secretCheck)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		if err == nil {
			err = ErrFlushConflict
		}
		return err
	}
	return nil
}

// flushAgent is one try of FlushAgent, replacing the node's flush token
// with next if it still holds s.token.
func (s *Store) flushAgent(ctx context.Context, b detect.Batch, clocks []Clock, findings []Finding, now time.Time, next int64) error {
	return s.flushTx(ctx, b, nil, func(tx *sql.Tx) error {
		if err := s.swapToken(ctx, tx, now, next); err != nil {
			return err
		}
		for _, c := range clocks {
			if _, err := tx.ExecContext(ctx, `INSERT INTO node_clocks VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (node, source) DO UPDATE SET event = GREATEST(node_clocks.event, excluded.event),
				wall = excluded.wall, behind = excluded.behind`,
				s.node, c.Source, unix(c.Event), c.Wall.UnixNano(), c.Behind); err != nil {
				return err
			}
		}
		for _, f := range findings {
			body, err := json.Marshal(f.Incident)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO findings (node, kind, source, grp, lines, body) VALUES ($1, $2, $3, $4, $5, $6)`,
				s.node, f.Incident.Kind, f.Incident.Source, f.Incident.Group, f.Lines, string(body)); err != nil {
				return err
			}
		}
		if b.Attempts != nil && b.Attempts.Len() > 0 || len(findings) > 0 {
			if _, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, Channel, s.node); err != nil {
				return err
			}
		}
		return nil
	})
}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// FlushJudge writes what the judge derived from the rows up to cursors:
// incidents, their identities and the outbox (Extra), with the cursors, in
// one transaction, provided lease is still the active one (ErrNotActive
// otherwise: another judge took over, and this one must stop).
func (s *Store) FlushJudge(ctx context.Context, b detect.Batch, cursors map[string]int64, lease *Lease) error {
	if b.Attempts != nil && b.Attempts.Len() > 0 || len(b.Positions) > 0 {
		return errors.New("flush: a judge does not write attempt rows or positions")
	}
	return s.flush(ctx, b, func(tx *sql.Tx) error {
		if err := lease.Fence(ctx, tx); err != nil {
			return err
		}
		nodes := make([]string, 0, len(cursors))
		ids := make([]int64, 0, len(cursors))
		for n, id := range cursors {
			nodes, ids = append(nodes, n), append(ids, id)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO judge_cursors SELECT * FROM unnest($1::text[], $2::bigint[])
			ON CONFLICT (node) DO UPDATE SET last_id = GREATEST(judge_cursors.last_id, excluded.last_id)`, nodes, ids)
		return err
	})
}

func (s *Store) flush(ctx context.Context, b detect.Batch, extra func(*sql.Tx) error) error {
	return s.flushTx(ctx, b, nil, extra)
}

// flushTx is flush with first run before the batch is written. An error of
// the COMMIT itself wraps errCommitUnknown: the transaction may have been
// written.
func (s *Store) flushTx(ctx context.Context, b detect.Batch, first, extra func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	defer tx.Rollback()
	if first != nil {
		if err := first(tx); err != nil {
			return fmt.Errorf("flush: %w", err)
		}
	}
	if err := s.writeBatch(ctx, tx, b); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	if err := extra(tx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	if b.Extra != nil {
		if err := b.Extra(tx, b.Incidents); err != nil {
			return fmt.Errorf("flush: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("flush: %w: %w", errCommitUnknown, err)
	}
	if b.Attempts != nil {
		b.Attempts.Clear()
	}
	return nil
}

// errCommitUnknown: a COMMIT got no answer; it may have been written.
var errCommitUnknown = errors.New("commit not confirmed")

func (s *Store) writeBatch(ctx context.Context, tx *sql.Tx, b detect.Batch) error {
	if (b.Attempts != nil && b.Attempts.Len() > 0 || len(b.Positions) > 0 || len(b.Replayed) > 0) && s.node == "" {
		return fmt.Errorf("write attempt rows or positions: %w", ErrNoNode)
	}
	if b.Attempts != nil && b.Attempts.Len() > 0 {
		if err := s.writeAttempts(ctx, tx, b.Attempts); err != nil {
			return err
		}
	}
	for _, inc := range append(b.Incidents[:len(b.Incidents):len(b.Incidents)], b.Quiet...) {
		body, err := json.Marshal(inc)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO incidents (id, kind, severity, source, grp, state, first_seen, last_seen, attempts, identities, body)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)
			ON CONFLICT (id) DO UPDATE SET severity=excluded.severity, state=excluded.state, first_seen=excluded.first_seen,
			last_seen=excluded.last_seen, attempts=excluded.attempts, identities=excluded.identities, body=excluded.body`,
			inc.ID, inc.Kind, inc.Severity, inc.Source, inc.Group, inc.State, inc.FirstSeen.UnixNano(), inc.LastSeen.UnixNano(),
			inc.Attempts, inc.Identities, string(body)); err != nil {
			return err
		}
	}
	if len(b.Identities) > 0 {
		var incs []int64
		var idents []string
		for id, list := range b.Identities {
			for _, ident := range list {
				incs, idents = append(incs, id), append(idents, ident)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO incident_identities SELECT * FROM unnest($1::bigint[], $2::text[])
			ON CONFLICT DO NOTHING`, incs, idents); err != nil {
			return err
		}
	}
	for _, p := range b.Positions {
		if _, err := tx.ExecContext(ctx, `INSERT INTO positions VALUES ($1,$2,$3,$4,$5,$6,$7)
			ON CONFLICT (node, source, path) DO UPDATE SET dev=excluded.dev, inode=excluded.inode, head=excluded.head, "offset"=excluded."offset"`,
			s.node, p.Source, p.Path, int64(p.Dev), int64(p.Inode), p.Head, p.Offset); err != nil {
			return err
		}
	}
	for _, f := range b.Replayed {
		if _, err := tx.ExecContext(ctx, `INSERT INTO replayed_files VALUES ($1,$2,$3,$4,$5,$6,$7,$8)
			ON CONFLICT (node, dev, inode, size, head) DO UPDATE SET path=excluded.path, source=excluded.source, at=excluded.at`,
			s.node, int64(f.Dev), int64(f.Inode), f.Size, f.Head, f.Path, f.Source, f.At.Unix()); err != nil {
			return err
		}
	}
	return nil
}

// writeAttempts inserts the pending rows, in time order, with one statement
// of arrays per batch: one round trip however many rows.
func (s *Store) writeAttempts(ctx context.Context, tx *sql.Tx, a *detect.Attempts) error {
	type row struct {
		k detect.AttemptKey
		c detect.AttemptCount
	}
	rows := make([]row, 0, a.Len())
	a.Each(func(k detect.AttemptKey, c detect.AttemptCount) { rows = append(rows, row{k, c}) })
	sort.Slice(rows, func(i, j int) bool { return rows[i].k.Minute < rows[j].k.Minute })
	n := len(rows)
	var (
		sources, ips, idents, creds, outcomes, files = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		minutes, counts, inodes, offsets             = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	)
	for i, r := range rows {
		sources[i], minutes[i], ips[i], idents[i], creds[i] = r.k.Source, r.k.Minute, r.k.IP.String(), r.k.Identity, r.k.Credential
		outcomes[i], counts[i], files[i], inodes[i], offsets[i] = r.k.Outcome.String(), r.c.Count, r.c.Pos.File, int64(r.c.Pos.Inode), r.c.Pos.Offset
		if !r.k.IP.IsValid() {
			ips[i] = "invalid IP"
		}
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO attempts (node, source, minute, ip, identity, credential, outcome, count, file, inode, "offset")
		SELECT $1::text, * FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::text[], $10::bigint[], $11::bigint[])`,
		s.node, sources, minutes, ips, idents, creds, outcomes, counts, files, inodes, offsets)
	return err
}

// WasReplayed reports whether content of this size and head was already
// replayed into the database for this node, and from which path.
func (s *Store) WasReplayed(ctx context.Context, size int64, head string) (string, bool, error) {
	var path string
	err := s.db.QueryRowContext(ctx, `SELECT path FROM replayed_files WHERE node=$1 AND size=$2 AND head=$3 LIMIT 1`,
		s.node, size, head).Scan(&path)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return path, true, nil
}

// Positions returns this node's saved read positions.
func (s *Store) Positions(ctx context.Context) ([]detect.Position, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT source, path, dev, inode, head, "offset" FROM positions WHERE node = $1`, s.node)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []detect.Position
	for rows.Next() {
		var p detect.Position
		var dev, inode int64
		if err := rows.Scan(&p.Source, &p.Path, &dev, &inode, &p.Head, &p.Offset); err != nil {
			return nil, err
		}
		p.Dev, p.Inode = uint64(dev), uint64(inode)
		out = append(out, p)
	}
	return out, rows.Err()
}

// Incidents returns incidents matching f, oldest first.
func (s *Store) Incidents(ctx context.Context, f detect.IncidentFilter) ([]*detect.Incident, error) {
	var where []string
	var args []any
	arg := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.Kind != "" {
		arg("kind = $%d", f.Kind)
	}
	if f.Source != "" {
		arg("source = $%d", f.Source)
	}
	if f.State != "" {
		arg("state = $%d", f.State)
	}
	if f.MinID > 0 {
		arg("id >= $%d", f.MinID)
	}
	if !f.Since.IsZero() {
		arg("last_seen >= $%d", f.Since.UnixNano())
	}
	q := "SELECT body FROM incidents"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY first_seen, id"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*detect.Incident
	for rows.Next() {
		var body []byte
		if err := rows.Scan(&body); err != nil {
			return nil, err
		}
		inc := &detect.Incident{}
		if err := json.Unmarshal(body, inc); err != nil {
			return nil, fmt.Errorf("decode incident: %w", err)
		}
		out = append(out, inc)
	}
	return out, rows.Err()
}

// Incident returns one incident.
func (s *Store) Incident(ctx context.Context, id int64) (*detect.Incident, error) {
	var body []byte
	err := s.db.QueryRowContext(ctx, `SELECT body FROM incidents WHERE id = $1`, id).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("incident %d: %w", id, detect.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	inc := &detect.Incident{}
	if err := json.Unmarshal(body, inc); err != nil {
		return nil, fmt.Errorf("decode incident %d: %w", id, err)
	}
	return inc, nil
}

// IncidentIdentities returns every identity an incident involved.
func (s *Store) IncidentIdentities(ctx context.Context, id int64) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT identity FROM incident_identities WHERE incident = $1 ORDER BY identity`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// MaxIncidentID returns the largest incident ID in use.
func (s *Store) MaxIncidentID(ctx context.Context) (int64, error) {
	var id sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(id) FROM incidents`).Scan(&id); err != nil {
		return 0, err
	}
	return id.Int64, nil
}

// judged restricts attempts (as a) to the rows the judge has judged.
const judged = `a.id <= COALESCE((SELECT last_id FROM judge_cursors c WHERE c.node = a.node), 0)`

// LastAttemptMinute returns the latest Unix minute of the judged attempt
// rows, or false when there are none.
func (s *Store) LastAttemptMinute(ctx context.Context) (int64, bool, error) {
	var m sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(minute) FROM attempts a WHERE `+judged).Scan(&m); err != nil {
		return 0, false, err
	}
	return m.Int64, m.Valid, nil
}

// SourceMinutes returns each source's latest judged attempt minute: a
// judge rebuilds each source's windows back from its own.
func (s *Store) SourceMinutes(ctx context.Context) (map[string]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT source, MAX(minute) FROM attempts a WHERE `+judged+` GROUP BY source`)
	if err != nil {
		return nil, err
	}
	return detect.ScanSourceMinutes(rows)
}

// LoadAttempts returns the judged attempt rows since a Unix minute, summed
// per key over every node, with the first line of the key's first row, for
// rebuilding windows after a restart or a takeover.
func (s *Store) LoadAttempts(ctx context.Context, sinceMinute int64, fn func(detect.AttemptKey, detect.AttemptCount) error) error {
	rows, err := s.db.QueryContext(ctx, `SELECT source, minute, ip, identity, credential, outcome, total, node, file, inode, "offset" FROM (
		SELECT source, minute, ip, identity, credential, outcome, SUM(count) OVER w AS total,
		       node, file, inode, "offset", ROW_NUMBER() OVER (w ORDER BY id) AS n
		FROM attempts a WHERE minute >= $1 AND `+judged+`
		WINDOW w AS (PARTITION BY source, minute, ip, identity, credential, outcome)) r
		WHERE n = 1 ORDER BY minute`, sinceMinute)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k detect.AttemptKey
		var c detect.AttemptCount
		var node string
		if err := scanAttempt(rows, &k, &c, &c.Count, &node); err != nil {
			return err
		}
		if err := fn(k, c); err != nil {
			return err
		}
	}
	return rows.Err()
}

func scanAttempt(rows *sql.Rows, k *detect.AttemptKey, c *detect.AttemptCount, count *int64, node *string) error {
	var ip, outcome string
	var inode int64
	if err := rows.Scan(&k.Source, &k.Minute, &ip, &k.Identity, &k.Credential, &outcome, count, node, &c.Pos.File, &inode, &c.Pos.Offset); err != nil {
		return err
	}
	k.IP, _ = netip.ParseAddr(ip)
	k.Outcome, _ = ingest.ParseOutcome(outcome)
	c.Pos.Inode = uint64(inode)
	return nil
}

// SuccessPairs calls fn with the first successful minute of every
// (source, identity, credential) among the judged rows since a Unix minute.
func (s *Store) SuccessPairs(ctx context.Context, sinceMinute int64, fn func(source, identity, credential string, minute int64)) error {
	rows, err := s.db.QueryContext(ctx, `SELECT source, identity, credential, MIN(minute) FROM attempts a
		WHERE outcome = 'success' AND identity != '' AND credential != '' AND minute >= $1 AND `+judged+`
		GROUP BY source, identity, credential`, sinceMinute)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var src, id, cred string
		var m int64
		if err := rows.Scan(&src, &id, &cred, &m); err != nil {
			return err
		}
		fn(src, id, cred, m)
	}
	return rows.Err()
}

// DeleteAttemptsBefore drops attempt rows older than t (retention). Only
// rows the judge has judged go.
func (s *Store) DeleteAttemptsBefore(ctx context.Context, t time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM attempts a WHERE minute < $1 AND `+judged, t.Unix()/60)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// Row is one attempt row as a node wrote it.
type Row struct {
	ID    int64
	Node  string
	Key   detect.AttemptKey
	Count detect.AttemptCount
}

// ReadAttempts calls fn with node's rows after ID after, in ID order, at
// most limit of them, and returns the last ID read (after when none).
func (s *Store) ReadAttempts(ctx context.Context, node string, after int64, limit int, fn func(Row) error) (int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, source, minute, ip, identity, credential, outcome, count, node, file, inode, "offset"
		FROM attempts WHERE node = $1 AND id > $2 ORDER BY id LIMIT $3`, node, after, limit)
	if err != nil {
		return after, err
	}
	defer rows.Close()
	last := after
	for rows.Next() {
		var r Row
		var ip, outcome string
		var inode int64
		if err := rows.Scan(&r.ID, &r.Key.Source, &r.Key.Minute, &ip, &r.Key.Identity, &r.Key.Credential, &outcome, &r.Count.Count,
			&r.Node, &r.Count.Pos.File, &inode, &r.Count.Pos.Offset); err != nil {
			return last, err
		}
		r.Key.IP, _ = netip.ParseAddr(ip)
		r.Key.Outcome, _ = ingest.ParseOutcome(outcome)
		r.Count.Pos.Inode = uint64(inode)
		if err := fn(r); err != nil {
			return last, err
		}
		last = r.ID
	}
	return last, rows.Err()
}

// Cursors returns the last judged row of every node.
func (s *Store) Cursors(ctx context.Context) (map[string]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT node, last_id FROM judge_cursors`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var n string
		var id int64
		if err := rows.Scan(&n, &id); err != nil {
			return nil, err
		}
		out[n] = id
	}
	return out, rows.Err()
}

// Node is what the judge knows of one node.
type Node struct {
	Name   string
	Seen   time.Time // the node's last flush, on its own clock
	Clocks []Clock
}

// Nodes returns every node that has flushed as an agent, by name.
func (s *Store) Nodes(ctx context.Context) ([]Node, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT n.node, n.seen, c.source, c.event, c.wall, c.behind
		FROM nodes n LEFT JOIN node_clocks c ON c.node = n.node ORDER BY n.node, c.source`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Node
	for rows.Next() {
		var name string
		var seen int64
		var src sql.NullString
		var event, wall, behind sql.NullInt64
		if err := rows.Scan(&name, &seen, &src, &event, &wall, &behind); err != nil {
			return nil, err
		}
		if len(out) == 0 || out[len(out)-1].Name != name {
			out = append(out, Node{Name: name, Seen: time.Unix(0, seen)})
		}
		if src.Valid {
			n := &out[len(out)-1]
			c := Clock{Source: src.String, Wall: time.Unix(0, wall.Int64), Behind: behind.Int64}
			if event.Int64 > 0 {
				c.Event = time.Unix(event.Int64, 0)
			}
			n.Clocks = append(n.Clocks, c)
		}
	}
	return out, rows.Err()
}

// connect opens a connection of its own, outside the pool, for a session
// lock or LISTEN.
func (s *Store) connect(ctx context.Context) (*pgx.Conn, error) {
	return pgx.ConnectConfig(ctx, s.cfg.Copy())
}

// Lease is a session advisory lock held on a connection of its own: the
// judge's, or a node's. It is lost when that connection breaks (the server
// restarted or became unreachable); Lost is closed then.
type Lease struct {
	conn   *pgx.Conn
	epoch  int64
	lost   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

// Fence returns ErrNotActive unless l is the judge lease of the latest
// term; it locks the lease row for tx, so that no other judge's term begins
// before tx ends. Whatever tx writes is then written by the active judge.
func (l *Lease) Fence(ctx context.Context, tx *sql.Tx) error {
	var epoch int64
	if err := tx.QueryRowContext(ctx, `SELECT epoch FROM judge_lease WHERE id = 1 FOR UPDATE`).Scan(&epoch); err != nil {
		return err
	}
	if l == nil || epoch != l.epoch {
		return ErrNotActive
	}
	return nil
}

// Epoch is the lease's fencing number.
func (l *Lease) Epoch() int64 { return l.epoch }

// Lost is closed when the lease is gone.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Release gives the lease up.
func (l *Lease) Release() {
	l.cancel()
	<-l.done
}

func (s *Store) lease(ctx context.Context, key int32, onAcquire func(context.Context, *pgx.Conn) (int64, error)) (*Lease, bool, error) {
	conn, err := s.connect(ctx)
	if err != nil {
		return nil, false, err
	}
	l, ok, err := s.leaseOn(ctx, conn, key, onAcquire)
	if err == nil && !ok {
		conn.Close(context.WithoutCancel(ctx))
	}
	return l, ok, err
}

// leaseOn tries the lock on conn; conn is closed on an error, left open
// when the lock is held by another session, and the lease's when taken.
func (s *Store) leaseOn(ctx context.Context, conn *pgx.Conn, key int32, onAcquire func(context.Context, *pgx.Conn) (int64, error)) (*Lease, bool, error) {
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, $2)`, int32(lockClass), key).Scan(&ok); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, false, err
	}
	if !ok {
		return nil, false, nil
	}
	var err error
	l := &Lease{conn: conn, lost: make(chan struct{}), done: make(chan struct{})}
	if onAcquire != nil {
		if l.epoch, err = onAcquire(ctx, conn); err != nil {
			conn.Close(context.WithoutCancel(ctx))
			return nil, false, err
		}
	}
	wctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go l.watch(wctx)
	return l, true, nil
}

// watch pings the lease's connection every second; a failed ping means the
// session, and with it the lock, may be gone.
func (l *Lease) watch(ctx context.Context) {
	defer close(l.done)
	defer l.conn.Close(context.Background())
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// Released: unlock before closing, so that the lock is free
			// when Release returns, not once the server ends the session.
			uctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			l.conn.Exec(uctx, `SELECT pg_advisory_unlock_all()`)
			cancel()
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := l.conn.Ping(pctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			close(l.lost)
			return
		}
	}
}

// TryJudge takes the judge lease if no other judge holds it, raising the
// fencing epoch; false when another judge is active. A standby's tries
// share one connection, kept open between them; it becomes the lease's
// when the lock is taken.
func (s *Store) TryJudge(ctx context.Context, holder string) (*Lease, bool, error) {
	s.standbyMu.Lock()
	defer s.standbyMu.Unlock()
	// A connection that stopped answering (the network dropping packets)
	// is given up after this, not waited on.
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn := s.standby
	s.standby = nil
	if conn == nil || conn.IsClosed() {
		var err error
		if conn, err = s.connect(ctx); err != nil {
			return nil, false, err
		}
	}
	l, ok, err := s.leaseOn(ctx, conn, 0, func(ctx context.Context, c *pgx.Conn) (int64, error) {
		var epoch int64
		err := c.QueryRow(ctx, `UPDATE judge_lease SET epoch = epoch + 1, holder = $1, since = $2 WHERE id = 1 RETURNING epoch`,
			holder, time.Now().UnixNano()).Scan(&epoch)
		return epoch, err
	})
	if err == nil && !ok {
		s.standby = conn
	}
	return l, ok, err
}

// LockNode takes this node's lease, so that two processes never write as
// one node (ErrNodeInUse).
func (s *Store) LockNode(ctx context.Context) (*Lease, error) {
	if s.node == "" {
		return nil, ErrNoNode
	}
	l, ok, err := s.lease(ctx, nodeKey(s.node), nil)
	if err != nil {
		return nil, fmt.Errorf("lock node %s: %w", s.node, err)
	}
	if !ok {
		return nil, fmt.Errorf("lock node %s: %w", s.node, ErrNodeInUse)
	}
	return l, nil
}

// Listen sends on wake (without blocking) whenever an agent's flush
// notifies, until ctx ends. It reconnects after a failure, waiting retry
// between attempts, and reports each failure to onErr; the caller polls as
// well, so a missed notification only delays a round.
func (s *Store) Listen(ctx context.Context, wake chan<- struct{}, retry time.Duration, onErr func(error)) {
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, wake)
		if ctx.Err() != nil {
			return
		}
		if onErr != nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
	}
}

func (s *Store) listenOnce(ctx context.Context, wake chan<- struct{}) error {
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return err
	}
	signal := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	signal() // rows may have come while not listening
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		signal()
	}
}

// IsUnavailable reports whether err means the server could not be reached
// or went away (as opposed to a query it refused).
func IsUnavailable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08 (connection exception), 57P01-57P03 (shutdown, crash).
		return strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "57P")
	}
	return err != nil && !errors.Is(err, ErrNotActive) && !errors.Is(err, context.Canceled)
}
