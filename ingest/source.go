package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spraywatch/spraywatch/ingest/flask"
	"github.com/spraywatch/spraywatch/ingest/gunicorn"
	"github.com/spraywatch/spraywatch/ingest/jsonlog"
	"github.com/spraywatch/spraywatch/ingest/nginx"
)

// Formats a source can have.
const (
	FormatNginx    = "nginx"
	FormatJSON     = "json"
	FormatGunicorn = "gunicorn"
	FormatFlask    = "flask"
	// FormatCombined is the Apache/nginx combined (or common) log, which
	// carries no credential.
	FormatCombined = "combined"
)

// Formats lists every format, for config messages.
var Formats = []string{FormatNginx, FormatJSON, FormatGunicorn, FormatFlask, FormatCombined}

// Role names the fields spraywatch reads from a line. Options.Fields maps a
// role to the name of a field in the source's format (an nginx variable
// without '$', a gunicorn atom, a dotted JSON path, a regex group, a key of
// a key=value pair in a log message).
type Role int

// Roles.
const (
	RoleIP Role = iota
	RoleTime
	RoleRequest // "GET /path?query HTTP/1.1"
	RoleMethod
	RolePath // path, with or without ?query
	RoleQuery
	RoleStatus
	RoleLatency // seconds, fractions allowed
	RoleUser
	RoleIdentity
	RoleCredential
	// RoleOutcome is an application's own verdict (failure, success,
	// unknown_identity, throttled, missing_credential, or a synonym such as
	// denied or ok); it wins over the status.
	RoleOutcome
	numRoles
)

var roleNames = [numRoles]string{"ip", "time", "request", "method", "path", "query", "status", "latency", "user", "identity", "credential", "outcome"}

func (r Role) String() string { return roleNames[r] }

// RoleNames lists the roles' config names.
func RoleNames() []string { return roleNames[:] }

// RoleByName returns the role with the given config name.
func RoleByName(name string) (Role, bool) {
	for i, n := range roleNames {
		if n == name {
			return Role(i), true
		}
	}
	return 0, false
}

type defaults [numRoles][]string

var (
	nginxDefaults = defaults{
		RoleIP:      {"remote_addr"},
		RoleTime:    {"time_local", "time_iso8601", "msec"},
		RoleRequest: {"request"},
		RoleMethod:  {"request_method"},
		RolePath:    {"request_uri", "uri"},
		RoleQuery:   {"args", "query_string"},
		RoleStatus:  {"status"},
		RoleLatency: {"request_time", "upstream_response_time"},
		RoleUser:    {"remote_user"},
	}
	// jsonDefaults covers nginx escape=json logs, structlog (event,
	// timestamp) and python-json-logger (asctime, levelname, message).
	jsonDefaults = defaults{
		RoleIP:       {"remote_addr", "ip", "client_ip", "remote_ip", "clientip", "src_ip", "client_addr"},
		RoleTime:     {"time", "timestamp", "ts", "@timestamp", "asctime", "time_iso8601", "time_local", "msec", "created"},
		RoleRequest:  {"request"},
		RoleMethod:   {"method", "request_method", "http_method"},
		RolePath:     {"path", "request_uri", "uri", "url", "request_path"},
		RoleQuery:    {"query", "args", "query_string"},
		RoleStatus:   {"status", "status_code", "response_status", "http_status"},
		RoleLatency:  {"request_time", "duration", "latency", "elapsed", "response_time"},
		RoleUser:     {"remote_user", "user"},
		RoleIdentity: {"client_id", "identity", "user_id", "username"},
		// A request header logged whole (nginx escape=json with
		// "$http_x_api_key", an app's api_key): always fingerprinted.
		RoleCredential: {"http_x_api_key", "http_authorization", "api_key", "apikey", "x_api_key"},
		RoleOutcome:    {"outcome"},
	}
	gunicornDefaults = defaults{
		RoleIP:      {"h"},
		RoleTime:    {"t"},
		RoleRequest: {"r"},
		RoleMethod:  {"m"},
		RolePath:    {"U"},
		RoleQuery:   {"q"},
		RoleStatus:  {"s"},
		RoleLatency: {"L", "M", "D", "T"},
		RoleUser:    {"u"},
	}
	werkzeugDefaults = defaults{
		RoleIP:      {flask.FieldAddr},
		RoleTime:    {flask.FieldTime},
		RoleRequest: {flask.FieldRequest},
		RoleStatus:  {flask.FieldStatus},
	}
	// appDefaults are the names tried in a Flask application's own lines:
	// regex groups, logging attributes, JSON keys, and key=value pairs in
	// the message.
	appDefaults = defaults{
		RoleIP:         {"ip", "remote_addr", "client_ip", "addr"},
		RoleTime:       {"asctime", "time", "timestamp", "created", "ts"},
		RoleMethod:     {"method"},
		RolePath:       {"path", "url"},
		RoleStatus:     {"status", "status_code"},
		RoleLatency:    {"duration", "latency", "elapsed"},
		RoleUser:       {"user", "username"},
		RoleIdentity:   {"identity", "client_id", "client", "username", "user"},
		RoleCredential: {"credential", "key_prefix", "api_key_prefix"},
		RoleOutcome:    {"outcome", "result"},
	}
	// gunicornUnits gives the unit of gunicorn's latency atoms that are not
	// seconds.
	gunicornUnits = map[string]time.Duration{"M": time.Millisecond, "D": time.Microsecond}
	// unitWords are the last words of latency field names that say their
	// unit (duration_ms, elapsedMicros, request_time_s).
	unitWords = map[string]time.Duration{
		"ms": time.Millisecond, "msec": time.Millisecond, "msecs": time.Millisecond, "millis": time.Millisecond, "milliseconds": time.Millisecond,
		"us": time.Microsecond, "usec": time.Microsecond, "usecs": time.Microsecond, "µs": time.Microsecond, "micros": time.Microsecond, "microseconds": time.Microsecond,
		"ns": time.Nanosecond, "nsec": time.Nanosecond, "nanos": time.Nanosecond, "nanoseconds": time.Nanosecond,
		"s": time.Second, "sec": time.Second, "secs": time.Second, "seconds": time.Second,
	}
	// messageFields hold free text whose key=value pairs fill roles the
	// line has no field for.
	messageFields = []string{"message", "event", "msg"}
)

