package detect

import (
	"cmp"
	"container/heap"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/spraywatch/spraywatch/ingest"
)

// Errors from the store.
var (
	ErrLocked   = errors.New("database is locked")
	ErrFull     = errors.New("database or disk is full")
	ErrNotFound = errors.New("not found")
	ErrInUse    = errors.New("database is in use by another spraywatch process")
	ErrCorrupt  = errors.New("database file is corrupt")
	ErrReadOnly = errors.New("database is read-only")
)

const schema = `
CREATE TABLE IF NOT EXISTS attempts (
	source     TEXT NOT NULL,
	minute     INTEGER NOT NULL, -- Unix minute of the events
	ip         TEXT NOT NULL,
	identity   TEXT NOT NULL,
	credential TEXT NOT NULL,    -- label: key prefix or fingerprint, never a raw key
	outcome    TEXT NOT NULL,
	count      INTEGER NOT NULL, -- rows are deltas: SUM(count) over a key is the total
	file       TEXT NOT NULL,    -- first event's line, for evidence
	inode      INTEGER NOT NULL,
	offset     INTEGER NOT NULL,
	last_minute INTEGER          -- a row of an hour's routine successes: its last minute (NULL: minute)
);

-- Fifteen-minute tumbling windows, for forensic questions in plain SQL.
CREATE VIEW IF NOT EXISTS window_by_ip AS
	SELECT source, ip, (minute / 15) * 15 * 60 AS window_start,
	       SUM(CASE WHEN outcome IN ('failure','unknown_identity','throttled') THEN count ELSE 0 END) AS failures,
	       SUM(CASE WHEN outcome = 'success' THEN count ELSE 0 END) AS successes,
	       COUNT(DISTINCT identity) AS identities, COUNT(DISTINCT credential) AS credentials,
	       group_concat(DISTINCT identity) AS identity_set
	FROM attempts GROUP BY source, ip, minute / 15;
CREATE VIEW IF NOT EXISTS window_by_credential AS
	SELECT source, credential, (minute / 15) * 15 * 60 AS window_start,
	       SUM(CASE WHEN outcome IN ('failure','unknown_identity','throttled') THEN count ELSE 0 END) AS failures,
	       SUM(CASE WHEN outcome = 'success' THEN count ELSE 0 END) AS successes,
	       COUNT(DISTINCT identity) AS identities, COUNT(DISTINCT ip) AS ips,
	       group_concat(DISTINCT identity) AS identity_set
	FROM attempts WHERE credential != '' GROUP BY source, credential, minute / 15;
CREATE VIEW IF NOT EXISTS window_by_identity AS
	SELECT source, identity, (minute / 15) * 15 * 60 AS window_start,
	       SUM(CASE WHEN outcome IN ('failure','unknown_identity','throttled') THEN count ELSE 0 END) AS failures,
	       SUM(CASE WHEN outcome = 'success' THEN count ELSE 0 END) AS successes,
	       COUNT(DISTINCT credential) AS credentials, COUNT(DISTINCT ip) AS ips,
	       group_concat(DISTINCT credential) AS credential_set
	FROM attempts WHERE identity != '' GROUP BY source, identity, minute / 15;

CREATE TABLE IF NOT EXISTS incidents (
	id         INTEGER PRIMARY KEY,
	kind       TEXT NOT NULL,
	severity   TEXT NOT NULL,
	source     TEXT NOT NULL,
	grp        TEXT NOT NULL,
	state      TEXT NOT NULL,
	first_seen INTEGER NOT NULL, -- Unix nanoseconds
	last_seen  INTEGER NOT NULL,
	attempts   INTEGER NOT NULL,
	identities INTEGER NOT NULL,
	body       TEXT NOT NULL     -- the whole incident as JSON
);
CREATE INDEX IF NOT EXISTS incidents_open ON incidents(state, kind, source, grp);
CREATE TABLE IF NOT EXISTS incident_identities (
	incident INTEGER NOT NULL,
	identity TEXT NOT NULL,
	PRIMARY KEY (incident, identity)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS positions (
	source TEXT NOT NULL,
	path   TEXT NOT NULL,
	dev    INTEGER NOT NULL,
	inode  INTEGER NOT NULL,
	head   TEXT NOT NULL,
	offset INTEGER NOT NULL,
	PRIMARY KEY (source, path)
);

-- The latest minute of each source's stored attempts: a restart rebuilds
-- each source's windows back from its own, as sources keep their own event
-- time (one may be reading a backlog a day behind another).
CREATE TABLE IF NOT EXISTS source_clocks (
	source TEXT PRIMARY KEY,
	minute INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS replayed_files (
	dev    INTEGER NOT NULL,
	inode  INTEGER NOT NULL,
	size   INTEGER NOT NULL,
	head   TEXT NOT NULL,
	path   TEXT NOT NULL,
	source TEXT NOT NULL,
	at     INTEGER NOT NULL,
	PRIMARY KEY (dev, inode, size, head)
);
`

