// Package gunicorn splits access-log lines written by gunicorn's
// access_log_format into named fields. Field names are gunicorn's atoms as
// written in the format: "h", "t", "r", "s", "L", and for headers and
// environment variables "{x-api-key}i", "{server}o", "{remote_user}e".
// Splitting has no regular expressions and does not allocate per line.
package gunicorn

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spraywatch/spraywatch/ingest/pyformat"
)

// Default is gunicorn's default access_log_format.
const Default = `%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"`

// Errors from Compile.
var (
	ErrUnknownAtom = errors.New("unknown atom")
)

// atoms lists gunicorn's access-log atoms and what they hold.
var atoms = map[string]string{
	"h": "remote address", "l": "'-'", "u": "user name", "t": "date of the request",
	"r": "status line", "m": "request method", "U": "URL path without query", "q": "query string",
	"H": "protocol", "s": "status", "B": "response length", "b": "response length or '-'",
	"f": "referer", "a": "user agent", "T": "request time in seconds", "M": "request time in milliseconds",
	"D": "request time in microseconds", "L": "request time in decimal seconds", "p": "process ID",
}

// ListHeaders are the header atoms that hold a list of addresses, "client,
// proxy1, proxy2": logged without quotes, such a value has spaces, and is
// read whole.
var ListHeaders = []string{"{x-forwarded-for}i", "{x-original-forwarded-for}i"}

// Format is a compiled access_log_format.
type Format struct {
	*pyformat.Format
}

// Compile reads an access_log_format: the bare string, or the setting pasted
// from gunicorn.conf.py (access_log_format = '...') or the command line
// (--access-logformat '...'). An empty layout selects Default. An unknown
// atom is an error that names it.
func Compile(layout string) (*Format, error) {
	s, err := readSetting(layout)
	if err != nil {
		return nil, err
	}
	if s == "" {
		s = Default
	}
	f, err := pyformat.Compile(s, checkAtom)
	if err != nil {
		if strings.Contains(s, "%(U)s%(q)s") {
			// gunicorn writes the query without its "?", so the pair is
			// common and cannot be split; the request line holds both.
			return nil, fmt.Errorf("access_log_format: %w (log \"%%(r)s\" for the path and query, or put a \"?\" between them: %%(U)s?%%(q)s)", err)
		}
		return nil, fmt.Errorf("access_log_format: %w", err)
	}
	for _, h := range ListHeaders {
		f.SetList(h)
	}
	return &Format{f}, nil
}

// Field returns the field name an atom yields: headers are case-insensitive
// in gunicorn, so "{X-Api-Key}i" is "{x-api-key}i". It accepts the atom
// with or without "%(" and ")s".
func Field(atom string) string {
	atom = strings.TrimPrefix(atom, "%(")
	atom = strings.TrimSuffix(atom, ")s")
	if strings.HasPrefix(atom, "{") && (strings.HasSuffix(atom, "}i") || strings.HasSuffix(atom, "}o")) {
		return strings.ToLower(atom)
	}
	return atom
}

func checkAtom(key string) error {
	if _, ok := atoms[key]; ok {
		return nil
	}
	if len(key) > 3 && key[0] == '{' && key[len(key)-2] == '}' {
		switch key[len(key)-1] {
		case 'i', 'o':
			if key != strings.ToLower(key) {
				return fmt.Errorf("%w: write header atoms in lower case, as gunicorn stores them (%s)", ErrUnknownAtom, strings.ToLower(key))
			}
			return nil
		case 'e':
			return nil
		}
	}
	return fmt.Errorf("%w: gunicorn has h l u t r m U q H s B b f a T M D L p {header}i {header}o {var}e", ErrUnknownAtom)
}

// readSetting strips "access_log_format = '...'" or "--access-logformat
// '...'" down to the format string. A bare format that starts with a quoted
// atom ('"%({x-forwarded-for}i)s" %(l)s ...') is the format itself: only a
// pasted setting holds a quoted string, and only one.
func readSetting(layout string) (string, error) {
	s := strings.TrimSpace(layout)
	setting := false
	for _, p := range []string{"access_log_format", "--access-logformat"} {
		if rest, ok := strings.CutPrefix(s, p); ok {
			rest = strings.TrimSpace(rest)
			rest = strings.TrimPrefix(rest, "=")
			s = strings.TrimSpace(rest)
			setting = true
			break
		}
	}
	if len(s) < 2 || (s[0] != '\'' && s[0] != '"') {
		return s, nil
	}
	q := s[0]
	var b strings.Builder
	i := 1
	for ; i < len(s) && s[i] != q; i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
			switch s[i] {
			case q, '\\':
			default:
				b.WriteByte('\\')
			}
		}
		b.WriteByte(s[i])
	}
	if i >= len(s) {
		return "", fmt.Errorf("access_log_format: unterminated quoted string %q", clip(s))
	}
	if rest := strings.TrimSpace(s[i+1:]); rest != "" && !strings.HasPrefix(rest, "#") {
		if !setting && i+1 < len(s) && (s[i+1] == ' ' || s[i+1] == '\t') {
			return s, nil // the format itself, starting with a quoted atom
		}
		return "", fmt.Errorf("access_log_format: unexpected %q after the quoted format", clip(rest))
	}
	return b.String(), nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
