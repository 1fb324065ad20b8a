package main

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/ingest/flask"
	"github.com/spraywatch/spraywatch/ingest/gunicorn"
	"github.com/spraywatch/spraywatch/ingest/nginx"
)

// SourceConfig is one log source.
type SourceConfig struct {
	Name   string   `yaml:"name"`
	Format string   `yaml:"format"`
	Paths  []string `yaml:"paths"`
	// LogFormat is nginx's log_format, pasted from nginx.conf, or
	// gunicorn's access_log_format. Empty: nginx combined, gunicorn's
	// default.
	LogFormat string `yaml:"log_format"`
	// AppLogFormat (flask) is the Python logging format of the app's own
	// lines; default Flask's "[%(asctime)s] %(levelname)s in %(module)s:
	// %(message)s", whose message's key=value pairs are read.
	AppLogFormat string `yaml:"app_log_format"`
	// AppRegex (flask), when set, is tried on the app's lines first, with
	// named groups (identity, credential, ip, status or outcome, time);
	// lines it does not match are still read by app_log_format, and those
	// without an identity, credential, status or outcome are no event.
	AppRegex string `yaml:"app_regex"`
	// JoinWindow (flask) bounds the time between an app line and the
	// werkzeug access line of the same request (default 2s).
	JoinWindow time.Duration `yaml:"join_window"`
	// Fields maps roles (ip, time, request, method, path, query, status,
	// latency, user, identity, credential, outcome) to the format's field
	// names.
	Fields       map[string]string `yaml:"fields"`
	Credential   CredentialConfig  `yaml:"credential"`
	Identity     IdentityConfig    `yaml:"identity"`
	Statuses     StatusConfig      `yaml:"statuses"`
	Routes       []string          `yaml:"routes"`
	IgnoreRoutes []string          `yaml:"ignore_routes"`
	Timezone     string            `yaml:"timezone"`
	// TrustedProxies are the proxy addresses or CIDRs skipped from the
	// right of a forwarded-for list; unset: loopback and private
	// addresses; []: none (the rightmost entry is the client).
	TrustedProxies []string `yaml:"trusted_proxies"`
	// LatencyUnit (s, ms, us, ns) is the unit of the latency field;
	// unset: from the field (duration_ms is ms), else seconds.
	LatencyUnit string `yaml:"latency_unit"`
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

// options turns a source's config into ingest options. Errors name the
// field and value; every problem is reported, not only the first.
func (s SourceConfig) options(secret []byte) (ingest.Options, error) {
	o := ingest.Options{Name: s.Name, Format: s.Format, Layout: s.LogFormat, Secret: secret,
		IdentityPaths: s.Identity.Path, IdentityQuery: s.Identity.Query, IdentityFromUser: s.Identity.RemoteUser,
		Routes: s.Routes, IgnoreRoutes: s.IgnoreRoutes, Fields: map[ingest.Role]string{}}
	if err := s.checkFormat(); err != nil {
		return o, err // nothing else can be judged without a format
	}
	var errs []error
	o.AppLogFormat, o.AppRegex, o.JoinWindow = s.AppLogFormat, s.AppRegex, s.JoinWindow
	for role, field := range s.Fields {
		r, ok := ingest.RoleByName(role)
		if !ok {
			errs = append(errs, fmt.Errorf("fields.%s: %q: unknown role (%s)", role, field, strings.Join(ingest.RoleNames(), ", ")))
			continue
		}
		o.Fields[r] = field
	}
	if s.Credential.Field != "" {
		if s.Format == ingest.FormatCombined {
			errs = append(errs, fmt.Errorf("credential.field: %q: the combined format carries no credential (use format nginx with your log_format)", s.Credential.Field))
		}
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
		errs = append(errs, fmt.Errorf("credential.kind: %q: must be auto, prefix or key", s.Credential.Kind))
	}
	if name := o.Fields[ingest.RoleCredential]; o.CredentialKind == ingest.CredentialPrefix && ingest.IsHeaderField(s.Format, name) {
		where := "credential.field"
		if s.Credential.Field == "" {
			where = "fields.credential"
		}
		errs = append(errs, fmt.Errorf("credential.kind: %q: %s %q logs a request header, which holds whole keys: use kind key (or auto) so that they are fingerprinted", s.Credential.Kind, where, name))
	}
	if len(s.Identity.Path) == 0 && s.Identity.Query == "" && s.Identity.Field == "" && !s.Identity.RemoteUser && s.Format != ingest.FormatJSON && s.Format != ingest.FormatFlask {
		errs = append(errs, fmt.Errorf("identity: {}: say where the client ID is (path, query, field or remote_user)"))
	}
	if s.Identity.Query == "" && s.Identity.Field == "" && !s.Identity.RemoteUser {
		for j, t := range s.Identity.Path {
			if !strings.Contains(t, "{identity}") {
				errs = append(errs, fmt.Errorf("identity.path[%d]: %q: has no {identity} segment, so no client ID is ever read (other {...} segments match any value)", j, t))
			}
		}
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
				errs = append(errs, fmt.Errorf("statuses.%s: %q: %w", x.name, v, err))
				continue
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
			errs = append(errs, fmt.Errorf("timezone: %q: %w", s.Timezone, err))
		}
		o.Location = loc
	}
	if s.TrustedProxies != nil {
		o.TrustedProxies = []netip.Prefix{}
		for j, v := range s.TrustedProxies {
			pfx, err := netip.ParsePrefix(v)
			if err != nil {
				a, aerr := netip.ParseAddr(v)
				if aerr != nil {
					errs = append(errs, fmt.Errorf("trusted_proxies[%d]: %q: not an address or CIDR", j, v))
					continue
				}
				pfx = netip.PrefixFrom(a, a.BitLen())
			}
			o.TrustedProxies = append(o.TrustedProxies, pfx.Masked())
		}
	}
	if s.LatencyUnit != "" {
		u, ok := map[string]time.Duration{"s": time.Second, "ms": time.Millisecond, "us": time.Microsecond, "µs": time.Microsecond, "ns": time.Nanosecond}[s.LatencyUnit]
		if !ok {
			errs = append(errs, fmt.Errorf("latency_unit: %q: must be s, ms, us or ns", s.LatencyUnit))
		}
		o.LatencyUnit = u
	}
	if len(errs) > 0 {
		return o, errors.Join(errs...)
	}
	if _, err := ingest.NewParser(o); err != nil {
		return o, err
	}
	return o, nil
}