// StatusRange is an inclusive range of HTTP statuses.
type StatusRange struct{ Lo, Hi int }

// Statuses says which statuses mean which outcome. A status in none of the
// lists is Other.
type Statuses struct {
	Failure, UnknownIdentity, Success, Throttled []StatusRange
}

// DefaultStatuses: 401/403 failure, 404 unknown identity, 2xx success, 429
// throttled.
func DefaultStatuses() Statuses {
	return Statuses{
		Failure:         []StatusRange{{401, 401}, {403, 403}},
		UnknownIdentity: []StatusRange{{404, 404}},
		Success:         []StatusRange{{200, 299}},
		Throttled:       []StatusRange{{429, 429}},
	}
}

// DefaultJoinWindow is how far apart in time a Flask application line and
// the werkzeug access line of the same request may be.
const DefaultJoinWindow = 2 * time.Second

// Options describe one log source.
type Options struct {
	Name   string
	Format string
	// Layout is the nginx log_format (string or pasted directive), or the
	// gunicorn access_log_format. Empty selects the predefined combined
	// format or gunicorn's default.
	Layout string
	// AppLogFormat (flask) is the Python logging format of the
	// application's own lines; empty selects Flask's default
	// "[%(asctime)s] %(levelname)s in %(module)s: %(message)s".
	AppLogFormat string
	// AppRegex (flask), when set, matches the application's lines instead
	// of AppLogFormat; its named groups are the fields.
	AppRegex string
	// JoinWindow (flask) bounds the time between an application line and
	// the access line of the same request. Default DefaultJoinWindow.
	JoinWindow time.Duration
	// Fields maps roles to field names, overriding the format's defaults.
	Fields map[Role]string
	// CredentialKind says what the credential field holds.
	CredentialKind CredentialKind
	// IdentityPaths are path templates such as /api/v1/clients/{identity}/.
	IdentityPaths []string
	// IdentityQuery is a query parameter holding the identity.
	IdentityQuery string
	// IdentityFromUser takes the identity from the user field ($remote_user).
	IdentityFromUser bool
	Statuses         Statuses
	// Routes, when set, keeps only requests whose path starts with one of
	// them. IgnoreRoutes drops health checks and the like.
	Routes       []string
	IgnoreRoutes []string
	// Location is the zone of timestamps that carry none. Default: Local.
	Location *time.Location
	// Secret keys credential fingerprints.
	Secret []byte
	// TrustedProxies are the proxies whose entries of a forwarded-for
	// list ("client, proxy1, proxy2") are skipped, from the right: the
	// first entry not in them is the client. nil trusts loopback and
	// private addresses (DefaultTrustedProxies); an empty, non-nil list
	// trusts none, so the rightmost entry is taken.
	TrustedProxies []netip.Prefix
	// LatencyUnit, when set, is the unit of every latency field. Zero
	// takes it from the field: gunicorn's M (ms) and D (µs), a name
	// ending in _ms, _us, _ns or _s (duration_ms), else seconds.
	LatencyUnit time.Duration
}

// DefaultTrustedProxies are the proxies trusted when Options.TrustedProxies
// is nil: loopback, RFC 1918 private and IPv6 unique local addresses.
var DefaultTrustedProxies = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("fc00::/7"),
}

// splitter is what a format package provides: the names of the fields it
// yields and a way to split a line into their raw values.
type splitter interface {
	Fields() []string
	Split(line []byte, vals [][]byte) error
}

// shapeKind tells a request's access line from an application's own line.
type shapeKind uint8

const (
	accessShape shapeKind = iota
	appShape
)

// shape is one kind of line a source holds, with its splitter and the
// field indexes of each role. Most formats have one shape; combined has
// combined and common; flask has werkzeug access lines and app lines.
type shape struct {
	kind  shapeKind
	json  bool // tried only on lines that start with '{'
	split splitter
	vals  [][]byte
	roles [numRoles][]int
	units []time.Duration // per roles[RoleLatency] entry
	// keyUnits are the units of keys[RoleLatency], read from messages.
	keyUnits []time.Duration
	// peer is the field of the address the server was connected from
	// ($remote_addr, %(h)s) when the address field is a forwarded-for
	// header, else -1.
	peer int
	// msgs are the message fields (message, event, msg) whose key=value
	// pairs are read for roles the line has no value for (keys[role]).
	msgs []int
	keys [numRoles][]string
}

// hasCred reports whether lines of the shape can hold a credential.
func (s *shape) hasCred() bool {
	return len(s.roles[RoleCredential]) > 0 || len(s.keys[RoleCredential]) > 0
}

// Parser turns lines of one source into events. It is not safe for
// concurrent use; make one per reader goroutine.
type Parser struct {
	name      string
	format    string
	shapes    []*shape
	loc       *time.Location
	templates []pathTemplate
	query     string
	fromUser  bool
	routes    []string
	ignore    []string
	outcome   [600]Outcome
	intern    *interner
	// keyIdentity: the last identity taken was a whole key (see keyLike).
	keyIdentity bool
	cred        *credentialLabeler
	hasCred     bool
	filled      [numRoles]bool
	scratch     []byte // identity with control characters replaced
	lastTime    lastTime
	// Flask: recent application lines, for joining their access lines.
	recent     [joinRing]appLine
	recentN    int
	joinWindow time.Duration
	traceback  bool
	trusted    []netip.Prefix
	unit       time.Duration // Options.LatencyUnit
}

// joinRing is how many recent application lines are kept for joining.
const joinRing = 64

type appLine struct {
	t        time.Time
	ip       netip.Addr
	identity string
	status   int
	used     bool
}