// attemptIndexes serve the store's own queries, which all select by minute
// (restore, retention). Rows arrive nearly in minute order, so the index
// grows at its right edge and costs little to keep up to date. Lookups by
// address, identity or credential scan the table instead: on a
// million-row case a forensic query takes a fraction of a second either
// way, while an index on a random text key makes every insert of an
// attacker's one-off address or identity touch a random page.
const attemptIndexes = `
CREATE INDEX IF NOT EXISTS attempts_minute ON attempts(minute);
`

// oldAttemptIndexes are the text-keyed indexes of earlier versions.
const oldAttemptIndexes = `
DROP INDEX IF EXISTS attempts_credential;
DROP INDEX IF EXISTS attempts_identity;
DROP INDEX IF EXISTS attempts_ip;
`

// StoreOptions configure Open.
type StoreOptions struct {
	// ReadOnly opens for queries only, without taking the writer lock.
	ReadOnly bool
	// BusyTimeout bounds how long a write waits for a lock. Default 5s.
	BusyTimeout time.Duration
	// CacheKiB is SQLite's page cache. Default 65536 (64 MiB, for replay
	// speed); a daemon bounding its memory passes less.
	CacheKiB int
	// DeferIndexes leaves the attempt indexes of a new database for
	// EnsureIndexes, or the next Open without it, to build (replay).
	DeferIndexes bool
	// Scratch is for a database this Open creates for a bulk load that is
	// worthless if it does not finish (a replay's new case): the rollback
	// journal is kept in memory and nothing is synced while it is written;
	// Close turns WAL on, so the file is like any other afterwards.
	Scratch bool
}

// Store is spraywatch's SQLite database: windows, incidents, positions.
// One process writes at a time (a lock file guards it); readers may share.
type Store struct {
	db      *sql.DB
	path    string
	lock    *os.File
	scratch bool
	// noLastMinute: a database of an earlier version opened read-only,
	// whose attempts have no last_minute column.
	noLastMinute bool
	// rows is writeAttempts' room, one flush at a time.
	rowsMu sync.Mutex
	rows   attemptScratch
}

// Open opens or creates the database at path, in WAL mode.
func Open(path string, o StoreOptions) (*Store, error) {
	if o.BusyTimeout == 0 {
		o.BusyTimeout = 5 * time.Second
	}
	if o.CacheKiB <= 0 {
		o.CacheKiB = 65536
	}
	s := &Store{path: path}
	mode := "rwc"
	if o.ReadOnly {
		mode = "ro"
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("open database %s: %w", path, err)
		}
	} else {
		if dir := filepath.Dir(path); dir != "" {
			if err := os.MkdirAll(dir, 0o750); err != nil {
				return nil, fmt.Errorf("open database %s: %w", path, err)
			}
		}
		// The lock sits beside the real file, so that every name of the
		// database (a symlink, a relative path) takes the same lock.
		lock, err := os.OpenFile(lockPath(path), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open database %s: %w", path, err)
		}
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			lock.Close()
			return nil, fmt.Errorf("open database %s: %w (lock file %s)", path, ErrInUse, lock.Name())
		}
		s.lock = lock
	}
	dsn := s.dsn(mode, o)
	if !o.ReadOnly {
		// Created for its owner only, whatever the umask: it holds
		// addresses, identities and key labels. SQLite gives its journal
		// and WAL files the database's mode.
		if f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err == nil {
			f.Close()
		}
	}
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	s.db = db
	if !o.ReadOnly {
		ddl := schema + oldAttemptIndexes
		if !o.DeferIndexes {
			ddl += attemptIndexes
		}
		if _, err := db.Exec(ddl); err != nil {
			s.Close()
			return nil, fmt.Errorf("open database %s: %w", path, classify(err))
		}
	} else if err := db.Ping(); err != nil {
		s.Close()
		return nil, fmt.Errorf("open database %s: %w", path, classify(err))
	}
	if err := s.upgrade(o.ReadOnly); err != nil {
		s.Close()
		return nil, fmt.Errorf("open database %s: %w", path, classify(err))
	}
	if !o.ReadOnly {
		// Attempt rows are unpacked by jsonb_each (SQLite 3.45 and
		// later): a build linked to an older SQLite says so here, not at
		// its first flush.
		var v string
		if err := db.QueryRow(`SELECT sqlite_version() FROM jsonb_each(x'0b') UNION ALL SELECT sqlite_version()`).Scan(&v); err != nil {
			s.Close()
			return nil, fmt.Errorf("open database %s: this SQLite cannot write attempt rows (3.45 or later needed): %w", path, classify(err))
		}
	}
	return s, nil
}

