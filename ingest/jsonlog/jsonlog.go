// Package jsonlog splits one-object-per-line JSON logs into the values of
// chosen dotted field paths ("request.headers.x-client-id"). It scans the
// line once, decodes only the strings it returns, and decodes them in place.
package jsonlog

import (
	"errors"
	"unicode/utf16"
	"unicode/utf8"
)

// Errors returned by Split.
var (
	ErrNotObject = errors.New("line is not a JSON object")
	ErrSyntax    = errors.New("malformed JSON")
)

const maxDepth = 32

// Format extracts a fixed set of dotted paths. Split reuses a buffer, so a
// Format is not safe for concurrent use.
type Format struct {
	paths    []string
	index    map[string]int
	prefixes map[string]bool
	path     []byte
}

// New returns a Format that extracts paths, in the order given.
func New(paths []string) *Format {
	f := &Format{index: map[string]int{}, prefixes: map[string]bool{}}
	for _, p := range paths {
		if _, dup := f.index[p]; dup || p == "" {
			continue
		}
		f.index[p] = len(f.paths)
		f.paths = append(f.paths, p)
		for i := 0; i < len(p); i++ {
			if p[i] == '.' {
				f.prefixes[p[:i]] = true
			}
		}
	}
	return f
}

// Fields returns the paths in the order Split fills them.
func (f *Format) Fields() []string { return f.paths }

// Split fills vals with the value at each path: the decoded text of a string,
// the literal text of a number or boolean, the raw text of an object or
// array, and nil for null or an absent path.
func (f *Format) Split(line []byte, vals [][]byte) error {
	if len(vals) < len(f.paths) {
		return errors.New("jsonlog: vals shorter than Fields()")
	}
	for i := range f.paths {
		vals[i] = nil
	}
	s := scanner{b: line, f: f, vals: vals, path: f.path[:0]}
	defer func() { f.path = s.path[:0] }() // keep the grown buffer: no allocation per line
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return ErrNotObject
	}
	if err := s.object(nil, 0); err != nil {
		return err
	}
	s.ws()
	if s.i != len(s.b) {
		return ErrSyntax
	}
	return nil
}

type scanner struct {
	b    []byte
	i    int
	f    *Format
	vals [][]byte
	path []byte
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

// object scans {...} at s.i; prefix is the dotted path of the object.
func (s *scanner) object(prefix []byte, depth int) error {
	if depth > maxDepth {
		return ErrSyntax
	}
	s.i++ // {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return nil
	}
	for {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return ErrSyntax
		}
		key, err := s.str()
		if err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return ErrSyntax
		}
		s.i++
		s.ws()
		start := len(s.path)
		if len(prefix) > 0 {
			s.path = append(s.path, '.')
		}
		s.path = append(s.path, key...)
		full := s.path[:len(s.path):len(s.path)]
		if err := s.value(full, depth); err != nil {
			return err
		}
		s.path = s.path[:start]
		s.ws()
		if s.i >= len(s.b) {
			return ErrSyntax
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return ErrSyntax
		}
	}
}

// value scans any JSON value and records it when path is wanted.
func (s *scanner) value(path []byte, depth int) error {
	if s.i >= len(s.b) {
		return ErrSyntax
	}
	idx, want := s.f.index[string(path)]
	start := s.i
	switch c := s.b[s.i]; {
	case c == '"':
		v, err := s.str()
		if err != nil {
			return err
		}
		if want {
			s.vals[idx] = v
		}
		return nil
	case c == '{':
		if s.f.prefixes[string(path)] {
			if err := s.object(path, depth+1); err != nil {
				return err
			}
		} else if err := s.skip(depth); err != nil {
			return err
		}
	case c == '[':
		if err := s.skip(depth); err != nil {
			return err
		}
	default:
		for s.i < len(s.b) {
			c := s.b[s.i]
			if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\r' || c == '\n' {
				break
			}
			s.i++
		}
		lit := s.b[start:s.i]
		if len(lit) == 0 || !literal(lit) {
			return ErrSyntax
		}
		if string(lit) == "null" {
			return nil
		}
	}
	if want {
		s.vals[idx] = s.b[start:s.i]
	}
	return nil
}

func literal(b []byte) bool {
	switch string(b) {
	case "true", "false", "null":
		return true
	}
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E') {
			return false
		}
	}
	return true
}

// skip passes over a nested object or array without recording it.
func (s *scanner) skip(depth int) error {
	level := 0
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '"':
			if _, err := s.str(); err != nil {
				return err
			}
			continue
		case '{', '[':
			level++
			if depth+level > maxDepth {
				return ErrSyntax
			}
		case '}', ']':
			level--
			if level == 0 {
				s.i++
				return nil
			}
		}
		s.i++
	}
	return ErrSyntax
}

// str scans a string at s.i and returns its decoded contents, decoded in
// place inside the line.
func (s *scanner) str() ([]byte, error) {
	s.i++ // opening quote
	start := s.i
	w := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return s.b[start:w], nil
		case c == '\\':
			if s.i+1 >= len(s.b) {
				return nil, ErrSyntax
			}
			e := s.b[s.i+1]
			s.i += 2
			switch e {
			case '"', '\\', '/':
				s.b[w] = e
			case 'n':
				s.b[w] = '\n'
			case 't':
				s.b[w] = '\t'
			case 'r':
				s.b[w] = '\r'
			case 'b':
				s.b[w] = '\b'
			case 'f':
				s.b[w] = '\f'
			case 'u':
				if s.i+4 > len(s.b) {
					return nil, ErrSyntax
				}
				r := rune(0)
				for _, h := range s.b[s.i : s.i+4] {
					d, ok := unhex(h)
					if !ok {
						return nil, ErrSyntax
					}
					r = r<<4 | rune(d)
				}
				s.i += 4
				// A surrogate pair (Python's json.dumps writes non-BMP
				// characters so) is twelve bytes decoding to four.
				if utf16.IsSurrogate(r) && s.i+6 <= len(s.b) && s.b[s.i] == '\\' && s.b[s.i+1] == 'u' {
					if lo, ok := hex4(s.b[s.i+2 : s.i+6]); ok {
						if c := utf16.DecodeRune(r, lo); c != utf8.RuneError {
							r = c
							s.i += 6
						}
					}
				}
				// A \u escape takes six bytes and decodes to at most
				// three (lone surrogates become U+FFFD), so w stays behind
				// s.i.
				w += utf8.EncodeRune(s.b[w:], r)
				continue
			default:
				return nil, ErrSyntax
			}
			w++
		default:
			s.b[w] = c
			w++
			s.i++
		}
	}
	return nil, ErrSyntax
}

func hex4(b []byte) (rune, bool) {
	r := rune(0)
	for _, h := range b {
		d, ok := unhex(h)
		if !ok {
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
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
