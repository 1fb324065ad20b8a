package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spraywatch/spraywatch/detect/postgres"
	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/rules"
)

// errConfig marks configuration problems (exit code 2).
var errConfig = errors.New("config")

// Config is the YAML file. Only this package knows its shape; it is turned
// into the options of ingest, rules and alert.
type Config struct {
	// Database is the SQLite file for windows, incidents and positions, or
	// a postgres:// URL (without a password) for a fleet's shared store.
	Database string `yaml:"database"`
	// DatabasePasswordFile or DatabasePasswordEnv hold the PostgreSQL
	// password; without either, libpq's PGPASSWORD and ~/.pgpass apply.
	DatabasePasswordFile string `yaml:"database_password_file"`
	DatabasePasswordEnv  string `yaml:"database_password_env"`
	// Node names this machine in a fleet: its attempt rows and positions
	// carry it. Default: the host name.
	Node string `yaml:"node"`
	// NodeTimeout: a node without a flush for this long is reported quiet
	// and the judge stops waiting for it. Default 30s.
	NodeTimeout time.Duration `yaml:"node_timeout"`
	// FingerprintSecretFile keys credential fingerprints; created 0600 with
	// random bytes when missing.
	FingerprintSecretFile string `yaml:"fingerprint_secret_file"`
	// Retention is how long per-minute attempt counts are kept.
	Retention time.Duration `yaml:"retention"`
	// MaxLineBytes: longer lines are skipped and counted.
	MaxLineBytes int            `yaml:"max_line_bytes"`
	Sources      []SourceConfig `yaml:"sources"`
	Rules        rules.Config   `yaml:"rules"`
	// Allow lists addresses and CIDR ranges that are never judged.
	Allow  []string      `yaml:"allow"`
	Alerts []AlertConfig `yaml:"alerts"`
	// DaemonConfig holds the keys of 'spraywatch run' (config_daemon.go).
	DaemonConfig `yaml:",inline"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Database:              "/var/lib/spraywatch/spraywatch.db",
		NodeTimeout:           30 * time.Second,
		FingerprintSecretFile: "/var/lib/spraywatch/fingerprint.key",
		Retention:             30 * 24 * time.Hour,
		MaxLineBytes:          ingest.MaxLineBytes,
		Rules:                 rules.DefaultConfig(),
		Alerts:                []AlertConfig{{Type: "stdout", Format: "text"}},
		DaemonConfig:          defaultDaemonConfig(),
	}
}

// LoadConfig reads a config file strictly: unknown keys are errors.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %s", errConfig, fileProblem(path, err))
	}
	c, err := ParseConfig(data, filepath.Dir(path))
	if err != nil {
		return Config{}, inFile(path, err)
	}
	return c, nil
}

// inFile names the config file on every line of a config error (one
// line per problem), so that the reader knows which file to fix.
func inFile(path string, err error) error { return &fileError{path: path, err: err} }

type fileError struct {
	path string
	err  error
}

func (e *fileError) Error() string {
	lines := strings.Split(e.err.Error(), "\n")
	for i, l := range lines {
		lines[i] = e.path + ": " + l
	}
	return strings.Join(lines, "\n")
}

func (e *fileError) Unwrap() error { return e.err }

// ParseConfig decodes YAML over the defaults and validates it. Relative
// paths are taken from dir.
func ParseConfig(data []byte, dir string) (Config, error) {
	c := DefaultConfig()
	c.Alerts = nil
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// Unknown keys and mistyped values come back as one *yaml.TypeError
	// with everything else decoded, so they are reported together with
	// the semantic problems below; a syntax error stops here.
	// The document is walked first so that every error names the field
	// path a person wrote (sources[0].credential), never a Go type.
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return Config{}, fmt.Errorf("%w: %s", errConfig, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	paths := walkYAML(&doc, reflect.TypeOf(c))
	var decodeErrs []error
	for _, m := range paths.unknown {
		decodeErrs = append(decodeErrs, fmt.Errorf("%w: %s", errConfig, m))
	}
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return Config{}, fmt.Errorf("%w: %s", errConfig, strings.TrimPrefix(err.Error(), "yaml: "))
		}
		for _, e := range te.Errors {
			if m := paths.message(e); m != "" {
				decodeErrs = append(decodeErrs, fmt.Errorf("%w: %s", errConfig, m))
			}
		}
	}
	if c.Alerts == nil {
		c.Alerts = DefaultConfig().Alerts
	}
	for _, p := range []*string{&c.Database, &c.FingerprintSecretFile, &c.DatabasePasswordFile} {
		if *p != "" && !filepath.IsAbs(*p) && dir != "" && !postgres.IsURL(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for i := range c.Sources {
		for j, p := range c.Sources[i].Paths {
			if !filepath.IsAbs(p) && dir != "" {
				c.Sources[i].Paths[j] = filepath.Join(dir, p)
			}
		}
	}
	if err := errors.Join(append(decodeErrs, c.Validate())...); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate returns every problem, each naming the field and its value.
func (c Config) Validate() error {
	var errs []error
	bad := func(field string, value any, why string) {
		errs = append(errs, fmt.Errorf("%w: %s: %q: %s", errConfig, field, fmt.Sprint(value), why))
	}
	if c.Database == "" {
		bad("database", c.Database, "must be set")
	}
	if c.FingerprintSecretFile == "" {
		bad("fingerprint_secret_file", c.FingerprintSecretFile, "must be set")
	}
	if longest := c.Rules.LongestWindow(); c.Retention < longest {
		bad("retention", c.Retention, fmt.Sprintf("must cover the longest rule window (%v), or a restart loses window state", longest))
	}
	if c.MaxLineBytes < 256 || c.MaxLineBytes > 64<<20 {
		bad("max_line_bytes", c.MaxLineBytes, "must be between 256 and 67108864")
	}
	names := map[string]bool{}
	for i, s := range c.Sources {
		f := fmt.Sprintf("sources[%d]", i)
		if s.Name == "" {
			bad(f+".name", s.Name, "must be set")
		} else if names[s.Name] {
			bad(f+".name", s.Name, "is used by another source")
		}
		names[s.Name] = true
		if _, err := s.options(nil); err != nil {
			each := []error{err}
			if joined, ok := err.(interface{ Unwrap() []error }); ok {
				each = joined.Unwrap() // one line per problem, each naming the source
			}
			for _, e := range each {
				at := f
				if s.Name != "" {
					at = fmt.Sprintf("%s (%s)", f, s.Name)
				}
				errs = append(errs, fmt.Errorf("%w: %s: %w", errConfig, at, e))
			}
		}
		for j, p := range s.Paths {
			if _, err := filepath.Match(p, ""); err != nil {
				bad(fmt.Sprintf("%s.paths[%d]", f, j), p, "is not a valid glob")
			}
		}
	}
	for i, a := range c.Allow {
		if _, err := parsePrefix(a); err != nil {
			bad(fmt.Sprintf("allow[%d]", i), a, "is not an address or CIDR range")
		}
	}
	for i, a := range c.Alerts {
		errs = append(errs, a.validate(fmt.Sprintf("alerts[%d]", i))...)
	}
	errs = append(errs, c.DaemonConfig.validate()...)
	errs = append(errs, c.validateDatabase()...)
	if err := c.Rules.Validate("rules."); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", errConfig, err))
	}
	return errors.Join(errs...)
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// AllowList returns the parsed allow list.
func (c Config) AllowList() []netip.Prefix {
	var out []netip.Prefix
	for _, a := range c.Allow {
		if p, err := parsePrefix(a); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// loadSecret reads the fingerprint secret, creating it (0600, 32 random
// bytes) when missing.
func loadSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("create fingerprint secret %s: %w", path, err)
		}
		secret := make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			if errors.Is(err, fs.ErrExist) {
				return loadSecret(path)
			}
			return nil, fmt.Errorf("create fingerprint secret %s: %w", path, err)
		}
		defer f.Close()
		if _, err := f.Write(secret); err != nil {
			return nil, fmt.Errorf("write fingerprint secret %s: %w", path, err)
		}
		return secret, f.Sync()
	}
	if err != nil {
		return nil, fmt.Errorf("read fingerprint secret %s: %w", path, err)
	}
	if len(b) < 16 {
		return nil, fmt.Errorf("%w: fingerprint_secret_file: %q: holds %d bytes, needs at least 16", errConfig, path, len(b))
	}
	return b, nil
}
