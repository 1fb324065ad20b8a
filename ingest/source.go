package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spraywatch/spraywatch/ingest/jsonlog"
	"github.com/spraywatch/spraywatch/ingest/nginx"
)

// Formats a source can have.
const (
	FormatNginx = "nginx"
	FormatJSON  = "json"
)

// Role names the fields spraywatch reads from a line. Options.Fields maps a
// role to the name of a field in the source's format (an nginx variable
// without '$', a dotted JSON path).
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
	numRoles
)

var roleNames = [numRoles]string{"ip", "time", "request", "method", "path", "query", "status", "latency", "user", "identity", "credential"}

func (r Role) String() string { return roleNames[r] }

// RoleByName returns the role with the given config name.
func RoleByName(name string) (Role, bool) {
	for i, n := range roleNames {
		if n == name {
			return Role(i), true
		}
	}
	return 0, false
}

// defaultFields lists, per format and role, the field names tried in order
// when the config does not name one.
var defaultFields = map[string][numRoles][]string{
	FormatNginx: {
		RoleIP:      {"remote_addr"},
		RoleTime:    {"time_local", "time_iso8601", "msec"},
		RoleRequest: {"request"},
		RoleMethod:  {"request_method"},
		RolePath:    {"request_uri", "uri"},
		RoleQuery:   {"args", "query_string"},
		RoleStatus:  {"status"},
		RoleLatency: {"request_time", "upstream_response_time"},
		RoleUser:    {"remote_user"},
	},
	FormatJSON: {
		RoleIP:       {"remote_addr", "ip", "client_ip", "remote_ip", "clientip", "src_ip"},
		RoleTime:     {"time", "timestamp", "ts", "@timestamp", "asctime", "time_iso8601", "time_local", "msec"},
		RoleRequest:  {"request"},
		RoleMethod:   {"method", "request_method"},
		RolePath:     {"path", "request_uri", "uri", "url"},
		RoleQuery:    {"query", "args", "query_string"},
		RoleStatus:   {"status", "status_code", "response_status"},
		RoleLatency:  {"request_time", "duration", "latency", "elapsed"},
		RoleUser:     {"remote_user", "user"},
		RoleIdentity: {"client_id", "identity"},
	},
}

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

// Options describe one log source.
type Options struct {
	Name   string
	Format string
	// Layout is the nginx log_format (string or pasted directive).
	Layout string
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
}

// splitter is what a format package provides: the names of the fields it
// yields and a way to split a line into their raw values.
type splitter interface {
	Fields() []string
	Split(line []byte, vals [][]byte) error
}

// Parser turns lines of one source into events. It is not safe for
// concurrent use; make one per reader goroutine.
type Parser struct {
	name      string
	split     splitter
	vals      [][]byte
	roles     [numRoles][]int
	loc       *time.Location
	templates []pathTemplate
	query     string
	fromUser  bool
	routes    []string
	ignore    []string
	outcome   [600]Outcome
	intern    *interner
	cred      *credentialLabeler
	hasCred   bool
}

// NewParser compiles a source's options.
func NewParser(o Options) (*Parser, error) {
	p := &Parser{name: o.Name, loc: o.Location, query: o.IdentityQuery, fromUser: o.IdentityFromUser,
		routes: o.Routes, ignore: o.IgnoreRoutes, intern: newInterner(1 << 16)}
	if p.loc == nil {
		p.loc = time.Local
	}
	defaults, ok := defaultFields[o.Format]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownFormat, o.Format)
	}
	var candidates [numRoles][]string
	for r := Role(0); r < numRoles; r++ {
		if name, ok := o.Fields[r]; ok && name != "" {
			candidates[r] = []string{strings.TrimPrefix(name, "$")}
		} else {
			candidates[r] = defaults[r]
		}
	}
	switch o.Format {
	case FormatNginx:
		f, err := nginx.Compile(o.Layout)
		if err != nil {
			return nil, err
		}
		p.split = f
	case FormatJSON:
		var paths []string
		for _, c := range candidates {
			paths = append(paths, c...)
		}
		p.split = jsonlog.New(paths)
	}
	index := map[string]int{}
	for i, f := range p.split.Fields() {
		index[f] = i
	}
	for r, names := range candidates {
		for _, n := range names {
			if i, ok := index[n]; ok {
				p.roles[r] = append(p.roles[r], i)
			} else if _, explicit := o.Fields[Role(r)]; explicit {
				return nil, fmt.Errorf("%w: %s field %q is not in the layout (it has %s)", ErrUnknownField, Role(r), n, strings.Join(p.split.Fields(), ", "))
			}
		}
	}
	if len(p.roles[RoleIP]) == 0 {
		return nil, fmt.Errorf("%w: no client address field (tried %s)", ErrUnknownField, strings.Join(candidates[RoleIP], ", "))
	}
	if len(p.roles[RoleTime]) == 0 {
		return nil, fmt.Errorf("%w: no time field (tried %s)", ErrUnknownField, strings.Join(candidates[RoleTime], ", "))
	}
	if len(p.roles[RoleStatus]) == 0 {
		return nil, fmt.Errorf("%w: no status field (tried %s)", ErrUnknownField, strings.Join(candidates[RoleStatus], ", "))
	}
	for _, t := range o.IdentityPaths {
		pt, err := compileTemplate(t)
		if err != nil {
			return nil, err
		}
		p.templates = append(p.templates, pt)
	}
	p.hasCred = len(p.roles[RoleCredential]) > 0
	p.cred = newCredentialLabeler(o.CredentialKind, o.Secret, p.intern)
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

// Errors from NewParser.
var (
	ErrUnknownFormat = errors.New("unknown format")
	ErrUnknownField  = errors.New("unknown field")
	ErrBadTemplate   = errors.New("bad identity path template")
)