// upgrade adds what later versions added to an earlier version's tables:
// attempts' last_minute (NULL in the old rows, which are all per minute).
// Opened read-only, it notes what is missing instead.
func (s *Store) upgrade(readOnly bool) error {
	var n int
	err := s.db.QueryRow(`SELECT COUNT(*) FROM pragma_table_info('attempts') WHERE name = 'last_minute'`).Scan(&n)
	if err != nil || n > 0 {
		return err
	}
	if readOnly {
		s.noLastMinute = true
		return nil
	}
	_, err = s.db.Exec(`ALTER TABLE attempts ADD COLUMN last_minute INTEGER`)
	return err
}

// dsn returns the connection string for mode; a scratch database is only
// one when the file does not exist yet.
func (s *Store) dsn(mode string, o StoreOptions) string {
	journal, sync := "WAL", "NORMAL"
	if _, err := os.Stat(s.path); o.Scratch && !o.ReadOnly && errors.Is(err, os.ErrNotExist) {
		journal, sync, s.scratch = "MEMORY", "OFF", true
	}
	if o.ReadOnly {
		// Setting a journal mode is a write: a database a killed replay
		// left in rollback-journal mode must still open for queries.
		return fmt.Sprintf("file:%s?mode=%s&_busy_timeout=%d&_cache_size=-%d", s.path, mode, o.BusyTimeout.Milliseconds(), o.CacheKiB)
	}
	return fmt.Sprintf("file:%s?mode=%s&_journal_mode=%s&_synchronous=%s&_busy_timeout=%d&_txlock=immediate&_cache_size=-%d",
		s.path, mode, journal, sync, o.BusyTimeout.Milliseconds(), o.CacheKiB)
}

// lockPath is the writer lock of the database at path: beside the file the
// path resolves to (through symlinks, in the directory and of the file).
func lockPath(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return path + ".lock"
	}
	for range 40 { // a dangling symlink names the file SQLite will create
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			return real + ".lock"
		}
		dir, err := filepath.EvalSymlinks(filepath.Dir(abs))
		if err != nil {
			break
		}
		abs = filepath.Join(dir, filepath.Base(abs))
		target, err := os.Readlink(abs)
		if err != nil {
			break // the file does not exist yet
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(dir, target)
		}
		abs = target
	}
	return abs + ".lock"
}

// classify maps SQLite's busy, full, corrupt and read-only errors onto
// sentinels.
func classify(err error) error {
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sqlite3.ErrBusy, sqlite3.ErrLocked:
			return fmt.Errorf("%w: %v", ErrLocked, err)
		case sqlite3.ErrFull:
			return fmt.Errorf("%w: %v", ErrFull, err)
		case sqlite3.ErrCorrupt, sqlite3.ErrNotADB:
			return fmt.Errorf("%w: %v", ErrCorrupt, err)
		case sqlite3.ErrReadonly:
			return fmt.Errorf("%w: %v", ErrReadOnly, err)
		}
		switch se.SystemErrno {
		case syscall.ENOSPC, syscall.EDQUOT:
			return fmt.Errorf("%w: %v", ErrFull, err)
		case syscall.EROFS:
			return fmt.Errorf("%w: %v", ErrReadOnly, err)
		}
	}
	return err
}

// EnsureIndexes builds the attempt indexes if they are missing.
func (s *Store) EnsureIndexes(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, attemptIndexes); err != nil {
		return fmt.Errorf("index attempts: %w", classify(err))
	}
	return nil
}

// Path returns the database file.
func (s *Store) Path() string { return s.path }

// DB exposes the handle for packages that keep their own tables in the same
// database (the alert outbox).
func (s *Store) DB() *sql.DB { return s.db }