// NewParser compiles a source's options.
func NewParser(o Options) (*Parser, error) {
	p := &Parser{name: o.Name, format: o.Format, loc: o.Location, query: o.IdentityQuery, fromUser: o.IdentityFromUser,
		routes: o.Routes, ignore: o.IgnoreRoutes, intern: newInterner(1 << 16), joinWindow: o.JoinWindow,
		trusted: o.TrustedProxies, unit: o.LatencyUnit}
	if p.trusted == nil {
		p.trusted = DefaultTrustedProxies
	}
	if p.unit < 0 {
		return nil, fmt.Errorf("%w: latency unit %s", ErrBadUnit, p.unit)
	}
	if p.loc == nil {
		p.loc = time.Local
	}
	if p.joinWindow <= 0 {
		p.joinWindow = DefaultJoinWindow
	}
	explicit := map[Role]string{}
	for r, name := range o.Fields {
		if name == "" {
			continue
		}
		name = strings.TrimPrefix(name, "$")
		if o.Format == FormatGunicorn {
			name = gunicorn.Field(name)
		}
		explicit[r] = name
	}
	if err := p.addShapes(o, explicit); err != nil {
		return nil, err
	}
	if o.Format != FormatJSON && o.Format != FormatFlask {
		for r, n := range explicit {
			if len(p.shapes[0].roles[r]) == 0 {
				return nil, fmt.Errorf("%w: %s field %q is not in the layout (it has %s)", ErrUnknownField, r, n, strings.Join(p.shapes[0].split.Fields(), ", "))
			}
		}
	}
	for _, t := range o.IdentityPaths {
		pt, err := compileTemplate(t)
		if err != nil {
			return nil, err
		}
		p.templates = append(p.templates, pt)
	}
	if len(p.routes) == 0 {
		// The API's routes are where its identity templates live: requests
		// there whose line names no identity (a token endpoint taking the
		// client ID in its body) still count, per address and credential.
		for _, t := range p.templates {
			if r := t.apiRoot(); !slices.Contains(p.routes, r) {
				p.routes = append(p.routes, r)
			}
		}
	}
	for _, s := range p.shapes {
		if s.hasCred() {
			p.hasCred = true
		}
	}
	kind := o.CredentialKind
	if name := explicit[RoleCredential]; isHeaderField(name) {
		if kind == CredentialPrefix {
			return nil, fmt.Errorf("%w: %q", ErrPrefixHeader, name)
		}
		kind = CredentialKey // a logged request header is the whole key, however short
	} else if kind == CredentialAuto && namesWholeKey(name) {
		kind = CredentialKey // $api_key, token, password: the key itself, however short
	} else if kind == CredentialAuto && name == "" && o.Format == FormatJSON {
		kind = CredentialKey // the JSON defaults name whole keys only
	}
	p.cred = newCredentialLabeler(kind, o.Secret, p.intern)
	for _, set := range []struct {
		ranges []StatusRange
		o      Outcome
	}{{o.Statuses.Success, Success}, {o.Statuses.Failure, Failure}, {o.Statuses.UnknownIdentity, UnknownIdentity}, {o.Statuses.Throttled, Throttled}} {
		for _, r := range set.ranges {
			for s := max(r.Lo, 0); s <= r.Hi && s < len(p.outcome); s++ {
				p.outcome[s] = set.o
			}
		}
	}
	return p, nil
}

// addShapes compiles the kinds of line a format holds.
func (p *Parser) addShapes(o Options, explicit map[Role]string) error {
	switch o.Format {
	case FormatNginx:
		f, err := nginx.Compile(o.Layout)
		if err != nil {
			return err
		}
		return p.addShape(accessShape, f, nginxDefaults, explicit, false)
	case FormatCombined:
		if _, ok := explicit[RoleCredential]; ok {
			return fmt.Errorf("%w: the combined format carries no credential; use format nginx with a log_format that logs one", ErrUnknownField)
		}
		if o.Layout != "" && o.Layout != "combined" {
			return fmt.Errorf("%w: format combined takes no log_format; use format nginx for a custom one", ErrUnknownField)
		}
		combined, _ := nginx.Compile(nginx.Combined)
		common, _ := nginx.Compile(commonLayout)
		if err := p.addShape(accessShape, combined, nginxDefaults, explicit, false); err != nil {
			return err
		}
		return p.addShape(accessShape, common, nginxDefaults, explicit, false)
	case FormatGunicorn:
		f, err := gunicorn.Compile(o.Layout)
		if err != nil {
			return err
		}
		return p.addShape(accessShape, f, gunicornDefaults, explicit, false)
	case FormatJSON:
		def := jsonDefaults
		if o.CredentialKind == CredentialPrefix {
			def[RoleCredential] = nil // its defaults are whole keys, never prefixes
		}
		return p.addJSONShape(accessShape, def, explicit)
	case FormatFlask:
		// Tried in order: werkzeug access lines; the app regex when set;
		// the app's logging format (which also tells the app's other lines
		// as no event); JSON app lines.
		if err := p.addShape(accessShape, flask.Access{}, werkzeugDefaults, nil, false); err != nil {
			return err
		}
		if o.AppRegex != "" {
			re, err := flask.CompileRegex(o.AppRegex)
			if err != nil {
				return err
			}
			if err := p.addShape(appShape, re, appDefaults, explicit, true); err != nil {
				return err
			}
		}
		lf, err := flask.CompileLogging(o.AppLogFormat)
		if err != nil {
			return err
		}
		if err := p.addShape(appShape, lf, appDefaults, explicit, true); err != nil {
			return err
		}
		return p.addJSONShape(appShape, appDefaults, explicit)
	}
	return fmt.Errorf("%w: %q (want one of %s)", ErrUnknownFormat, o.Format, strings.Join(Formats, ", "))
}

// IsHeaderField reports whether a format's field (as written in the config)
// logs a request header as sent, which holds the whole key: nginx $http_*,
// gunicorn %({name}i)s, or a JSON path through a headers object such as
// headers.x-api-key.
func IsHeaderField(format, name string) bool {
	name = strings.TrimPrefix(name, "$")
	if format == FormatGunicorn {
		name = gunicorn.Field(name)
	}
	return isHeaderField(name)
}

// isHeaderField is IsHeaderField on a field name as NewParser keeps it.
func isHeaderField(name string) bool {
	if strings.HasPrefix(name, "http_") || (strings.HasPrefix(name, "{") && strings.HasSuffix(name, "}i")) {
		return true
	}
	// A JSON path: a headers object on the way (headers.x-api-key,
	// request.headers.Authorization, req_headers.x-api-key).
	segs := strings.Split(strings.ToLower(name), ".")
	for _, seg := range segs[:len(segs)-1] {
		if strings.HasSuffix(seg, "headers") || seg == "header" {
			return true
		}
	}
	return false
}

