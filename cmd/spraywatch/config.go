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
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/ingest/nginx"
	"github.com/spraywatch/spraywatch/rules"
)

// errConfig marks configuration problems (exit code 2).
var errConfig = errors.New("config")

// Config is the YAML file. Only this package knows its shape; it is turned
// into the options of ingest, rules and alert.
type Config struct {
	// Database is the SQLite file for windows, incidents and positions.
	Database string `yaml:"database"`
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
}

// SourceConfig is one log source.
type SourceConfig struct {
	Name   string   `yaml:"name"`
	Format string   `yaml:"format"`
	Paths  []string `yaml:"paths"`
	// LogFormat is nginx's log_format, pasted from nginx.conf.
	LogFormat string `yaml:"log_format"`
	// Fields maps roles (ip, time, request, method, path, query, status,
	// latency, user, identity, credential) to the format's field names.
	Fields       map[string]string `yaml:"fields"`
	Credential   CredentialConfig  `yaml:"credential"`
	Identity     IdentityConfig    `yaml:"identity"`
	Statuses     StatusConfig      `yaml:"statuses"`
	Routes       []string          `yaml:"routes"`
	IgnoreRoutes []string          `yaml:"ignore_routes"`
	Timezone     string            `yaml:"timezone"`
}

// CredentialConfig says where the credential is and what it holds.
type CredentialConfig struct {
	Field string `yaml:"field"`
	// Kind: auto (default), prefix, or key (whole keys, fingerprinted).
	Kind string `yaml:"kind"`
}

// IdentityConfig says where the client ID comes from; the first that yields
// a value wins, in the order field, path, query, remote_user.
type IdentityConfig struct {
	Path       []string `yaml:"path"`
	Query      string   `yaml:"query"`
	Field      string   `yaml:"field"`
	RemoteUser bool     `yaml:"remote_user"`
}

// StatusConfig lists statuses per outcome: numbers, "4xx" or "500-599".
type StatusConfig struct {
	Failure         statusList `yaml:"failure"`
	UnknownIdentity statusList `yaml:"unknown_identity"`
	Success         statusList `yaml:"success"`
	Throttled       statusList `yaml:"throttled"`
}

// statusList accepts numbers and strings alike.
type statusList []string

func (s *statusList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = statusList{n.Value}
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return fmt.Errorf("line %d: expected a list of statuses", n.Line)
	}
	out := statusList{}
	for _, c := range n.Content {
		if c.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: expected a status", c.Line)
		}
		out = append(out, c.Value)
	}
	*s = out
	return nil
}

