// Package nginx splits access-log lines written by an nginx log_format into
// named fields, driven by the same log_format string nginx uses. It has no
// regular expressions on the hot path and does not allocate per line.
package nginx

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Combined is nginx's predefined log format.
const Combined = `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`

// Errors returned by Split.
var (
	ErrMismatch = errors.New("line does not match log_format")
)

// Escape is the log_format escape= parameter.
type Escape uint8

const (
	EscapeDefault Escape = iota // \xHH for ", \ and bytes outside printable ASCII
	EscapeJSON                  // JSON string escaping
	EscapeNone
)

type segment struct {
	lit   []byte // literal text; nil for a variable
	field int    // index into Fields for a variable
}

// Format is a compiled log_format.
type Format struct {
	fields []string
	segs   []segment
	escape Escape
	// hasList is set when a step is a list (step.list).
	hasList bool
	// Split's program, made from segs: the literal the line starts with,
	// then each variable with the literal that ends it.
	head  []byte
	steps []step
}

// step is a variable and the literal after it; lit is nil for a variable
// that runs to the end of the line. quoted is set under escape=json for a
// literal that starts with a quote, which an escaped quote in the value
// must not end.
type step struct {
	field  int
	lit    []byte
	quoted bool
	list   bool // ListVariables
}

// ListVariables are the variables that hold a list, "a, b, c": logged
// without quotes, such a value has spaces, and is read whole (see Split).
var ListVariables = []string{"http_x_forwarded_for", "proxy_add_x_forwarded_for", "upstream_addr",
	"upstream_response_time", "upstream_connect_time", "upstream_header_time", "upstream_status"}

// Compile reads a log_format. layout may be the bare format string, the
// quoted pieces of one (nginx concatenates them), or the whole directive
// pasted from nginx.conf, e.g.
//
//	log_format spray escape=json '{"ip":"$remote_addr",'
//	                             '"status":$status}';
//
// "combined" or an empty layout selects the predefined combined format.
func Compile(layout string) (*Format, error) {
	body, esc, err := readDirective(layout)
	if err != nil {
		return nil, err
	}
	if body == "" || body == "combined" {
		body = Combined
	}
	f := &Format{escape: esc}
	index := map[string]int{}
	var lit []byte
	prevVar := ""
	for i := 0; i < len(body); {
		c := body[i]
		if c != '$' {
			lit = append(lit, c)
			i++
			continue
		}
		name, n := varName(body[i:])
		if name == "" {
			return nil, fmt.Errorf("log_format: bad variable at %q", clip(body[i:]))
		}
		i += n
		if len(lit) > 0 {
			f.segs = append(f.segs, segment{lit: lit, field: -1})
			lit = nil
		} else if prevVar != "" {
			return nil, fmt.Errorf("log_format: variable $%s directly follows $%s with no text between them, so lines cannot be split", name, prevVar)
		}
		idx, ok := index[name]
		if !ok {
			idx = len(f.fields)
			index[name] = idx
			f.fields = append(f.fields, name)
		}
		f.segs = append(f.segs, segment{field: idx})
		prevVar = name
	}
	if len(lit) > 0 {
		f.segs = append(f.segs, segment{lit: lit, field: -1})
	}
	if len(f.fields) == 0 {
		return nil, fmt.Errorf("log_format: %q has no variables", clip(body))
	}
	// Literals and variables alternate: literals are merged and a
	// variable never directly follows another.
	for i, seg := range f.segs {
		switch {
		case seg.field < 0 && i == 0:
			f.head = seg.lit
		case seg.field >= 0:
			st := step{field: seg.field}
			if i+1 < len(f.segs) {
				st.lit = f.segs[i+1].lit
				st.quoted = f.escape == EscapeJSON && st.lit[0] == '"'
				st.list = !st.quoted && slices.Contains(ListVariables, f.fields[seg.field])
				f.hasList = f.hasList || st.list
			}
			f.steps = append(f.steps, st)
		}
	}
	return f, nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// varName reads "$name" or "${name}" and returns the name and bytes used.
func varName(s string) (string, int) {
	if len(s) > 2 && s[1] == '{' {
		end := strings.IndexByte(s, '}')
		if end < 3 || !validName(s[2:end]) {
			return "", 0
		}
		return s[2:end], end + 1
	}
	n := 1
	for n < len(s) && isNameByte(s[n]) {
		n++
	}
	if n == 1 {
		return "", 0
	}
	return s[1:n], n
}

func isNameByte(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

func validName(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return false
		}
	}
	return s != ""
}