// namesWholeKey reports a credential field whose name says it holds the
// secret itself (api_key, access_token, Authorization, client_secret,
// password) rather than a prefix of it (api_key_prefix, key_prefix).
func namesWholeKey(name string) bool {
	name = strings.ToLower(name)
	if strings.Contains(name, "prefix") {
		return false
	}
	for _, w := range []string{"key", "token", "auth", "secret", "password"} {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// commonLayout is the common log format, combined without referer and user
// agent (Apache's "common", many embedded servers).
const commonLayout = `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent`

// candidates returns the names tried for role r: the configured one, else
// the defaults.
func candidates(r Role, def defaults, explicit map[Role]string) []string {
	if n, ok := explicit[r]; ok {
		return []string{n}
	}
	return def[r]
}

// addShape resolves the roles of a splitter's fields. app shapes read
// key=value pairs from their message field for roles the line lacks. A
// shape that can have no address, time or status (or outcome) is an error.
func (p *Parser) addShape(kind shapeKind, sp splitter, def defaults, explicit map[Role]string, app bool) error {
	s := &shape{kind: kind, split: sp, peer: -1}
	index := map[string]int{}
	for i, f := range sp.Fields() {
		index[f] = i
	}
	if name := explicit[RoleIP]; IsForwardedField(name) {
		for _, n := range def[RoleIP] {
			if i, ok := index[n]; ok && n != name && s.peer < 0 {
				s.peer = i
			}
		}
	}
	if app {
		for _, m := range messageFields {
			if i, ok := index[m]; ok {
				s.msgs = append(s.msgs, i)
			}
		}
	}
	for r := Role(0); r < numRoles; r++ {
		for _, n := range candidates(r, def, explicit) {
			if i, ok := index[n]; ok {
				s.roles[r] = append(s.roles[r], i)
				if r == RoleLatency {
					s.units = append(s.units, p.latencyUnit(n))
				}
			}
			// A field may be absent from a line (JSON) or empty: the
			// message's key=value pairs are read then.
			if len(s.msgs) > 0 && !strings.Contains(n, ".") && !slices.Contains(messageFields, n) {
				s.keys[r] = append(s.keys[r], n)
				if r == RoleLatency {
					s.keyUnits = append(s.keyUnits, p.latencyUnit(n))
				}
			}
		}
	}
	what := p.format
	switch sp.(type) {
	case *flask.Regex:
		what = "app_regex"
	case *flask.Logging:
		what = "app_log_format"
	case *nginx.Format, *gunicorn.Format:
		what = "log_format"
	}
	if err := s.check(explicit, what); err != nil {
		return err
	}
	s.vals = make([][]byte, len(sp.Fields()))
	p.shapes = append(p.shapes, s)
	return nil
}

// latencyUnit is the unit of a latency field: the source's LatencyUnit,
// else a gunicorn atom's, else the one the field's name ends in, else
// seconds.
func (p *Parser) latencyUnit(name string) time.Duration {
	if p.unit > 0 {
		return p.unit
	}
	if p.format == FormatGunicorn {
		if u, ok := gunicornUnits[name]; ok {
			return u
		}
		return time.Second
	}
	if u, ok := UnitFromName(name); ok {
		return u
	}
	return time.Second
}

// UnitFromName returns the unit a latency field's name ends in: the last
// word of its last dotted segment, words split at '_', '-' and a lower
// case letter followed by an upper case one (duration_ms, http.elapsedMs,
// latency-us, request_time_seconds).
func UnitFromName(name string) (time.Duration, bool) {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:]
	}
	start := 0
	for i := 1; i < len(name); i++ {
		c, prev := name[i], name[i-1]
		switch {
		case c == '_' || c == '-':
			start = i + 1
		case c >= 'A' && c <= 'Z' && prev >= 'a' && prev <= 'z':
			start = i
		}
	}
	if start == 0 {
		return 0, false // one word: latency, duration, elapsed
	}
	u, ok := unitWords[strings.ToLower(name[start:])]
	return u, ok
}

// addJSONShape adds a one-object-per-line JSON shape reading every
// candidate name, with the message fields for key=value pairs.
func (p *Parser) addJSONShape(kind shapeKind, def defaults, explicit map[Role]string) error {
	var paths []string
	for r := Role(0); r < numRoles; r++ {
		paths = append(paths, candidates(r, def, explicit)...)
	}
	paths = append(paths, messageFields...)
	if err := p.addShape(kind, jsonlog.New(paths), def, explicit, true); err != nil {
		return err
	}
	p.shapes[len(p.shapes)-1].json = true
	return nil
}

// check reports a shape that can never yield an event.
func (s *shape) check(explicit map[Role]string, what string) error {
	for _, r := range []Role{RoleIP, RoleTime, RoleStatus} {
		if len(s.roles[r]) > 0 || len(s.keys[r]) > 0 {
			continue
		}
		if r == RoleStatus && (len(s.roles[RoleOutcome]) > 0 || len(s.keys[RoleOutcome]) > 0) {
			continue
		}
		need := map[Role]string{RoleIP: "client address", RoleTime: "time", RoleStatus: "status (or outcome)"}[r]
		tried := candidates(r, defaults{}, explicit)
		return fmt.Errorf("%w: %s has no %s field (it has %s; tried %s)", ErrUnknownField, what, need,
			strings.Join(s.split.Fields(), ", "), strings.Join(append(tried, s.roleDefaults(r)...), ", "))
	}
	return nil
}

func (s *shape) roleDefaults(r Role) []string {
	switch s.split.(type) {
	case *nginx.Format:
		return nginxDefaults[r]
	case *gunicorn.Format:
		return gunicornDefaults[r]
	}
	return appDefaults[r]
}

// Errors from NewParser.
var (
	ErrUnknownFormat = errors.New("unknown format")
	ErrUnknownField  = errors.New("unknown field")
	ErrBadTemplate   = errors.New("bad identity path template")
	// ErrPrefixHeader: kind prefix on a field that logs a request header,
	// which holds whole keys.
	ErrPrefixHeader = errors.New("credential kind prefix on a request header, which holds whole keys")
	ErrBadUnit      = errors.New("bad latency unit")
)

// HasCredential reports whether the source logs a credential at all. Without
// one, spray detection still works on identities per address but cannot tell
// a spray from stuffing.
func (p *Parser) HasCredential() bool { return p.hasCred }

// Name returns the source name.
func (p *Parser) Name() string { return p.name }