// HasCredential reports whether the source logs a credential at all. Without
// one, spray detection still works on identities per address but cannot tell
// a spray from stuffing.
func (p *Parser) HasCredential() bool { return p.hasCred }

// Name returns the source name.
func (p *Parser) Name() string { return p.name }

// Fields returns the names of the fields the layout yields.
func (p *Parser) Fields() []string { return p.split.Fields() }

// field returns the first non-empty value among a role's candidate fields.
func (p *Parser) field(r Role) []byte {
	for _, i := range p.roles[r] {
		if v := p.vals[i]; len(v) > 0 && !(len(v) == 1 && v[0] == '-') {
			return v
		}
	}
	return nil
}

// Parse fills ev from line. On error ev is unspecified. line may be modified.
func (p *Parser) Parse(line []byte, ev *Event) error {
	line = bytes.TrimRight(line, "\r")
	if len(bytes.TrimSpace(line)) == 0 {
		return ErrEmpty
	}
	if p.vals == nil {
		p.vals = make([][]byte, len(p.split.Fields()))
	}
	if err := p.split.Split(line, p.vals); err != nil {
		if errors.Is(err, jsonlog.ErrNotObject) {
			return ErrNotObject
		}
		if errors.Is(err, jsonlog.ErrSyntax) {
			return ErrBadJSON
		}
		return ErrNoMatch
	}
	*ev = Event{Source: p.name}
	var err error
	if ev.Time, err = ParseTime(p.field(RoleTime), p.loc); err != nil {
		return ErrBadTime
	}
	if ev.IP, err = parseIP(p.field(RoleIP)); err != nil {
		return ErrBadIP
	}
	status, ok := num(p.field(RoleStatus))
	if !ok || status < 100 || status > 599 {
		return ErrBadStatus
	}
	ev.Status = status
	method, path, query := p.field(RoleMethod), p.field(RolePath), p.field(RoleQuery)
	if req := p.field(RoleRequest); req != nil && (method == nil || path == nil) {
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
	ev.Method = p.intern.bytes(method)
	ev.Route, err = p.route(path)
	if err != nil {
		return err
	}
	ev.Identity, err = p.identity(path, query, ev)
	if err != nil {
		return err
	}
	ev.Outcome = p.outcome[status]
	if p.hasCred {
		label, whole, missing := p.cred.label(p.field(RoleCredential))
		ev.Credential, ev.RawCredential = label, whole
		if missing && ev.Outcome.Attempt() {
			ev.Outcome = MissingCredential
		}
	}
	if lat := p.field(RoleLatency); lat != nil {
		if d, ok := seconds(lat); ok {
			ev.Latency, ev.HasLatency = d, true
		}
	}
	return nil
}

// route applies the route filters and names the route for grouping.
func (p *Parser) route(path []byte) (string, error) {
	for _, r := range p.ignore {
		if bytes.HasPrefix(path, []byte(r)) {
			return "", ErrNotAuthRoute
		}
	}
	for _, t := range p.templates {
		if _, ok := t.match(path); ok {
			return t.raw, nil
		}
	}
	if len(p.routes) == 0 {
		if len(p.templates) > 0 {
			return "", ErrNotAuthRoute // templates name the routes that matter
		}
		return "", nil
	}
	for _, r := range p.routes {
		if bytes.HasPrefix(path, []byte(r)) {
			return r, nil
		}
	}
	return "", ErrNotAuthRoute
}

func (p *Parser) identity(path, query []byte, ev *Event) (string, error) {
	var id []byte
	if v := p.field(RoleIdentity); v != nil {
		id = v
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
		id = p.field(RoleUser)
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
	if !utf8.Valid(id) {
		id = bytes.ToValidUTF8(id, []byte("\uFFFD"))
	}
	return p.intern.bytes(id), nil
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

// parseIP reads an address, taking the first of a forwarded-for list.
func parseIP(b []byte) (netip.Addr, error) {
	if i := bytes.IndexAny(b, ", "); i >= 0 {
		b = b[:i]
	}
	if a, ok := parseIPv4(b); ok {
		return a, nil
	}
	return netip.ParseAddr(string(b))
}

func parseIPv4(b []byte) (netip.Addr, bool) {
	var ip [4]byte
	part, n, digits := 0, 0, 0
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			n = n*10 + int(c-'0')
			digits++
			if n > 255 || digits > 3 {
				return netip.Addr{}, false
			}
		case c == '.' && digits > 0 && part < 3:
			ip[part] = byte(n)
			part++
			n, digits = 0, 0
		default:
			return netip.Addr{}, false
		}
	}
	if part != 3 || digits == 0 {
		return netip.Addr{}, false
	}
	ip[3] = byte(n)
	return netip.AddrFrom4(ip), true
}

// seconds reads "0.123" as a duration.
func seconds(b []byte) (time.Duration, bool) {
	if i := bytes.IndexAny(b, ", "); i >= 0 { // upstream lists "0.1, 0.2"
		b = b[:i]
	}
	whole, frac := b, []byte(nil)
	if i := bytes.IndexByte(b, '.'); i >= 0 {
		whole, frac = b[:i], b[i+1:]
	}
	w, ok := num(whole)
	if !ok {
		return 0, false
	}
	d := time.Duration(w) * time.Second
	scale := time.Duration(100 * time.Millisecond)
	for _, c := range frac {
		if c < '0' || c > '9' {
			return 0, false
		}
		d += time.Duration(c-'0') * scale
		scale /= 10
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
	return pt, nil
}

func (t *pathTemplate) match(path []byte) ([]byte, bool) {
	var id []byte
	rest := path
	for i, seg := range t.segs {
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
		case seg == "*" || (len(seg) > 1 && seg[0] == '{'):
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