// readDirective strips a pasted "log_format name [escape=x] '...' '...';" down
// to the concatenated format string.
func readDirective(layout string) (string, Escape, error) {
	s := strings.TrimSpace(layout)
	esc := EscapeDefault
	if rest, ok := strings.CutPrefix(s, "log_format"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t' || rest[0] == '\n') {
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return "", esc, errors.New("log_format: directive has no name")
		}
		rest = strings.TrimSpace(rest)
		rest = strings.TrimSpace(rest[len(fields[0]):]) // the format's name
		if v, ok := strings.CutPrefix(rest, "escape="); ok {
			end := strings.IndexAny(v, " \t\n")
			if end < 0 {
				end = len(v)
			}
			switch v[:end] {
			case "default":
			case "json":
				esc = EscapeJSON
			case "none":
				esc = EscapeNone
			default:
				return "", esc, fmt.Errorf("log_format: unknown escape=%s", v[:end])
			}
			rest = strings.TrimSpace(v[end:])
		}
		s = strings.TrimSuffix(strings.TrimSpace(rest), ";")
	}
	if s == "" || (s[0] != '\'' && s[0] != '"') {
		return s, esc, nil
	}
	var b strings.Builder
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		q := s[0]
		if q != '\'' && q != '"' {
			return "", esc, fmt.Errorf("log_format: expected a quoted string at %q", clip(s))
		}
		i := 1
		for ; i < len(s) && s[i] != q; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				if s[i] != q && s[i] != '\\' {
					b.WriteByte('\\')
				}
			}
			b.WriteByte(s[i])
		}
		if i >= len(s) {
			return "", esc, fmt.Errorf("log_format: unterminated quoted string %q", clip(s))
		}
		s = s[i+1:]
	}
	return b.String(), esc, nil
}

// Fields returns the variable names the format logs, without the '$', in
// order of first appearance. Split fills values in this order.
func (f *Format) Fields() []string { return f.fields }

// Escape returns the format's escape mode.
func (f *Format) Escape() Escape { return f.escape }

// Split fills vals (len(vals) >= len(Fields())) with the raw values of line.
// Values are sub-slices of line, unescaped in place; nginx's "-" for an empty
// value is kept as is. line must not be used by the caller afterwards except
// through vals.
//
// Each value ends at the first occurrence of the literal that follows it in
// the layout; the literal is checked where it is found, once. A list
// variable (ListVariables) is greedy: while its value ends in ',', the
// list goes on ("1.2.3.4, 10.0.0.2" before " - -"). A line that does not split
// so is split again with every list ending at the first literal.
func (f *Format) Split(line []byte, vals [][]byte) error {
	if len(vals) < len(f.fields) {
		return errors.New("nginx: vals shorter than Fields()")
	}
	err := f.split(line, vals, f.hasList)
	if err != nil && f.hasList {
		err = f.split(line, vals, false)
	}
	if err != nil {
		return err
	}
	if f.escape != EscapeNone && bytes.IndexByte(line, '\\') >= 0 {
		for i := range f.fields {
			if bytes.IndexByte(vals[i], '\\') >= 0 {
				vals[i] = f.unescape(vals[i])
			}
		}
	}
	return nil
}

func (f *Format) split(line []byte, vals [][]byte, lists bool) error {
	if !bytes.HasPrefix(line, f.head) {
		return ErrMismatch
	}
	pos := len(f.head)
	for i := range f.steps {
		st := &f.steps[i]
		if st.lit == nil {
			vals[st.field] = line[pos:]
			pos = len(line)
			break
		}
		b := line[pos:]
		var n int
		if st.quoted {
			n = findQuoted(b, st.lit)
		} else if n = bytes.IndexByte(b, st.lit[0]); n >= 0 && !hasLiteral(b[n:], st.lit) {
			// The literal's first byte is in the value: rare, left to
			// the general search.
			if m := index(b[n+1:], st.lit); m >= 0 {
				n += 1 + m
			} else {
				n = -1
			}
		}
		if n < 0 {
			return ErrMismatch
		}
		if lists && st.list {
			n = listEnd(b, n, st.lit)
		}
		vals[st.field] = b[:n]
		pos += n + len(st.lit)
	}
	if pos != len(line) {
		return ErrMismatch
	}
	return nil
}