// Filled reports, per role name, whether any line parsed so far had a value
// for it. Roles the source cannot have (no field, no default) are left out.
func (p *Parser) Filled() map[string]bool {
	out := map[string]bool{}
	for r := Role(0); r < numRoles; r++ {
		for _, s := range p.shapes {
			if len(s.roles[r]) > 0 || len(s.keys[r]) > 0 || (r == RoleIdentity && (len(p.templates) > 0 || p.query != "" || p.fromUser)) {
				out[r.String()] = p.filled[r]
			}
		}
	}
	return out
}

// field returns the first non-empty value among a role's candidate fields,
// then among the key=value pairs of the shape's message.
func (s *shape) field(r Role) []byte {
	for _, i := range s.roles[r] {
		if v := s.vals[i]; len(v) > 0 && !(len(v) == 1 && v[0] == '-') {
			return v
		}
	}
	if len(s.keys[r]) > 0 {
		if m := s.message(); m != nil {
			for _, k := range s.keys[r] {
				if v := logfmtValue(m, k); len(v) > 0 && !(len(v) == 1 && v[0] == '-') {
					return v
				}
			}
		}
	}
	return nil
}

// message returns the line's first message field, or nil.
func (s *shape) message() []byte {
	for _, i := range s.msgs {
		if v := s.vals[i]; v != nil {
			return v
		}
	}
	return nil
}

// latency reads the first latency field with its unit.
func (s *shape) latency() (time.Duration, bool) {
	for j, i := range s.roles[RoleLatency] {
		if v := s.vals[i]; len(v) > 0 && !(len(v) == 1 && v[0] == '-') {
			return durationIn(v, s.units[j])
		}
	}
	if len(s.keys[RoleLatency]) > 0 {
		if m := s.message(); m != nil {
			for j, k := range s.keys[RoleLatency] {
				if v := logfmtValue(m, k); len(v) > 0 && !(len(v) == 1 && v[0] == '-') {
					return durationIn(v, s.keyUnits[j])
				}
			}
		}
	}
	return 0, false
}

// logfmtValue returns the value of key=value (or key="value") in msg.
func logfmtValue(msg []byte, key string) []byte {
	for off := 0; off < len(msg); {
		i := bytes.Index(msg[off:], []byte(key))
		if i < 0 {
			return nil
		}
		at := off + i
		off = at + len(key)
		if off >= len(msg) || msg[off] != '=' || (at > 0 && msg[at-1] != ' ' && msg[at-1] != ',' && msg[at-1] != '(' && msg[at-1] != '\t') {
			continue
		}
		v := msg[off+1:]
		if len(v) > 0 && v[0] == '"' {
			if end := bytes.IndexByte(v[1:], '"'); end >= 0 {
				return v[1 : end+1]
			}
			return nil
		}
		if end := bytes.IndexAny(v, " \t"); end >= 0 {
			v = v[:end]
		}
		return bytes.TrimRight(v, ",;)")
	}
	return nil
}

// outcomeWords maps an application's verdict words to outcomes.
var outcomeWords = map[string]Outcome{
	"failure": Failure, "fail": Failure, "failed": Failure, "denied": Failure, "invalid": Failure, "unauthorized": Failure, "forbidden": Failure, "wrong_key": Failure,
	"success": Success, "ok": Success, "succeeded": Success, "authenticated": Success, "allowed": Success, "granted": Success,
	"unknown_identity": UnknownIdentity, "unknown": UnknownIdentity, "unknown_client": UnknownIdentity, "not_found": UnknownIdentity, "no_such_user": UnknownIdentity,
	"throttled": Throttled, "rate_limited": Throttled, "ratelimited": Throttled,
	"missing_credential": MissingCredential, "missing": MissingCredential, "no_key": MissingCredential,
	"other": Other,
}

func parseOutcomeWord(b []byte) (Outcome, bool) {
	if len(b) > 32 {
		return Other, false
	}
	var buf [32]byte
	n := copy(buf[:], b)
	for i := 0; i < n; i++ {
		if c := buf[i]; c >= 'A' && c <= 'Z' {
			buf[i] = c + 'a' - 'A'
		} else if c == '-' || c == ' ' {
			buf[i] = '_'
		}
	}
	o, ok := outcomeWords[string(buf[:n])]
	return o, ok
}

var (
	ansiEscape = byte(0x1b)
	jsonStart  = byte('{')
)

