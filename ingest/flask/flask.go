// Package flask splits the lines a Flask application writes: the werkzeug
// development server's access lines, and the application's own log lines
// in a Python logging format or matched by a regular expression with named
// groups. ingest.Parser decides which shape a line is and joins an access
// line to the application line of the same request.
package flask

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"

	"github.com/spraywatch/spraywatch/ingest/pyformat"
)

// DefaultLogFormat is the format of Flask's default log handler.
const DefaultLogFormat = `[%(asctime)s] %(levelname)s in %(module)s: %(message)s`

// Errors returned by Split and the constructors.
var (
	ErrMismatch = errors.New("line does not match")
	ErrRegex    = errors.New("bad app log regex")
)

// Access field names, in the order Access.Split fills them.
const (
	FieldAddr    = "remote_addr"
	FieldTime    = "time"
	FieldRequest = "request"
	FieldStatus  = "status"
	FieldSize    = "size"
)

var accessFields = []string{FieldAddr, FieldTime, FieldRequest, FieldStatus, FieldSize}

// Access splits werkzeug's access line:
//
//	127.0.3.7 - - [28/Nov/2026 16:03:41] "GET /path HTTP/1.1" 401 -
//
// The time has no zone. Strip ANSI colour codes first (StripANSI); a
// "INFO:werkzeug:" prefix from logging.basicConfig is tolerated.
type Access struct{}

// Fields returns the access line's field names.
func (Access) Fields() []string { return accessFields }

var (
	sepDash  = []byte(" - - [")
	basicPfx = []byte("werkzeug:")
)

// Split fills vals with sub-slices of line.
func (Access) Split(line []byte, vals [][]byte) error {
	if len(vals) < len(accessFields) {
		return errors.New("flask: vals shorter than Fields()")
	}
	i := bytes.Index(line, sepDash)
	if i <= 0 {
		return ErrMismatch
	}
	addr := line[:i]
	if j := bytes.Index(addr, basicPfx); j >= 0 {
		addr = addr[j+len(basicPfx):]
	}
	rest := line[i+len(sepDash):]
	j := bytes.IndexByte(rest, ']')
	if j < 0 || j+2 >= len(rest) || rest[j+1] != ' ' || rest[j+2] != '"' {
		return ErrMismatch
	}
	when := rest[:j]
	rest = rest[j+3:]
	sp := bytes.LastIndexByte(rest, ' ')
	if sp < 0 {
		return ErrMismatch
	}
	size := rest[sp+1:]
	rest = rest[:sp]
	sp = bytes.LastIndexByte(rest, ' ')
	if sp < 1 || rest[sp-1] != '"' {
		return ErrMismatch
	}
	vals[0], vals[1], vals[2], vals[3], vals[4] = addr, when, rest[:sp-1], rest[sp+1:], size
	return nil
}

// StripANSI removes terminal escape sequences (ESC [ ... letter) in place
// and returns the shortened line. werkzeug colours the request and status
// of every line that is not a plain 200.
func StripANSI(line []byte) []byte {
	if bytes.IndexByte(line, 0x1b) < 0 {
		return line
	}
	w := 0
	for r := 0; r < len(line); r++ {
		if line[r] == 0x1b && r+1 < len(line) && line[r+1] == '[' {
			k := r + 2
			for k < len(line) && (line[k] < 0x40 || line[k] > 0x7e) {
				k++
			}
			r = k // skip the final byte too
			continue
		}
		line[w] = line[r]
		w++
	}
	return line[:w]
}

var (
	noise = [][]byte{
		[]byte(" * "), []byte("Press CTRL+C to quit"), []byte("WARNING: This is a development server"),
		[]byte("Traceback (most recent call last)"), []byte("  "), []byte("\t"),
	}
	traceback  = []byte("Traceback (most recent call last)")
	errRequest = []byte("] code ") // werkzeug's log_error: "code 400, message Bad request version"
)

// IsNoise reports lines the development server, gunicorn and Python write
// that are not requests: the start-up banner, tracebacks and their indented
// frames, werkzeug's "code 400, message ..." lines for requests it could not
// read (TLS handshakes on the plain port, scanners), and gunicorn's own
// error-log lines.
func IsNoise(line []byte) bool {
	for _, n := range noise {
		if bytes.HasPrefix(line, n) {
			return true
		}
	}
	if i := bytes.Index(line, sepDash); i > 0 {
		if j := bytes.Index(line[i:], errRequest); j > 0 && bytes.IndexByte(line[i:i+j], '"') < 0 {
			return true
		}
	}
	return isGunicornLog(line)
}

// isGunicornLog reports gunicorn's own error-log lines, which share the
// file with a Flask app's lines when it runs under gunicorn:
//
//	[2026-11-28 16:03:41 +0000] [4711] [INFO] Booting worker with pid: 4711
func isGunicornLog(line []byte) bool {
	if len(line) < 2 || line[0] != '[' {
		return false
	}
	i := bytes.Index(line, []byte("] ["))
	if i < 0 {
		return false
	}
	rest := line[i+3:]
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	return n > 0 && bytes.HasPrefix(rest[n:], []byte("] ["))
}

// StartsTraceback reports the first line of a Python traceback.
func StartsTraceback(line []byte) bool { return bytes.HasPrefix(line, traceback) }

// IsIndented reports a traceback frame line.
func IsIndented(line []byte) bool { return len(line) > 0 && (line[0] == ' ' || line[0] == '\t') }

// Logging is a compiled Python logging format (%(asctime)s ...). Its fields
// are the LogRecord attributes the format names; "message" holds the text
// whose key=value pairs ingest reads.
type Logging struct {
	*pyformat.Format
}

// CompileLogging reads a logging format string; empty selects Flask's
// default.
func CompileLogging(format string) (*Logging, error) {
	if format == "" {
		format = DefaultLogFormat
	}
	f, err := pyformat.Compile(format, checkAttr)
	if err != nil {
		return nil, fmt.Errorf("app_log_format: %w", err)
	}
	return &Logging{f}, nil
}

func checkAttr(key string) error {
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return errors.New("not a LogRecord attribute name")
		}
	}
	return nil
}

// Regex splits application lines with a regular expression whose named
// groups are the fields.
type Regex struct {
	re     *regexp.Regexp
	fields []string
	groups []int // submatch index per field
}

// CompileRegex compiles expr, which needs at least one named group.
func CompileRegex(expr string) (*Regex, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRegex, err)
	}
	r := &Regex{re: re}
	for i, n := range re.SubexpNames() {
		if n != "" {
			r.fields = append(r.fields, n)
			r.groups = append(r.groups, i)
		}
	}
	if len(r.fields) == 0 {
		return nil, fmt.Errorf("%w: %q has no named groups such as (?P<identity>...)", ErrRegex, expr)
	}
	return r, nil
}

// Fields returns the group names.
func (r *Regex) Fields() []string { return r.fields }

// Split fills vals with the named groups' text; an unmatched group is nil.
func (r *Regex) Split(line []byte, vals [][]byte) error {
	m := r.re.FindSubmatchIndex(line)
	if m == nil {
		return ErrMismatch
	}
	for i, g := range r.groups {
		if m[2*g] < 0 {
			vals[i] = nil
			continue
		}
		vals[i] = line[m[2*g]:m[2*g+1]]
	}
	return nil
}