// Close closes the database and releases the writer lock.
func (s *Store) Close() error {
	var err error
	if s.db != nil && s.scratch {
		_, err = s.db.Exec(`PRAGMA journal_mode=WAL`)
	}
	if s.db != nil {
		err = errors.Join(err, s.db.Close())
	}
	if s.lock != nil {
		s.lock.Close()
	}
	return err
}

// Batch is everything one flush writes, in one transaction, so that counts,
// incidents and read positions never disagree after a crash.
type Batch struct {
	Attempts  *Attempts
	Incidents []*Incident
	// Quiet incidents changed only in counts nobody needs to hear about
	// again (a finding's line count): stored, but not given to Extra.
	Quiet      []*Incident
	Identities map[int64][]string // new identities per incident ID
	Positions  []Position
	Replayed   []ReplayedFile
	// Extra runs inside the same transaction, after the incidents are
	// written, with the incidents that changed (the alert outbox uses it).
	Extra func(tx *sql.Tx, changed []*Incident) error
}

// Position is how far a source's file has been read.
type Position struct {
	Source, Path string
	Dev, Inode   uint64
	Head         string
	Offset       int64
}

// ReplayedFile records a file read whole by a replay.
type ReplayedFile struct {
	Dev, Inode uint64
	Size       int64
	Head       string
	Path       string
	Source     string
	At         time.Time // when the replay read it
}

// Flush writes b in one transaction. On success the batch's attempts are
// cleared.
func (s *Store) Flush(ctx context.Context, b Batch) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("flush: %w", classify(err))
	}
	defer tx.Rollback()
	if err := s.writeBatch(ctx, tx, b); err != nil {
		return fmt.Errorf("flush: %w", classify(err))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("flush: %w", classify(err))
	}
	if b.Attempts != nil {
		b.Attempts.Clear()
	}
	return nil
}