// Parse fills ev from line. On error ev is unspecified. line may be modified.
func (p *Parser) Parse(line []byte, ev *Event) error {
	line = bytes.TrimRight(line, "\r")
	if len(bytes.TrimSpace(line)) == 0 {
		return ErrEmpty
	}
	if p.format == FormatFlask {
		if bytes.IndexByte(line, ansiEscape) >= 0 {
			line = flask.StripANSI(line)
		}
		// A traceback ends with the first unindented line after it: the
		// exception.
		wasTraceback := p.traceback
		p.traceback = flask.StartsTraceback(line) || (p.traceback && flask.IsIndented(line))
		if flask.IsNoise(line) || wasTraceback && !p.traceback {
			return ErrNoise
		}
	}
	var s *shape
	var first error
	for _, c := range p.shapes {
		if c.json && len(p.shapes) > 1 && firstNonSpace(line) != jsonStart {
			continue
		}
		err := c.split.Split(line, c.vals)
		if err == nil {
			s = c
			break
		}
		if first == nil || c.json {
			first = err
		}
	}
	if s == nil {
		switch {
		case errors.Is(first, jsonlog.ErrNotObject):
			return ErrNotObject
		case errors.Is(first, jsonlog.ErrSyntax):
			return ErrBadJSON
		}
		return ErrNoMatch
	}
	if (s.kind == appShape || s.message() != nil) &&
		s.field(RoleStatus) == nil && s.field(RoleOutcome) == nil && s.field(RoleIdentity) == nil && s.field(RoleCredential) == nil {
		return ErrNoise // an application's line (it has a message) about something other than authentication
	}
	*ev = Event{Source: p.name}
	var err error
	if ev.Time, err = p.parseTime(s.field(RoleTime)); err != nil {
		return ErrBadTime
	}
	if ev.IP, err = p.address(s); err != nil {
		return ErrBadIP
	}
	verdict, hasVerdict := Other, false
	if v := s.field(RoleOutcome); v != nil {
		verdict, hasVerdict = parseOutcomeWord(v)
	}
	statusField := s.field(RoleStatus)
	status, ok := num(statusField)
	if ok && (len(statusField) > 3 || status < 100 || status > 599) || !ok && !hasVerdict {
		return ErrBadStatus
	}
	ev.Status = status
	method, path, query := s.field(RoleMethod), s.field(RolePath), s.field(RoleQuery)
	if req := s.field(RoleRequest); req != nil && (method == nil || path == nil) {
		m, pth, ok := splitRequest(req)
		if !ok && path == nil {
			return ErrNotRequest
		}
		if method == nil {
			method = m
		}
		if path == nil {
			path = pth
		}
	}
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		if query == nil {
			query = path[i+1:]
		}
		path = path[:i]
	}
	ev.Method = p.method(method)
	var captured []byte
	if s.kind == appShape && path == nil {
		// An application line names no path. With one identity path
		// template it is about that route, so that its failures compare
		// with the access lines of requests it did not log (the
		// enumeration oracle); otherwise its route is empty.
		ev.Route = ""
		if len(p.templates) == 1 {
			ev.Route = p.templates[0].raw
		}
	} else if ev.Route, captured, err = p.route(path); err != nil {
		return err
	}
	ev.Identity, err = p.identity(s, path, query, captured)
	if err != nil {
		return err
	}
	keyIdentity := p.keyIdentity
	if hasVerdict {
		ev.Outcome = verdict
	} else {
		ev.Outcome = p.outcome[status]
	}
	// Only a shape with a credential field can tell that a key was
	// missing: a werkzeug access line in a Flask source never holds one.
	if s.hasCred() {
		label, whole, missing := p.cred.label(s.field(RoleCredential))
		ev.Credential, ev.RawCredential = label, whole
		ev.SchemeOnly = label != "" && IsSchemePrefix(label)
		if missing && (ev.Outcome == Failure || ev.Outcome == Throttled) && !hasVerdict {
			// No key, refused: a probe or a client not set up yet, not
			// a guess. An unknown identity stays one: asked without a
			// key it still tells whether the identity exists.
			ev.Outcome = MissingCredential
		}
		if label != "" {
			p.filled[RoleCredential] = true
		}
	}
	if keyIdentity {
		ev.RawCredential = true // the log holds a whole key, in its path
	}
	if d, ok := s.latency(); ok {
		ev.Latency, ev.HasLatency = d, true
		p.filled[RoleLatency] = true
	}
	p.markFilled(s, ev, method, path, query)
	if p.format == FormatFlask {
		return p.join(s, ev)
	}
	return nil
}

// lastTime is the last timestamp Parse read and its time. A busy log
// writes many lines a second, and they repeat the bytes of the line before.
type lastTime struct {
	raw []byte
	t   time.Time
}

// maxCachedTime bounds the timestamp lastTime keeps: longer ones are no
// timestamp ParseTime reads.
const maxCachedTime = 64

// parseTime is ParseTime in the parser's zone, reusing the time of the
// previous line when its timestamp is the same.
func (p *Parser) parseTime(b []byte) (time.Time, error) {
	if len(b) > 0 && bytes.Equal(b, p.lastTime.raw) {
		return p.lastTime.t, nil
	}
	t, err := ParseTime(b, p.loc)
	if err == nil && len(b) <= maxCachedTime {
		p.lastTime.raw = append(p.lastTime.raw[:0], b...)
		p.lastTime.t = t
	}
	return t, err
}

func firstNonSpace(b []byte) byte {
	for _, c := range b {
		if c != ' ' && c != '\t' {
			return c
		}
	}
	return 0
}

// markFilled remembers which roles lines have filled, for the parse
// summary's "fields never filled".
func (p *Parser) markFilled(s *shape, ev *Event, method, path, query []byte) {
	p.filled[RoleIP], p.filled[RoleTime] = true, true
	if ev.Status != 0 {
		p.filled[RoleStatus] = true
	}
	if method != nil {
		p.filled[RoleMethod] = true
	}
	if path != nil {
		p.filled[RolePath] = true
	}
	if !p.filled[RoleRequest] && s.field(RoleRequest) != nil {
		p.filled[RoleRequest] = true
	}
	if query != nil {
		p.filled[RoleQuery] = true
	}
	if ev.Identity != "" {
		p.filled[RoleIdentity] = true
	}
	if !p.filled[RoleUser] && s.field(RoleUser) != nil {
		p.filled[RoleUser] = true
	}
	if !p.filled[RoleOutcome] && s.field(RoleOutcome) != nil {
		p.filled[RoleOutcome] = true
	}
}

// join makes one request count once in a Flask log that holds both the
// application's line and werkzeug's access line for it. The application
// line, written while the request is handled, comes first and wins: it
// carries the identity and credential. The access line that follows within
// the join window, from the same address, with the same status and (when
// both name one) the same identity, is dropped as ErrJoined. Access lines
// of requests the application did not log (successes, health checks) stay
// events of their own.
func (p *Parser) join(s *shape, ev *Event) error {
	if s.kind == appShape {
		p.recent[p.recentN%joinRing] = appLine{t: ev.Time, ip: ev.IP, identity: ev.Identity, status: ev.Status}
		p.recentN++
		return nil
	}
	for k := 1; k <= min(p.recentN, joinRing); k++ {
		a := &p.recent[(p.recentN-k)%joinRing]
		if a.used || a.ip != ev.IP || (a.status != 0 && a.status != ev.Status) ||
			(a.identity != "" && ev.Identity != "" && a.identity != ev.Identity) {
			continue
		}
		if d := ev.Time.Sub(a.t); d < -p.joinWindow || d > p.joinWindow {
			continue
		}
		a.used = true
		return ErrJoined
	}
	return nil
}

// route applies the route filters and names the route for grouping.
// It also returns the identity the matching path template captured, so
// that the path is matched once.
func (p *Parser) route(path []byte) (string, []byte, error) {
	for _, r := range p.ignore {
		if bytes.HasPrefix(path, []byte(r)) {
			return "", nil, ErrNotAuthRoute
		}
	}
	for _, t := range p.templates {
		if id, ok := t.match(path); ok {
			return t.raw, id, nil
		}
	}
	if len(p.routes) == 0 {
		if len(p.templates) > 0 {
			return "", nil, ErrNotAuthRoute // templates name the routes that matter
		}
		return "", nil, nil
	}
	for _, r := range p.routes {
		if bytes.HasPrefix(path, []byte(r)) {
			return r, nil, nil
		}
	}
	return "", nil, ErrNotAuthRoute
}

