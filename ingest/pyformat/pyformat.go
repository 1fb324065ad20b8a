// Package pyformat splits lines written by a Python %-style format string,
// the mapping form "%(name)s" that gunicorn's access_log_format and the
// logging module's format use, into the values of the named keys. Like the
// nginx package it has no regular expressions on the hot path and does not
// allocate per line.
package pyformat

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Errors from Compile and Split.
var (
	ErrSyntax   = errors.New("bad format string")
	ErrMismatch = errors.New("line does not match the format")
)

type segment struct {
	lit   []byte // literal text; nil for a key
	field int    // index into Fields for a key, -1 for a literal
}

// Format is a compiled format string.
type Format struct {
	fields []string
	segs   []segment
	// list marks the fields that hold a comma-separated list of
	// addresses (SetList); hasList is set when any does.
	list    []bool
	hasList bool
}

// SetList makes the field key a list of addresses, "a, b, c", which Split
// reads whole although the literal after it is a space. It reports whether
// the format has the field.
func (f *Format) SetList(key string) bool {
	for i, k := range f.fields {
		if k == key {
			if f.list == nil {
				f.list = make([]bool, len(f.fields))
			}
			f.list[i], f.hasList = true, true
			return true
		}
	}
	return false
}

// Compile reads a %-style mapping format. check, when set, is asked about
// every key and may reject it; its error is returned wrapped, naming the
// key. "%%" is a literal percent sign.
func Compile(format string, check func(key string) error) (*Format, error) {
	f := &Format{}
	index := map[string]int{}
	var lit []byte
	prev := ""
	for i := 0; i < len(format); {
		c := format[i]
		if c != '%' {
			lit = append(lit, c)
			i++
			continue
		}
		if i+1 < len(format) && format[i+1] == '%' {
			lit = append(lit, '%')
			i += 2
			continue
		}
		key, n, err := spec(format[i:])
		if err != nil {
			return nil, err
		}
		i += n
		if check != nil {
			if err := check(key); err != nil {
				return nil, fmt.Errorf("%%(%s)s: %w", key, err)
			}
		}
		if len(lit) > 0 {
			f.segs = append(f.segs, segment{lit: lit, field: -1})
			lit = nil
		} else if prev != "" {
			return nil, fmt.Errorf("%w: %%(%s)s directly follows %%(%s)s with no text between them, so lines cannot be split", ErrSyntax, key, prev)
		}
		idx, ok := index[key]
		if !ok {
			idx = len(f.fields)
			index[key] = idx
			f.fields = append(f.fields, key)
		}
		f.segs = append(f.segs, segment{field: idx})
		prev = key
	}
	if len(lit) > 0 {
		f.segs = append(f.segs, segment{lit: lit, field: -1})
	}
	if len(f.fields) == 0 {
		return nil, fmt.Errorf("%w: %q has no %%(name)s keys", ErrSyntax, clip(format))
	}
	return f, nil
}

// spec reads "%(key)[flags][width][.precision]conversion" at the start of s.
func spec(s string) (key string, n int, err error) {
	if len(s) < 2 || s[1] != '(' {
		return "", 0, fmt.Errorf("%w: at %q: only the mapping form %%(name)s is supported", ErrSyntax, clip(s))
	}
	depth, end := 0, -1
	for i := 1; i < len(s) && end < 0; i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				end = i
			}
		}
	}
	if end < 0 {
		return "", 0, fmt.Errorf("%w: unterminated %%( at %q", ErrSyntax, clip(s))
	}
	key = s[2:end]
	if key == "" {
		return "", 0, fmt.Errorf("%w: empty key at %q", ErrSyntax, clip(s))
	}
	i := end + 1
	for i < len(s) && strings.IndexByte("-#0 +", s[i]) >= 0 {
		i++
	}
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	if i >= len(s) || strings.IndexByte("sdifrgeEGxXou", s[i]) < 0 {
		return "", 0, fmt.Errorf("%w: %%(%s) has no conversion such as s or d", ErrSyntax, key)
	}
	return key, i + 1, nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// Fields returns the keys in order of first appearance; Split fills values
// in this order.
func (f *Format) Fields() []string { return f.fields }

// Split fills vals (len(vals) >= len(Fields())) with sub-slices of line.
// A value runs to the first occurrence of the literal text after it, except
// that the text closing the format is matched at the end of the line, so a
// quote inside a last quoted value (a user agent) does not end it early.
// Values are trimmed of the spaces a width specifier pads with.
//
// A list field (SetList) is greedy: while its value ends in ',', the list
// goes on past the next space. A
// line that does not split so is split again with every list field ending
// at the first literal.
func (f *Format) Split(line []byte, vals [][]byte) error {
	if len(vals) < len(f.fields) {
		return errors.New("pyformat: vals shorter than Fields()")
	}
	err := f.split(line, vals, f.hasList)
	if err != nil && f.hasList {
		err = f.split(line, vals, false)
	}
	return err
}

func (f *Format) split(line []byte, vals [][]byte, lists bool) error {
	pos := 0
	for i, seg := range f.segs {
		if seg.field < 0 {
			if !bytes.HasPrefix(line[pos:], seg.lit) {
				return ErrMismatch
			}
			pos += len(seg.lit)
			continue
		}
		end := len(line)
		if i+1 < len(f.segs) {
			next := f.segs[i+1].lit
			if i+2 == len(f.segs) {
				if !bytes.HasSuffix(line[pos:], next) {
					return ErrMismatch
				}
				end = len(line) - len(next)
			} else {
				n := bytes.Index(line[pos:], next)
				if n < 0 {
					return ErrMismatch
				}
				end = pos + n
				if lists && f.list[seg.field] {
					end = listEnd(line, end, next)
				}
			}
		}
		vals[seg.field] = bytes.TrimSpace(line[pos:end])
		pos = end
	}
	if pos != len(line) {
		return ErrMismatch
	}
	return nil
}

// listEnd extends a list value of line that the literal lit was found to
// end at end ("1.2.3.4," before the space of "1.2.3.4, 10.0.0.2 - -"):
// while the value ends in ',', the value runs past the spaces after it to
// the next lit after the next entry. Whatever the entries are (a client
// writes the left ones), a list ends with the entry that ends in no ','.
// It returns the new end, or end.
func listEnd(line []byte, end int, lit []byte) int {
	for end > 0 && line[end-1] == ',' {
		j := end
		for j < len(line) && (line[j] == ' ' || line[j] == '\t') {
			j++
		}
		if j == len(line) {
			break
		}
		n := bytes.Index(line[j:], lit)
		if n <= 0 {
			break // no further literal, or an empty entry
		}
		end = j + n
	}
	return end
}