func (s *Store) writeBatch(ctx context.Context, tx *sql.Tx, b Batch) error {
	if b.Attempts != nil && b.Attempts.Len() > 0 {
		s.rowsMu.Lock()
		err := writeAttempts(tx, b.Attempts, &s.rows)
		s.rowsMu.Unlock()
		if err != nil {
			return err
		}
	}
	for _, inc := range append(b.Incidents[:len(b.Incidents):len(b.Incidents)], b.Quiet...) {
		body, err := json.Marshal(inc)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO incidents (id, kind, severity, source, grp, state, first_seen, last_seen, attempts, identities, body)
			VALUES (?,?,?,?,?,?,?,?,?,?,?)
			ON CONFLICT(id) DO UPDATE SET severity=excluded.severity, state=excluded.state, first_seen=excluded.first_seen,
			last_seen=excluded.last_seen, attempts=excluded.attempts, identities=excluded.identities, body=excluded.body`,
			inc.ID, inc.Kind, inc.Severity, inc.Source, inc.Group, inc.State, inc.FirstSeen.UnixNano(), inc.LastSeen.UnixNano(),
			inc.Attempts, inc.Identities, string(body)); err != nil {
			return err
		}
	}
	if len(b.Identities) > 0 {
		st, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO incident_identities VALUES (?,?)`)
		if err != nil {
			return err
		}
		defer st.Close()
		for id, idents := range b.Identities {
			for _, ident := range idents {
				if _, err := st.ExecContext(ctx, id, ident); err != nil {
					return err
				}
			}
		}
	}
	for _, p := range b.Positions {
		if _, err := tx.ExecContext(ctx, `INSERT INTO positions VALUES (?,?,?,?,?,?)
			ON CONFLICT(source, path) DO UPDATE SET dev=excluded.dev, inode=excluded.inode, head=excluded.head, offset=excluded.offset`,
			p.Source, p.Path, int64(p.Dev), int64(p.Inode), p.Head, p.Offset); err != nil {
			return err
		}
	}
	for _, f := range b.Replayed {
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO replayed_files VALUES (?,?,?,?,?,?,?)`,
			int64(f.Dev), int64(f.Inode), f.Size, f.Head, f.Path, f.Source, f.At.Unix()); err != nil {
			return err
		}
	}
	if b.Extra != nil {
		return b.Extra(tx, b.Incidents)
	}
	return nil
}

// attemptRowsPerInsert rows at most go into one INSERT statement.
const attemptRowsPerInsert = 1024

// attemptScratch is writeAttempts' reusable room: a daemon writes a batch
// a second, a replay one every 50,000 rows.
type attemptScratch struct {
	groups map[rowGroup]int
	lists  [][]*pendingRow
	mixed  []*pendingRow
	blob   []byte
	clocks map[string]int64 // each source's latest minute in the batch
}

// rowGroup is what the rows of one INSERT share.
type rowGroup struct {
	source, file string
	inode        uint64
	kind         uint8
	single       bool // every row's count is 1 (most of a flood's rows)
}

// attemptInsert returns the INSERT of rows of one group. The rows share
// their source, file, inode and outcome (?1 to ?4), when single their
// count of 1, and when minute their minute (?6); the rest of each row
// comes packed in one JSONB array bound as ?5, an array per row (minute
// unless shared, address, identity, credential, count unless single,
// offset and, for a routine row, last minute), which SQLite unpacks in C.
// Binding a parameter is a cgo call and was most of what a row cost on
// the Go side; a statement of a thousand rows now binds five or six. The
// strings go in as raw text, byte for byte, and come out as the same TEXT
// values binding them one by one stored.
func attemptInsert(routine, single, minute bool) string {
	n := 0
	next := func() string {
		n++
		return fmt.Sprintf("value->>%d", n-1)
	}
	m, count := "?6", "1"
	if !minute {
		m = next()
	}
	ip, identity, credential := next(), next(), next()
	if !single {
		count = next()
	}
	cols := "source, minute, ip, identity, credential, outcome, count, file, inode, offset"
	vals := strings.Join([]string{"?1", m, ip, identity, credential, "?4", count, "?2", "?3", next()}, ", ")
	if routine {
		cols, vals = cols+", last_minute", vals+", "+next()
	}
	return "INSERT INTO attempts (" + cols + ") SELECT " + vals + " FROM jsonb_each(?5)"
}

// minuteRun rows of a group in one minute share it in their INSERT (one
// JSON extraction fewer a row); shorter runs are not worth a statement.
const minuteRun = 32

// writeAttempts inserts the pending rows, grouped by what their INSERT
// shares (rowGroup) and in the order they were made within a group, which
// is time order when lines come in order (B-tree inserts stay local; a
// group that is not is sorted). It deliberately does not pass a context:
// go-sqlite3 starts a goroutine per statement to watch a cancellable one.
func writeAttempts(tx *sql.Tx, a *Attempts, sc *attemptScratch) error {
	if sc.groups == nil {
		sc.groups = map[rowGroup]int{}
	}
	defer func() {
		for i := range sc.lists {
			clear(sc.lists[i])
			sc.lists[i] = sc.lists[i][:0]
		}
		clear(sc.groups)
		clear(sc.clocks)
		if cap(sc.blob) > 1<<20 {
			sc.blob = nil
		}
	}()
	var last *pendingRow
	var list int
	for i := range a.n {
		r := a.row(i)
		if r.count == 0 {
			continue
		}
		if m, ok := sc.clocks[r.source]; !ok || max(r.first, r.last) > m {
			if sc.clocks == nil {
				sc.clocks = map[string]int64{}
			}
			sc.clocks[r.source] = max(r.first, r.last)
		}
		// Consecutive rows mostly share their group: == on the same
		// strings is quick.
		if last == nil || r.source != last.source || r.pos.File != last.pos.File || r.pos.Inode != last.pos.Inode ||
			r.kind != last.kind || (r.count == 1) != (last.count == 1) {
			g := rowGroup{r.source, r.pos.File, r.pos.Inode, r.kind, r.count == 1}
			n, ok := sc.groups[g]
			if !ok {
				n = len(sc.groups)
				sc.groups[g] = n
				if n == len(sc.lists) {
					sc.lists = append(sc.lists, nil)
				}
			}
			list = n
		}
		sc.lists[list] = append(sc.lists[list], r)
		last = r
	}
	lists := sc.lists[:len(sc.groups)]
	slices.SortFunc(lists, func(x, y []*pendingRow) int {
		if c := strings.Compare(x[0].source, y[0].source); c != 0 {
			return c
		}
		if c := strings.Compare(x[0].pos.File, y[0].pos.File); c != 0 {
			return c
		}
		if c := cmp.Compare(x[0].pos.Inode, y[0].pos.Inode); c != 0 {
			return c
		}
		if c := cmp.Compare(x[0].kind, y[0].kind); c != 0 {
			return c
		}
		return cmp.Compare(x[0].count, y[0].count)
	})
	var stmts [8]*sql.Stmt // by shape: routine, single, minute
	defer func() {
		for _, st := range stmts {
			if st != nil {
				st.Close()
			}
		}
	}()
	insert := func(rows []*pendingRow, minute bool) error {
		first := rows[0]
		routine, single := first.kind == routineKind, first.count == 1
		outcome := ingest.Outcome(first.kind).String()
		if routine {
			outcome = ingest.Success.String()
		}
		shape := 0
		for i, b := range []bool{routine, single, minute} {
			if b {
				shape |= 1 << i
			}
		}
		st := stmts[shape]
		if st == nil {
			var err error
			if st, err = tx.Prepare(attemptInsert(routine, single, minute)); err != nil {
				return err
			}
			stmts[shape] = st
		}
		for len(rows) > 0 {
			part := rows[:min(len(rows), attemptRowsPerInsert)]
			rows = rows[len(part):]
			sc.blob = appendRowsJSONB(sc.blob[:0], part, routine, single, minute)
			args := []any{first.source, first.pos.File, int64(first.pos.Inode), outcome, sc.blob}
			if minute {
				args = append(args, first.first)
			}
			if _, err := st.Exec(args...); err != nil {
				return err
			}
		}
		return nil
	}
	byFirst := func(x, y *pendingRow) int { return cmp.Compare(x.first, y.first) }
	for _, rows := range lists {
		if !slices.IsSortedFunc(rows, byFirst) {
			slices.SortStableFunc(rows, byFirst)
		}
		mixed := sc.mixed[:0]
		for i := 0; i < len(rows); {
			j := i + 1
			for j < len(rows) && rows[j].first == rows[i].first {
				j++
			}
			if j-i < minuteRun {
				mixed = append(mixed, rows[i:j]...)
			} else if err := insert(rows[i:j], true); err != nil {
				return err
			}
			i = j
		}
		sc.mixed = mixed
		if len(mixed) > 0 {
			if err := insert(mixed, false); err != nil {
				return err
			}
		}
		clear(sc.mixed)
	}
	for source, m := range sc.clocks {
		if _, err := tx.Exec(`INSERT INTO source_clocks VALUES (?, ?)
			ON CONFLICT(source) DO UPDATE SET minute = MAX(minute, excluded.minute)`, source, m); err != nil {
			return err
		}
	}
	return nil
}

// JSONB element types and header sizes (SQLite's on-disk JSON format: a
// header byte of type and size, then the payload; integers are decimal
// text).
const (
	jsonbInt     = 3
	jsonbTextRaw = 10 // text as is, no escapes
	jsonbArray   = 11
	jsonbSize32  = 14 << 4 // the payload's size follows in 4 bytes
)

// appendRowsJSONB appends the rows as a JSONB array of arrays.
func appendRowsJSONB(b []byte, rows []*pendingRow, routine, single, minute bool) []byte {
	b, top := jsonbOpen(b)
	for _, r := range rows {
		var at int
		b, at = jsonbOpen(b)
		if !minute {
			b = appendJSONBInt(b, r.first)
		}
		b = appendJSONBIP(b, r.ip)
		b = appendJSONBText(b, r.identity)
		b = appendJSONBText(b, r.credential)
		if !single {
			b = appendJSONBInt(b, r.count)
		}
		b = appendJSONBInt(b, r.pos.Offset)
		if routine {
			if r.last == r.first {
				b = append(b, 0) // JSON null, SQL NULL: the row is of one minute
			} else {
				b = appendJSONBInt(b, r.last)
			}
		}
		jsonbClose(b, at)
	}
	jsonbClose(b, top)
	return b
}

// jsonbOpen starts an array whose size jsonbClose fills in.
func jsonbOpen(b []byte) ([]byte, int) { return append(b, jsonbSize32|jsonbArray, 0, 0, 0, 0), len(b) }

func jsonbClose(b []byte, at int) {
	binary.BigEndian.PutUint32(b[at+1:], uint32(len(b)-at-5))
}

func appendJSONBHeader(b []byte, typ byte, n int) []byte {
	switch {
	case n <= 11:
		return append(b, byte(n)<<4|typ)
	case n <= 0xff:
		return append(b, 12<<4|typ, byte(n))
	case n <= 0xffff:
		return append(b, 13<<4|typ, byte(n>>8), byte(n))
	}
	return binary.BigEndian.AppendUint32(append(b, jsonbSize32|typ), uint32(n))
}

func appendJSONBText(b []byte, s string) []byte {
	return append(appendJSONBHeader(b, jsonbTextRaw, len(s)), s...)
}

func appendJSONBIP(b []byte, ip netip.Addr) []byte {
	at := len(b)
	b = ip.AppendTo(append(b, 0))
	if n := len(b) - at - 1; n <= 11 {
		b[at] = byte(n)<<4 | jsonbTextRaw
		return b
	}
	s := string(b[at+1:]) // rare: longer than 11 bytes (IPv6), so a wider header
	return appendJSONBText(b[:at], s)
}

func appendJSONBInt(b []byte, v int64) []byte {
	at := len(b)
	b = strconv.AppendInt(append(b, 0), v, 10)
	b[at] = byte(len(b)-at-1)<<4 | jsonbInt // at most 20 bytes: "-9223372036854775808"
	if len(b)-at-1 > 11 {
		d := string(b[at+1:])
		return append(appendJSONBHeader(b[:at], jsonbInt, len(d)), d...)
	}
	return b
}

// WasReplayed reports whether a file of this size and content hash was
// already replayed into the database, and from which path. The content
// decides, not the device and inode: a copy of a file, or the same log piped
// through standard input, is the same evidence.
func (s *Store) WasReplayed(ctx context.Context, size int64, head string) (string, bool, error) {
	var path string
	err := s.db.QueryRowContext(ctx, `SELECT path FROM replayed_files WHERE size=? AND head=? LIMIT 1`, size, head).Scan(&path)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, classify(err)
	}
	return path, true, nil
}

// Positions returns the saved read positions.
func (s *Store) Positions(ctx context.Context) ([]Position, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT source, path, dev, inode, head, offset FROM positions`)
	if err != nil {
		return nil, classify(err)
	}
	defer rows.Close()
	var out []Position
	for rows.Next() {
		var p Position
		var dev, inode int64
		if err := rows.Scan(&p.Source, &p.Path, &dev, &inode, &p.Head, &p.Offset); err != nil {
			return nil, err
		}
		p.Dev, p.Inode = uint64(dev), uint64(inode)
		out = append(out, p)
	}
	return out, rows.Err()
}

