package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/detect/postgres"
	"github.com/spraywatch/spraywatch/rules"
)

// store is what the single-node daemon and replay need of either store:
// the engine's flush and restore, positions, retention, and the handle the
// alert outbox keeps its tables in.
type store interface {
	rules.Store
	Positions(ctx context.Context) ([]detect.Position, error)
	DeleteAttemptsBefore(ctx context.Context, t time.Time) (int64, error)
	WasReplayed(ctx context.Context, size int64, head string) (string, bool, error)
	ReplayedStart(ctx context.Context, head string) (path string, size int64, ok bool, err error)
	EnsureIndexes(ctx context.Context) error
	DB() *sql.DB
	Close() error
}

var (
	_ store = (*detect.Store)(nil)
	_ store = (*postgres.Store)(nil)
)

// Roles of 'spraywatch run'.
const (
	roleAll   = "all"
	roleAgent = "agent"
	roleJudge = "judge"
)

// nodeName is the config's node, or this machine's host name.
func nodeName(cfg Config) string {
	if cfg.Node != "" {
		return cfg.Node
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

var validNode = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// validateDatabase checks database and the keys that go with it.
func (c Config) validateDatabase() []error {
	var errs []error
	bad := func(field string, value any, why string) {
		errs = append(errs, fmt.Errorf("%w: %s: %q: %s", errConfig, field, fmt.Sprint(value), why))
	}
	if postgres.IsKeywordDSN(c.Database) {
		errs = append(errs, fmt.Errorf("%w: database: %w", errConfig, postgres.ErrKeywordDSN))
	} else if postgres.IsURL(c.Database) {
		if err := postgres.CheckURL(c.Database); err != nil {
			// The error names the URL redacted; never echo the raw value.
			errs = append(errs, fmt.Errorf("%w: database: %w", errConfig, err))
		}
		if c.DatabasePasswordFile != "" && c.DatabasePasswordEnv != "" {
			bad("database_password_env", c.DatabasePasswordEnv, "set database_password_file or database_password_env, not both")
		}
	} else if c.DatabasePasswordFile != "" || c.DatabasePasswordEnv != "" {
		bad("database", c.Database, "a password is only for a postgres:// URL")
	}
	if c.Node != "" && !validNode.MatchString(c.Node) {
		bad("node", c.Node, "must be letters, digits, '.', '_' or '-' (at most 63)")
	}
	if c.NodeTimeout < time.Second || c.NodeTimeout > 24*time.Hour {
		bad("node_timeout", c.NodeTimeout, "must be between 1s and 24h")
	}
	return errs
}

// databasePassword reads the PostgreSQL password from the file or the
// variable the config names; empty leaves libpq's own sources (PGPASSWORD,
// ~/.pgpass). Errors never show the password.
func databasePassword(cfg Config) (string, error) {
	switch {
	case cfg.DatabasePasswordFile != "":
		b, err := os.ReadFile(cfg.DatabasePasswordFile)
		if err != nil {
			return "", fmt.Errorf("%w: database_password_file: %q: %w", errConfig, cfg.DatabasePasswordFile, err)
		}
		if secretFileTooOpen(cfg.DatabasePasswordFile) {
			return "", fmt.Errorf("%w: database_password_file: %q: is readable by others; chmod 600 it", errConfig, cfg.DatabasePasswordFile)
		}
		return trimNewline(string(b)), nil
	case cfg.DatabasePasswordEnv != "":
		v := os.Getenv(cfg.DatabasePasswordEnv)
		if v == "" {
			return "", fmt.Errorf("%w: database_password_env: %q: the variable is not set or empty", errConfig, cfg.DatabasePasswordEnv)
		}
		return v, nil
	}
	return "", nil
}

func trimNewline(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}

// openPostgres opens the configured PostgreSQL database with o (its URL
// and password come from cfg).
func openPostgres(ctx context.Context, cfg Config, o postgres.Options) (*postgres.Store, error) {
	pw, err := databasePassword(cfg)
	if err != nil {
		return nil, err
	}
	o.URL, o.Password = cfg.Database, pw
	return postgres.Open(ctx, o)
}

// fleetSecret reads the fingerprint secret of an agent or a judge. Unlike
// a single node, a fleet member never creates it: every node and judge
// must share one secret, or one whole key gets another label on each
// node, so a missing file is a configuration error saying what to do.
func fleetSecret(cfg Config) ([]byte, error) {
	b, err := os.ReadFile(cfg.FingerprintSecretFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: fingerprint_secret_file: %s does not exist: in a fleet every agent and judge uses the same secret, so it is not created here; create it once (head -c 32 /dev/urandom > FILE; chmod 600 FILE) and copy it to every node and judge", errConfig, cfg.FingerprintSecretFile)
	case err != nil:
		return nil, fmt.Errorf("%w: fingerprint_secret_file: %s", errConfig, fileProblem(cfg.FingerprintSecretFile, err))
	case len(b) < 16:
		return nil, fmt.Errorf("%w: fingerprint_secret_file: %s holds %d bytes, fewer than 16", errConfig, cfg.FingerprintSecretFile, len(b))
	}
	return b, nil
}

// errOtherSecret: this fleet member's fingerprint secret is not the
// judge's.
var errOtherSecret = errors.New("this node's fingerprint secret is not the judge's: whole keys would get other labels here than on the other nodes, and an attack across nodes would look like several; copy the judge's fingerprint_secret_file to this node")

// checkDatabaseArg refuses a --db that is a libpq keyword/value string,
// which would otherwise be taken for a SQLite file name (and may hold a
// password).
func checkDatabaseArg(db string) error {
	if postgres.IsKeywordDSN(db) {
		return fmt.Errorf("%w: --db: %w", errUsage, postgres.ErrKeywordDSN)
	}
	return nil
}

// databaseForLog is the database setting fit for a log line.
func databaseForLog(db string) string {
	if postgres.IsURL(db) {
		return postgres.Redact(db)
	}
	return db
}

// openStore opens the configured database for the single-node daemon or a
// replay: the SQLite file, or PostgreSQL as this node.
func openStore(ctx context.Context, cfg Config, node string, o detect.StoreOptions) (store, error) {
	if postgres.IsURL(cfg.Database) {
		return openPostgres(ctx, cfg, postgres.Options{Node: node, ReadOnly: o.ReadOnly})
	}
	return detect.Open(cfg.Database, o)
}

// readStore is what 'alerts' and 'explain' read.
type readStore interface {
	Incidents(ctx context.Context, f detect.IncidentFilter) ([]*detect.Incident, error)
	Incident(ctx context.Context, id int64) (*detect.Incident, error)
	IncidentIdentities(ctx context.Context, id int64) ([]string, error)
	Close() error
}

// envPasswordFile names a file holding the PostgreSQL password for the
// commands that take --db (alerts, explain, replay).
const envPasswordFile = "SPRAYWATCH_DATABASE_PASSWORD_FILE"