// listEnd extends a list value of b that lit was found to end at end:
// while the value ends in ',', the value runs past the spaces after it to
// the next lit after the next entry, whatever the entries are (a client
// writes the left ones).
func listEnd(b []byte, end int, lit []byte) int {
	for end > 0 && b[end-1] == ',' {
		j := end
		for j < len(b) && (b[j] == ' ' || b[j] == '\t') {
			j++
		}
		if j == len(b) {
			break
		}
		n := index(b[j:], lit)
		if n <= 0 {
			break // no further literal, or an empty entry
		}
		end = j + n
	}
	return end
}

// findQuoted returns the index of lit, which starts with a quote, in b
// under escape=json: a quote preceded by an odd number of backslashes
// belongs to the value, not the layout.
func findQuoted(b, lit []byte) int {
	off := 0
	for {
		n := index(b[off:], lit)
		if n < 0 {
			return -1
		}
		at := off + n
		bs := 0
		for j := at - 1; j >= 0 && b[j] == '\\'; j-- {
			bs++
		}
		if bs%2 == 0 {
			return at
		}
		off = at + 1
	}
}

// hasLiteral reports whether b starts with lit, whose first byte it is
// known to start with. Literals are a few bytes: a loop beats a call.
func hasLiteral(b, lit []byte) bool {
	if len(b) < len(lit) {
		return false
	}
	for i := 1; i < len(lit); i++ {
		if b[i] != lit[i] {
			return false
		}
	}
	return true
}

// index is bytes.Index for the short literals of a layout: it looks for
// the literal's first byte and compares the rest there, and leaves a line
// that holds that byte at many places to bytes.Index, which stays linear.
func index(b, lit []byte) int {
	c0 := lit[0]
	if len(lit) == 1 {
		return bytes.IndexByte(b, c0)
	}
	for off, tries := 0, 0; ; tries++ {
		i := bytes.IndexByte(b[off:], c0)
		if i < 0 {
			return -1
		}
		at := off + i
		if len(b)-at < len(lit) {
			return -1
		}
		if hasLiteral(b[at:], lit) {
			return at
		}
		off = at + 1
		if tries == 4 {
			if n := bytes.Index(b[off:], lit); n >= 0 {
				return off + n
			}
			return -1
		}
	}
}

// unescape decodes v in place and returns the shortened slice.
func (f *Format) unescape(v []byte) []byte {
	w := 0
	for r := 0; r < len(v); r++ {
		c := v[r]
		if c != '\\' || r+1 >= len(v) {
			v[w] = c
			w++
			continue
		}
		switch f.escape {
		case EscapeDefault:
			if v[r+1] == 'x' && r+3 < len(v) {
				if h, ok := hexByte(v[r+2], v[r+3]); ok {
					v[w] = h
					w++
					r += 3
					continue
				}
			}
			v[w] = c
			w++
		case EscapeJSON:
			r++
			switch v[r] {
			case 'n':
				v[w] = '\n'
			case 't':
				v[w] = '\t'
			case 'r':
				v[w] = '\r'
			case 'b':
				v[w] = '\b'
			case 'f':
				v[w] = '\f'
			case 'u':
				// nginx writes \u00XX only for control bytes.
				if r+4 < len(v) && v[r+1] == '0' && v[r+2] == '0' {
					if h, ok := hexByte(v[r+3], v[r+4]); ok {
						v[w] = h
						w++
						r += 4
						continue
					}
				}
				v[w] = '\\'
				w++
				v[w] = 'u'
			default:
				v[w] = v[r]
			}
			w++
		}
	}
	return v[:w]
}

func hexByte(a, b byte) (byte, bool) {
	x, ok1 := unhex(a)
	y, ok2 := unhex(b)
	return x<<4 | y, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