// checkFormat validates format and the format-specific keys, compiling
// log formats so that a bad one is reported with the offending variable.
func (s SourceConfig) checkFormat() error {
	known := strings.Join(ingest.Formats, ", ")
	switch s.Format {
	case ingest.FormatNginx, ingest.FormatJSON, ingest.FormatGunicorn, ingest.FormatFlask, ingest.FormatCombined:
	case "":
		return fmt.Errorf("format: %q: must be set (%s)", s.Format, known)
	default:
		return fmt.Errorf("format: %q: must be one of %s", s.Format, known)
	}
	switch {
	case s.LogFormat != "" && s.Format == ingest.FormatCombined && s.LogFormat != "combined":
		return fmt.Errorf("log_format: %q: format combined is fixed; use format nginx for a custom log_format", s.LogFormat)
	case s.LogFormat != "" && s.Format != ingest.FormatNginx && s.Format != ingest.FormatGunicorn && s.Format != ingest.FormatCombined:
		return fmt.Errorf("log_format: %q: only applies to formats nginx and gunicorn", s.LogFormat)
	case s.Format != ingest.FormatFlask && s.AppLogFormat != "":
		return fmt.Errorf("app_log_format: %q: only applies to format flask", s.AppLogFormat)
	case s.Format != ingest.FormatFlask && s.AppRegex != "":
		return fmt.Errorf("app_regex: %q: only applies to format flask", s.AppRegex)
	case s.Format != ingest.FormatFlask && s.JoinWindow != 0:
		return fmt.Errorf("join_window: %q: only applies to format flask", s.JoinWindow)
	case s.JoinWindow < 0 || s.JoinWindow > time.Minute:
		return fmt.Errorf("join_window: %q: must be between 0s and 1m", s.JoinWindow)
	}
	switch s.Format {
	case ingest.FormatNginx:
		if _, err := nginx.Compile(s.LogFormat); err != nil {
			return fmt.Errorf("log_format: %q: %w", s.LogFormat, err)
		}
	case ingest.FormatGunicorn:
		if _, err := gunicorn.Compile(s.LogFormat); err != nil {
			return fmt.Errorf("log_format: %q: %w", s.LogFormat, err)
		}
	case ingest.FormatFlask:
		if s.AppRegex != "" {
			if _, err := flask.CompileRegex(s.AppRegex); err != nil {
				return fmt.Errorf("app_regex: %q: %w", s.AppRegex, err)
			}
		}
		if _, err := flask.CompileLogging(s.AppLogFormat); err != nil {
			return fmt.Errorf("app_log_format: %q: %w", s.AppLogFormat, err)
		}
	}
	return nil
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