// IncidentFilter selects incidents.
type IncidentFilter struct {
	Kind   string
	Source string
	State  string
	Since  time.Time
	MinID  int64
	Limit  int
}

// Incidents returns incidents matching f, oldest first.
func (s *Store) Incidents(ctx context.Context, f IncidentFilter) ([]*Incident, error) {
	var where []string
	var args []any
	if f.Kind != "" {
		where, args = append(where, "kind = ?"), append(args, f.Kind)
	}
	if f.Source != "" {
		where, args = append(where, "source = ?"), append(args, f.Source)
	}
	if f.State != "" {
		where, args = append(where, "state = ?"), append(args, f.State)
	}
	if f.MinID > 0 {
		where, args = append(where, "id >= ?"), append(args, f.MinID)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "last_seen >= ?"), append(args, f.Since.UnixNano())
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
		return nil, classify(err)
	}
	defer rows.Close()
	var out []*Incident
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			return nil, err
		}
		inc := &Incident{}
		if err := json.Unmarshal([]byte(body), inc); err != nil {
			return nil, fmt.Errorf("decode incident: %w", err)
		}
		out = append(out, inc)
	}
	return out, rows.Err()
}

// Incident returns one incident.
func (s *Store) Incident(ctx context.Context, id int64) (*Incident, error) {
	var body string
	err := s.db.QueryRowContext(ctx, `SELECT body FROM incidents WHERE id = ?`, id).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("incident %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, classify(err)
	}
	inc := &Incident{}
	if err := json.Unmarshal([]byte(body), inc); err != nil {
		return nil, fmt.Errorf("decode incident %d: %w", id, err)
	}
	return inc, nil
}

