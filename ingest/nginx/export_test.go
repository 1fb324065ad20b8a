package nginx

import (
	"bytes"
	"errors"
	"slices"
)

// ReferenceSplit is Split as first written: every literal matched with
// bytes.HasPrefix after the value before it was cut at bytes.Index, and
// every value checked for a backslash. A list variable first takes every
// further ", entry" it can, and the line is split again without that when
// it then does not match. The tests hold Split to it.
func (f *Format) ReferenceSplit(line []byte, vals [][]byte) error {
	if len(vals) < len(f.fields) {
		return errors.New("nginx: vals shorter than Fields()")
	}
	err := f.referenceSplit(line, vals, true)
	if err != nil {
		err = f.referenceSplit(line, vals, false)
	}
	if err != nil {
		return err
	}
	if f.escape != EscapeNone {
		for i := range f.fields {
			if bytes.IndexByte(vals[i], '\\') >= 0 {
				vals[i] = f.unescape(vals[i])
			}
		}
	}
	return nil
}

func (f *Format) referenceSplit(line []byte, vals [][]byte, lists bool) error {
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
			n := f.referenceFind(line[pos:], f.segs[i+1].lit)
			if n < 0 {
				return ErrMismatch
			}
			end = pos + n
			lit := f.segs[i+1].lit
			quoted := f.escape == EscapeJSON && lit[0] == '"'
			for lists && !quoted && slices.Contains(ListVariables, f.fields[seg.field]) && bytes.HasSuffix(line[pos:end], []byte(",")) {
				rest := bytes.TrimLeft(line[end:], " \t")
				if len(rest) == 0 {
					break
				}
				j := len(line) - len(rest)
				m := bytes.Index(rest, lit)
				if m <= 0 {
					break
				}
				end = j + m
			}
		}
		vals[seg.field] = line[pos:end]
		pos = end
	}
	if pos != len(line) {
		return ErrMismatch
	}
	return nil
}

func (f *Format) referenceFind(b, lit []byte) int {
	if f.escape != EscapeJSON || len(lit) == 0 || lit[0] != '"' {
		return bytes.Index(b, lit)
	}
	off := 0
	for {
		n := bytes.Index(b[off:], lit)
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