// identity picks the identity: the identity field, else what the route's
// template captured (captured), else another template, the query
// parameter, or the user field.
func (p *Parser) identity(s *shape, path, query, captured []byte) (string, error) {
	p.keyIdentity = false
	id := s.field(RoleIdentity)
	if id == nil {
		id = captured
	}
	for i := 0; id == nil && i < len(p.templates); i++ {
		if v, ok := p.templates[i].match(path); ok {
			id = v
		}
	}
	if id == nil && p.query != "" {
		id = queryParam(query, p.query)
	}
	if id == nil && p.fromUser {
		id = s.field(RoleUser)
	}
	if len(id) == 0 {
		return "", nil
	}
	if bytes.IndexByte(id, '%') >= 0 {
		if s, err := url.PathUnescape(string(id)); err == nil {
			id = []byte(s)
		}
	}
	if len(id) > 256 {
		id = id[:256]
	}
	// Invalid UTF-8 and control characters (NUL, escapes, C1) are replaced
	// by U+FFFD rather than the line skipped: a client must not be able to
	// hide its attempts behind a NUL, and an identity shown in alerts,
	// terminals and Slack must not carry control bytes.
	if !isCleanText(id) {
		p.scratch = appendCleanText(p.scratch[:0], id)
		id = p.scratch
	}
	if p.keyIdentity = keyLike(id); p.keyIdentity {
		// A whole key where the identity goes: kept, like a whole key
		// in the credential field, as its fingerprint label only.
		return p.intern.bytes(p.cred.fingerprintLabel(id)), nil
	}
	return p.intern.bytes(id), nil
}

// method returns the request method as a string: a constant for the
// common ones, which needs neither a hash nor a lookup.
func (p *Parser) method(b []byte) string {
	switch string(b) {
	case "GET":
		return "GET"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "PATCH":
		return "PATCH"
	case "HEAD":
		return "HEAD"
	case "OPTIONS":
		return "OPTIONS"
	}
	return p.intern.bytes(b)
}

// splitRequest splits "GET /path HTTP/1.1".
func splitRequest(req []byte) (method, path []byte, ok bool) {
	sp := bytes.IndexByte(req, ' ')
	if sp <= 0 {
		return nil, nil, false
	}
	method, rest := req[:sp], req[sp+1:]
	if sp2 := bytes.LastIndexByte(rest, ' '); sp2 >= 0 && bytes.HasPrefix(rest[sp2+1:], []byte("HTTP/")) {
		rest = rest[:sp2]
	}
	if len(rest) == 0 || (rest[0] != '/' && !bytes.Contains(rest, []byte("://"))) {
		return method, nil, false
	}
	return method, rest, true
}

func queryParam(q []byte, name string) []byte {
	for len(q) > 0 {
		var kv []byte
		if i := bytes.IndexByte(q, '&'); i >= 0 {
			kv, q = q[:i], q[i+1:]
		} else {
			kv, q = q, nil
		}
		if len(kv) > len(name) && kv[len(name)] == '=' && string(kv[:len(name)]) == name {
			return kv[len(name)+1:]
		}
	}
	return nil
}

// IsForwardedField reports whether a field (as NewParser keeps it) logs a
// forwarded-for header, which the client writes: X-Forwarded-For as
// $http_x_forwarded_for, $proxy_add_x_forwarded_for, %({x-forwarded-for}i)s,
// or a JSON key or path naming it.
func IsForwardedField(name string) bool {
	n := strings.ToLower(name)
	return strings.Contains(n, "forwarded") || strings.Contains(n, "xff")
}

// address reads the client's address of a line. With a forwarded-for
// field and the address the server was connected from (the peer) both
// logged, the peer is the end of the list: a peer that is no trusted
// proxy is the client (the header is the client's own, however it reads),
// as nginx's realip module takes it; a line without the header is the
// peer's.
func (p *Parser) address(s *shape) (netip.Addr, error) {
	fwd := s.field(RoleIP)
	if s.peer < 0 {
		return p.clientAddr(fwd)
	}
	v := s.vals[s.peer]
	peer, err := parseAddr(v)
	switch {
	case err != nil:
		return p.clientAddr(fwd) // a unix socket: no peer address
	case fwd == nil || !p.isTrusted(peer):
		return peer, nil
	}
	if a, err := p.clientAddr(fwd); err == nil {
		return a, nil
	}
	return peer, nil
}

// clientAddr reads the client's address: one address, or a forwarded-for
// list "client, proxy1, proxy2" as nginx's realip module (with
// real_ip_recursive on) and werkzeug's ProxyFix read it. Each proxy appends
// the address it was connected from, so only the entries on the right are
// written by proxies: the list is walked from the right, skipping trusted
// proxies, and the first entry that is not one is the client. The entries
// left of it are whatever the client sent, and never taken. When every
// entry is a trusted proxy, the leftmost is the client. An entry that is
// no address (unknown, garbage) ends the walk: the proxy right of it is
// the best that is known.
func (p *Parser) clientAddr(b []byte) (netip.Addr, error) {
	if a, ok := parseIPv4(b); ok {
		return a, nil
	}
	if bytes.IndexByte(b, ',') < 0 && bytes.IndexByte(b, ' ') < 0 {
		return parseAddr(b)
	}
	var last netip.Addr // the leftmost trusted proxy so far
	for end := len(b); end > 0; {
		i := end - 1
		for i >= 0 && !isListSep(b[i]) {
			i--
		}
		entry := b[i+1 : end]
		for end = i; end > 0 && isListSep(b[end-1]); end-- {
		}
		if len(entry) == 0 {
			continue
		}
		a, err := parseAddr(entry)
		if err != nil {
			if last.IsValid() {
				return last, nil
			}
			return a, err
		}
		if !p.isTrusted(a) {
			return a, nil
		}
		last = a
	}
	if !last.IsValid() {
		return last, ErrBadIP
	}
	return last, nil
}

func isListSep(c byte) bool { return c == ',' || c == ' ' || c == '\t' }

// isTrusted reports whether a is one of the source's trusted proxies.
func (p *Parser) isTrusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, t := range p.trusted {
		if t.Contains(a) {
			return true
		}
	}
	return false
}