// IncidentIdentities returns every identity an incident involved.
func (s *Store) IncidentIdentities(ctx context.Context, id int64) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT identity FROM incident_identities WHERE incident = ? ORDER BY identity`, id)
	if err != nil {
		return nil, classify(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// MaxIncidentID returns the largest incident ID in use.
func (s *Store) MaxIncidentID(ctx context.Context) (int64, error) {
	var id sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(id) FROM incidents`).Scan(&id); err != nil {
		return 0, classify(err)
	}
	return id.Int64, nil
}

// LoadAttempts returns the stored attempt rows since a Unix minute, summed
// per key, in minute order, for rebuilding windows after a restart. A row
// of routine successes over several minutes comes back as two, like Each
// gives it: its first minute (count 1; left out before sinceMinute) and its
// last (the rest).
func (s *Store) LoadAttempts(ctx context.Context, sinceMinute int64, fn func(AttemptKey, AttemptCount) error) error {
	// The first row of a key (lowest rowid) holds its first line; SQLite
	// takes the bare columns from the row that MIN(rowid) picked.
	rows, err := s.db.QueryContext(ctx, s.lastMinute(`SELECT source, minute, ip, identity, credential, outcome, total, last, file, inode, offset FROM (
		SELECT source, minute, ip, identity, credential, outcome, SUM(count) OVER w AS total,
		       COALESCE(last_minute, minute) AS last,
		       file, inode, offset, ROW_NUMBER() OVER (w ORDER BY rowid) AS n
		FROM attempts WHERE minute >= ?2 AND COALESCE(last_minute, minute) >= ?1
		WINDOW w AS (PARTITION BY source, minute, ip, identity, credential, outcome, last_minute))
		WHERE n = 1 ORDER BY minute`), sinceMinute, sinceMinute-(RoutineMinutes-1))
	if err != nil {
		return classify(err)
	}
	defer rows.Close()
	var later lastParts // routine rows' last minutes, given in their turn
	for rows.Next() {
		var k AttemptKey
		var c AttemptCount
		var ip, outcome string
		var inode, last int64
		if err := rows.Scan(&k.Source, &k.Minute, &ip, &k.Identity, &k.Credential, &outcome, &c.Count, &last, &c.Pos.File, &inode, &c.Pos.Offset); err != nil {
			return err
		}
		k.IP, _ = netip.ParseAddr(ip)
		k.Outcome, _ = ingest.ParseOutcome(outcome)
		c.Pos.Inode = uint64(inode)
		for len(later) > 0 && later[0].k.Minute < k.Minute {
			p := heap.Pop(&later).(lastPart)
			if err := fn(p.k, p.c); err != nil {
				return err
			}
		}
		if last > k.Minute {
			rest := c
			if k.Minute >= sinceMinute {
				c.Count, rest.Count = 1, c.Count-1
			} else {
				c.Count = 0
			}
			if rest.Count > 0 {
				lk := k
				lk.Minute = last
				heap.Push(&later, lastPart{lk, rest})
			}
			if c.Count == 0 {
				continue
			}
		}
		if err := fn(k, c); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for len(later) > 0 {
		p := heap.Pop(&later).(lastPart)
		if err := fn(p.k, p.c); err != nil {
			return err
		}
	}
	return nil
}

// lastMinute adapts a query to a database without attempts.last_minute.
func (s *Store) lastMinute(q string) string {
	if s.noLastMinute {
		return strings.ReplaceAll(q, "last_minute", "NULL")
	}
	return q
}

// lastPart is the last minute of a routine row, waiting for its turn.
type lastPart struct {
	k AttemptKey
	c AttemptCount
}

// lastParts is a heap of them, earliest minute first.
type lastParts []lastPart

func (h lastParts) Len() int           { return len(h) }
func (h lastParts) Less(i, j int) bool { return h[i].k.Minute < h[j].k.Minute }
func (h lastParts) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *lastParts) Push(x any)        { *h = append(*h, x.(lastPart)) }
func (h *lastParts) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// SuccessPairs calls fn with the first successful minute of every
// (source, identity, credential) since a Unix minute: a restarting engine
// needs them for stale-key suppression beyond its windows.
func (s *Store) SuccessPairs(ctx context.Context, sinceMinute int64, fn func(source, identity, credential string, minute int64)) error {
	rows, err := s.db.QueryContext(ctx, `SELECT source, identity, credential, MIN(minute) FROM attempts
		WHERE outcome = 'success' AND identity != '' AND credential != '' AND minute >= ?
		GROUP BY source, identity, credential`, sinceMinute)
	if err != nil {
		return classify(err)
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

// DeleteAttemptsBefore drops attempt rows older than t (retention).
func (s *Store) DeleteAttemptsBefore(ctx context.Context, t time.Time) (int64, error) {
	// A routine row goes once its last minute is older too.
	res, err := s.db.ExecContext(ctx, s.lastMinute(`DELETE FROM attempts WHERE minute < ?1 AND COALESCE(last_minute, minute) < ?1`), t.Unix()/60)
	if err != nil {
		return 0, classify(err)
	}
	return res.RowsAffected()
}