// AlertConfig is one sink.
type AlertConfig struct {
	// Type: stdout or file.
	Type string `yaml:"type"`
	// Format: text (default for stdout) or json (JSON lines).
	Format string `yaml:"format"`
	Path   string `yaml:"path"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Database:              "/var/lib/spraywatch/spraywatch.db",
		FingerprintSecretFile: "/var/lib/spraywatch/fingerprint.key",
		Retention:             30 * 24 * time.Hour,
		MaxLineBytes:          ingest.MaxLineBytes,
		Rules:                 rules.DefaultConfig(),
		Alerts:                []AlertConfig{{Type: "stdout", Format: "text"}},
	}
}

// LoadConfig reads a config file strictly: unknown keys are errors.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("%w: read %s: %w", errConfig, path, err)
	}
	return ParseConfig(data, filepath.Dir(path))
}

// ParseConfig decodes YAML over the defaults and validates it. Relative
// paths are taken from dir.
func ParseConfig(data []byte, dir string) (Config, error) {
	c := DefaultConfig()
	c.Alerts = nil
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("%w: %w", errConfig, err)
	}
	if c.Alerts == nil {
		c.Alerts = DefaultConfig().Alerts
	}
	for _, p := range []*string{&c.Database, &c.FingerprintSecretFile} {
		if *p != "" && !filepath.IsAbs(*p) && dir != "" {
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
	if err := c.Validate(); err != nil {
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
	if c.Retention < time.Hour {
		bad("retention", c.Retention, "must be at least 1h")
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
			errs = append(errs, fmt.Errorf("%w: %s (%s): %w", errConfig, f, s.Name, err))
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
		f := fmt.Sprintf("alerts[%d]", i)
		switch a.Type {
		case "stdout":
		case "file":
			if a.Path == "" {
				bad(f+".path", a.Path, "must be set for type file")
			}
		default:
			bad(f+".type", a.Type, "must be stdout or file")
		}
		if a.Format != "" && a.Format != "text" && a.Format != "json" {
			bad(f+".format", a.Format, "must be text or json")
		}
	}
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

// options turns a source's config into ingest options. Errors name the
// field and value.
func (s SourceConfig) options(secret []byte) (ingest.Options, error) {
	o := ingest.Options{Name: s.Name, Format: s.Format, Layout: s.LogFormat, Secret: secret,
		IdentityPaths: s.Identity.Path, IdentityQuery: s.Identity.Query, IdentityFromUser: s.Identity.RemoteUser,
		Routes: s.Routes, IgnoreRoutes: s.IgnoreRoutes, Fields: map[ingest.Role]string{}}
	switch s.Format {
	case ingest.FormatNginx, ingest.FormatJSON:
	case "":
		return o, fmt.Errorf("format: %q: must be set (nginx or json)", s.Format)
	default:
		return o, fmt.Errorf("format: %q: must be nginx or json", s.Format)
	}
	if s.LogFormat != "" && s.Format != ingest.FormatNginx {
		return o, fmt.Errorf("log_format: %q: only applies to format nginx", s.LogFormat)
	}
	if s.Format == ingest.FormatNginx {
		if _, err := nginx.Compile(s.LogFormat); err != nil {
			return o, fmt.Errorf("log_format: %q: %w", s.LogFormat, err)
		}
	}
	for role, field := range s.Fields {
		r, ok := ingest.RoleByName(role)
		if !ok {
			return o, fmt.Errorf("fields.%s: %q: unknown role (ip, time, request, method, path, query, status, latency, user, identity, credential)", role, field)
		}
		o.Fields[r] = field
	}
	if s.Credential.Field != "" {
		o.Fields[ingest.RoleCredential] = s.Credential.Field
	}
	if s.Identity.Field != "" {
		o.Fields[ingest.RoleIdentity] = s.Identity.Field
	}
	switch s.Credential.Kind {
	case "", "auto":
		o.CredentialKind = ingest.CredentialAuto
	case "prefix":
		o.CredentialKind = ingest.CredentialPrefix
	case "key":
		o.CredentialKind = ingest.CredentialKey
	default:
		return o, fmt.Errorf("credential.kind: %q: must be auto, prefix or key", s.Credential.Kind)
	}
	if len(s.Identity.Path) == 0 && s.Identity.Query == "" && s.Identity.Field == "" && !s.Identity.RemoteUser && s.Format != ingest.FormatJSON {
		return o, fmt.Errorf("identity: {}: say where the client ID is (path, query, field or remote_user)")
	}
	o.Statuses = ingest.DefaultStatuses()
	for _, x := range []struct {
		name string
		list statusList
		dst  *[]ingest.StatusRange
	}{{"failure", s.Statuses.Failure, &o.Statuses.Failure}, {"unknown_identity", s.Statuses.UnknownIdentity, &o.Statuses.UnknownIdentity},
		{"success", s.Statuses.Success, &o.Statuses.Success}, {"throttled", s.Statuses.Throttled, &o.Statuses.Throttled}} {
		if x.list == nil {
			continue
		}
		*x.dst = nil
		for _, v := range x.list {
			r, err := parseStatus(v)
			if err != nil {
				return o, fmt.Errorf("statuses.%s: %q: %w", x.name, v, err)
			}
			*x.dst = append(*x.dst, r)
		}
	}
	switch s.Timezone {
	case "", "Local", "local":
		o.Location = time.Local
	default:
		loc, err := time.LoadLocation(s.Timezone)
		if err != nil {
			return o, fmt.Errorf("timezone: %q: %w", s.Timezone, err)
		}
		o.Location = loc
	}
	if _, err := ingest.NewParser(o); err != nil {
		return o, err
	}
	return o, nil
}

// parseStatus reads "401", "4xx" or "500-599".
func parseStatus(v string) (ingest.StatusRange, error) {
	v = strings.TrimSpace(v)
	if len(v) == 3 && strings.HasSuffix(v, "xx") && v[0] >= '1' && v[0] <= '5' {
		lo := int(v[0]-'0') * 100
		return ingest.StatusRange{Lo: lo, Hi: lo + 99}, nil
	}
	lo, hi, isRange := strings.Cut(v, "-")
	a, err := strconv.Atoi(lo)
	if err != nil || a < 100 || a > 599 {
		return ingest.StatusRange{}, errors.New("not a status, a class like 4xx, or a range like 500-599")
	}
	b := a
	if isRange {
		if b, err = strconv.Atoi(hi); err != nil || b < a || b > 599 {
			return ingest.StatusRange{}, errors.New("not a status range like 500-599")
		}
	}
	return ingest.StatusRange{Lo: a, Hi: b}, nil
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