// parseAddr reads one address, also as written with a port
// ("203.0.113.5:4711", "[2001:db8::1]:443") or in brackets.
func parseAddr(b []byte) (netip.Addr, error) {
	if a, ok := parseIPv4(b); ok {
		return a, nil
	}
	a, err := netip.ParseAddr(string(b))
	if err == nil || bytes.IndexByte(b, ':') < 0 && bytes.IndexByte(b, ']') < 0 {
		return a, err
	}
	if ap, perr := netip.ParseAddrPort(string(b)); perr == nil {
		return ap.Addr(), nil
	}
	if len(b) > 2 && b[0] == '[' && b[len(b)-1] == ']' {
		return netip.ParseAddr(string(b[1 : len(b)-1]))
	}
	return a, err
}

// parseIPv4 reads b as one dotted IPv4 address.
func parseIPv4(b []byte) (netip.Addr, bool) {
	var ip [4]byte
	part, n, digits := 0, 0, 0
	for _, c := range b {
		if d := c - '0'; d <= 9 {
			n = n*10 + int(d)
			digits++
			if n > 255 || digits > 3 {
				return netip.Addr{}, false
			}
			continue
		}
		if c == '.' && digits > 0 && part < 3 {
			ip[part] = byte(n)
			part++
			n, digits = 0, 0
			continue
		}
		return netip.Addr{}, false
	}
	if part != 3 || digits == 0 {
		return netip.Addr{}, false
	}
	ip[3] = byte(n)
	return netip.AddrFrom4(ip), true
}

// maxSeconds is the most whole seconds a time.Duration holds.
const maxSeconds = int(math.MaxInt64 / int64(time.Second))

// firstOfList cuts b before its first ',' or ' ': the first upstream's
// time of "0.1, 0.2". The values are short, so a loop beats
// bytes.IndexAny, which builds a set on every call.
func firstOfList(b []byte) []byte {
	for i, c := range b {
		if c == ',' || c == ' ' {
			return b[:i]
		}
	}
	return b
}

// seconds reads "0.123" as a duration in seconds.
func seconds(b []byte) (time.Duration, bool) { return durationIn(b, time.Second) }

// durationIn reads "12.5" as a number of units: whole units (1 to
// maxNumDigits digits, within a time.Duration), then optionally a '.' and
// a fraction, in one pass. A fraction finer than a nanosecond is dropped.
func durationIn(b []byte, unit time.Duration) (time.Duration, bool) {
	b = firstOfList(b) // upstream lists "0.1, 0.2"
	w, i := 0, 0
	for ; i < len(b) && b[i] != '.'; i++ {
		c := b[i] - '0'
		if c > 9 || i == maxNumDigits {
			return 0, false
		}
		w = w*10 + int(c)
	}
	if i == 0 || int64(w) > math.MaxInt64/int64(unit) {
		return 0, false
	}
	d := time.Duration(w) * unit
	if i < len(b) {
		scale := unit / 10
		for _, c := range b[i+1:] {
			if c < '0' || c > '9' {
				return 0, false
			}
			d += time.Duration(c-'0') * scale
			scale /= 10
		}
	}
	return d, true
}

// pathTemplate matches request paths against "/api/v1/clients/{identity}/".
// Segments are literals, {identity} (captured), or * and other {names}
// (anything). A template ending in "/" matches deeper paths too.
type pathTemplate struct {
	raw      string
	segs     []string
	capture  int
	trailing bool
	// prefix is the template's leading literal segments ("/api/v1/clients"
	// of /api/v1/clients/{identity}/), compared at once; fixed is their
	// number.
	prefix string
	fixed  int
}

// isLiteralSegment reports whether a template segment matches only itself.
func isLiteralSegment(seg string) bool {
	return seg != "*" && !(len(seg) > 1 && seg[0] == '{')
}

func compileTemplate(t string) (pathTemplate, error) {
	pt := pathTemplate{raw: t, capture: -1, trailing: strings.HasSuffix(t, "/")}
	if !strings.HasPrefix(t, "/") {
		return pt, fmt.Errorf("%w: %q must start with /", ErrBadTemplate, t)
	}
	for i, s := range strings.Split(strings.Trim(t, "/"), "/") {
		if s == "{identity}" {
			if pt.capture >= 0 {
				return pt, fmt.Errorf("%w: %q has {identity} twice", ErrBadTemplate, t)
			}
			pt.capture = i
		}
		pt.segs = append(pt.segs, s)
	}
	for pt.fixed < len(pt.segs) && pt.fixed != pt.capture && isLiteralSegment(pt.segs[pt.fixed]) {
		pt.prefix += "/" + pt.segs[pt.fixed]
		pt.fixed++
	}
	return pt, nil
}

// apiRoot is the route prefix of the API a template belongs to: its fixed
// segments before {identity} without the last one, the collection's name
// (/api/v1/clients/{identity}/ gives /api/v1/); with a single fixed
// segment, that segment (/clients/{identity} gives /clients/).
func (t *pathTemplate) apiRoot() string {
	fixed := t.segs
	if t.capture >= 0 {
		fixed = t.segs[:t.capture]
	}
	for i, s := range fixed {
		if strings.Contains(s, "{") {
			fixed = fixed[:i]
			break
		}
	}
	if len(fixed) >= 2 {
		fixed = fixed[:len(fixed)-1]
	}
	if len(fixed) == 0 {
		return "/"
	}
	return "/" + strings.Join(fixed, "/") + "/"
}

func (t *pathTemplate) match(path []byte) ([]byte, bool) {
	var id []byte
	rest := path
	if t.fixed > 0 {
		// The literal segments at once: the prefix, ending where a
		// segment ends.
		if !bytes.HasPrefix(rest, []byte(t.prefix)) || len(rest) > len(t.prefix) && rest[len(t.prefix)] != '/' {
			return nil, false
		}
		rest = rest[len(t.prefix):]
	}
	for i := t.fixed; i < len(t.segs); i++ {
		seg := t.segs[i]
		if len(rest) == 0 || rest[0] != '/' {
			return nil, false
		}
		rest = rest[1:]
		end := bytes.IndexByte(rest, '/')
		if end < 0 {
			end = len(rest)
		}
		got := rest[:end]
		rest = rest[end:]
		switch {
		case i == t.capture:
			if len(got) == 0 {
				return nil, false
			}
			id = got
		case !isLiteralSegment(seg):
		case string(got) != seg:
			return nil, false
		}
	}
	if len(rest) > 1 && !t.trailing {
		return nil, false
	}
	if t.capture < 0 {
		return nil, true
	}
	return id, true
}
