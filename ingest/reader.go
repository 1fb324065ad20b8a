package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"syscall"
	"unicode/utf8"
)

// MaxLineBytes is the default longest line kept. Longer lines are skipped
// (counted as line_too_long) without being held in memory.
const MaxLineBytes = 64 << 10

// LineReader reads lines and their byte offsets, skipping over-long lines
// without buffering them.
type LineReader struct {
	r      *bufio.Reader
	max    int
	offset int64
	buf    []byte
	head   []byte // the first bytes of the last line that was too long
}

// tooLongHead is how much of a too-long line is kept for a skip sample.
const tooLongHead = 200

// NewLineReader reads r, whose first byte is at offset.
func NewLineReader(r io.Reader, offset int64, max int) *LineReader {
	if max <= 0 {
		max = MaxLineBytes
	}
	return &LineReader{r: bufio.NewReaderSize(r, 256<<10), max: max, offset: offset}
}

// TooLongHead returns the first bytes of the last line Next skipped as too
// long, for a skip sample; valid until the next call.
func (lr *LineReader) TooLongHead() []byte { return lr.head }

// Offset is the offset of the next line.
func (lr *LineReader) Offset() int64 { return lr.offset }

// Next returns the next line without its newline, and its offset. The line
// is valid until the next call. A line longer than the limit yields
// ErrTooLong once; the reader then carries on after it. A last line without a
// newline is returned at EOF.
func (lr *LineReader) Next() ([]byte, int64, error) {
	start := lr.offset
	lr.buf = lr.buf[:0]
	tooLong := false
	for {
		chunk, err := lr.r.ReadSlice('\n')
		lr.offset += int64(len(chunk))
		if !tooLong {
			if len(lr.buf)+len(chunk) > lr.max+1 {
				tooLong = true
				lr.head = append(lr.head[:0], lr.buf[:min(len(lr.buf), tooLongHead)]...)
				lr.head = append(lr.head, chunk[:min(len(chunk), tooLongHead-len(lr.head))]...)
				lr.buf = lr.buf[:0]
			} else if err == nil && len(lr.buf) == 0 {
				return chunk[:len(chunk)-1], start, nil // the common case: no copy
			} else {
				lr.buf = append(lr.buf, chunk...)
			}
		}
		switch {
		case err == nil:
			if tooLong {
				return nil, start, ErrTooLong
			}
			return lr.buf[:len(lr.buf)-1], start, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if tooLong {
				return nil, start, ErrTooLong
			}
			if len(lr.buf) > 0 {
				return lr.buf, start, nil
			}
			return nil, start, io.EOF
		default:
			return nil, start, err
		}
	}
}

// LogFile is an opened log, decompressed when it is gzip.
type LogFile struct {
	Path  string
	Inode uint64
	Dev   uint64
	Size  int64
	f     *os.File
	r     io.Reader
}

// Open opens a plain or gzip log. Gzip is recognised by its magic bytes,
// not by the file name.
func Open(path string) (*LogFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("open %s: is a directory", path)
	}
	lf := &LogFile{Path: path, Size: st.Size(), f: f, r: f}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		lf.Inode, lf.Dev = sys.Ino, uint64(sys.Dev)
	}
	var magic [2]byte
	n, _ := io.ReadFull(f, magic[:])
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	if n == 2 && magic == [2]byte{0x1f, 0x8b} {
		zr, err := gzip.NewReader(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		lf.r = zr
	}
	return lf, nil
}

// Reader returns the (decompressed) content.
func (lf *LogFile) Reader() io.Reader { return lf.r }

// Position returns how far into the underlying file reading has got, for
// progress reporting.
func (lf *LogFile) Position() int64 {
	off, _ := lf.f.Seek(0, io.SeekCurrent)
	return off
}

// Close closes the file.
func (lf *LogFile) Close() error { return lf.f.Close() }

var (
	rotNum  = regexp.MustCompile(`^(.*)\.(\d+)$`)
	rotDate = regexp.MustCompile(`^(.*)[-_.](\d{8}|\d{4}-\d{2}-\d{2})(?:[-_.]?\d+)?$`)
)

type rotated struct {
	path, stem string
	num        int    // .N suffix: larger is older
	date       string // dateext suffix: smaller is older
}

func classify(path string) rotated {
	name := path
	for _, ext := range []string{".gz", ".bz2", ".xz", ".zst"} {
		if s, ok := cutSuffix(name, ext); ok {
			name = s
			break
		}
	}
	r := rotated{path: path, stem: name, num: -1}
	if m := rotNum.FindStringSubmatch(name); m != nil {
		r.stem = m[1]
		r.num, _ = strconv.Atoi(m[2])
	} else if m := rotDate.FindStringSubmatch(filepath.Base(name)); m != nil {
		r.stem = filepath.Join(filepath.Dir(name), m[1])
		r.date = m[2]
	}
	return r
}

func cutSuffix(s, suf string) (string, bool) {
	if len(s) > len(suf) && s[len(s)-len(suf):] == suf {
		return s[:len(s)-len(suf)], true
	}
	return s, false
}

// ReplayOrder groups paths by the log they were rotated from and orders each
// group oldest first: x.log.3.gz, x.log.2.gz, x.log.1, x.log (logrotate's
// numbering), or x.log-20261101.gz before x.log-20261102 (dateext). Each
// returned group is one stream of lines in time order.
func ReplayOrder(paths []string) [][]string {
	groups := map[string][]rotated{}
	var stems []string
	seen := map[string]bool{}
	for _, p := range paths {
		if seen[p] {
			continue
		}
		seen[p] = true
		r := classify(p)
		if _, ok := groups[r.stem]; !ok {
			stems = append(stems, r.stem)
		}
		groups[r.stem] = append(groups[r.stem], r)
	}
	sort.Strings(stems)
	out := make([][]string, 0, len(stems))
	for _, s := range stems {
		g := groups[s]
		sort.SliceStable(g, func(i, j int) bool { return older(g[i], g[j]) })
		var ps []string
		for _, r := range g {
			ps = append(ps, r.path)
		}
		out = append(out, ps)
	}
	return out
}

func older(a, b rotated) bool {
	switch {
	case a.date != "" || b.date != "":
		if a.date == "" {
			return false
		}
		if b.date == "" {
			return true
		}
		return a.date < b.date
	case a.num != b.num:
		return a.num > b.num // -1 (the live file) sorts last
	}
	return a.path < b.path
}

// Redact makes a line safe to show: it is cut to max bytes, made valid UTF-8,
// control characters are replaced, and whatever may be a secret is masked:
//
//   - the value after a marker word: a word ending in key (api_key, apikey,
//     x-api-key), token, secret, password, passwd, pwd, auth, authorization,
//     signature, sig or session, case-insensitive, followed by separators
//     (spaces, quotes, backslashes) that hold a '=' or ':'. The value runs to
//     the next space, quote, '&', ',', ';' or bracket, so it takes / + . = ~ %
//     and the like. A Bearer or Basic scheme keeps its name and masks the
//     credential after it. Placeholders such as "-" are no secret and stay.
//     Spaces alone do not make a marker, so "GET /oauth/token HTTP/1.1"
//     stays readable;
//   - the credential after a lone "Bearer ";
//   - a JWT (eyJ… with dots), all of its segments;
//   - every segment (between / and .) of at least 20 characters that mixes
//     letters and digits;
//   - everything after hooks.slack.com/services/.
//
// A masked value keeps at most a quarter of itself, and no more than the 6
// characters a label shows; passwords and Basic credentials keep nothing.
func Redact(line []byte, max int) string {
	if max > 0 && len(line) > max {
		line = line[:max]
	}
	line = bytes.ToValidUTF8(line, []byte("\uFFFD"))
	var out bytes.Buffer
	out.Grow(len(line) + 32)
	for i := 0; i < len(line); {
		c := line[i]
		if !isSegmentByte(c) {
			writeSafe(&out, c)
			i++
			continue
		}
		if hasPrefixFold(line[i:], slackHooks) {
			out.Write(line[i : i+len(slackHooks)])
			i = maskValue(&out, line, i+len(slackHooks), true)
			continue
		}
		j := i
		for j < len(line) && isSegmentByte(line[j]) {
			j++
		}
		seg := line[i:j]
		switch {
		case isMarkerWord(seg):
			k, ok := markerSeparators(line, j)
			if !ok {
				out.Write(seg)
				i = j
				break
			}
			out.Write(line[i:k])
			i = maskMarkedValue(&out, line, k, isPasswordWord(seg))
		case bytes.EqualFold(seg, []byte("Bearer")) && j < len(line) && line[j] == ' ':
			k := skipSpaces(line, j)
			out.Write(line[i:k])
			i = maskValue(&out, line, k, false)
		case bytes.HasPrefix(seg, []byte("eyJ")) && j < len(line) && line[j] == '.':
			k := j
			for k < len(line) && (isSegmentByte(line[k]) || line[k] == '.') {
				k++
			}
			writeMasked(&out, line[i:k], false)
			i = k
		case secretLike(seg):
			writeMasked(&out, seg, false)
			i = j
		default:
			out.Write(seg)
			i = j
		}
	}
	return out.String()
}

const slackHooks = "hooks.slack.com/services/"

// markerSuffixes end the words after which a value is a secret.
var markerSuffixes = []string{"key", "token", "secret", "password", "passwd", "pwd", "auth", "authorization", "signature", "sig", "session", "sessionid"}

func isMarkerWord(w []byte) bool {
	for _, s := range markerSuffixes {
		if hasSuffixFold(w, s) {
			return true
		}
	}
	return false
}

func isPasswordWord(w []byte) bool {
	return hasSuffixFold(w, "password") || hasSuffixFold(w, "passwd") || hasSuffixFold(w, "pwd")
}

// markerSeparators returns where the value after a marker word ending at j
// starts: after a short run of spaces, quotes, backslashes, '=' and ':' that
// holds at least one '=' or ':'.
func markerSeparators(line []byte, j int) (int, bool) {
	assign := false
	k := j
	for ; k < len(line) && k-j < 8; k++ {
		switch line[k] {
		case '=', ':':
			assign = true
		case ' ', '\t', '"', '\'', '\\':
		default:
			return k, assign
		}
	}
	return k, assign
}

// maskMarkedValue masks the value at k after a marker; a Bearer or Basic
// scheme is kept and the credential after it masked. It returns where the
// value ends.
func maskMarkedValue(out *bytes.Buffer, line []byte, k int, password bool) int {
	e := valueEnd(line, k)
	v := line[k:e]
	if isPlaceholder(v) {
		out.Write(v)
		return e
	}
	basic := bytes.EqualFold(v, []byte("Basic"))
	if (basic || bytes.EqualFold(v, []byte("Bearer"))) && e < len(line) && line[e] == ' ' {
		s := skipSpaces(line, e)
		out.Write(line[k:s])
		return maskValue(out, line, s, basic || password)
	}
	writeMasked(out, v, password)
	return e
}

// maskValue masks the value at k and returns where it ends.
func maskValue(out *bytes.Buffer, line []byte, k int, hideAll bool) int {
	e := valueEnd(line, k)
	if e > k {
		writeMasked(out, line[k:e], hideAll)
	}
	return e
}

// valueEnd is where a secret value starting at k ends: at a space, quote,
// backslash, control character, '&', ',', ';', '<', '>' or closing bracket.
func valueEnd(line []byte, k int) int {
	for ; k < len(line); k++ {
		switch c := line[k]; c {
		case ' ', '"', '\'', '\\', '&', ',', ';', '<', '>', ')', ']', '}':
			return k
		default:
			if c < 0x20 || c == 0x7f {
				return k
			}
		}
	}
	return k
}

// writeMasked writes a quarter of v, at most labelShownLen bytes (none when
// hideAll), then the redaction mark.
func writeMasked(out *bytes.Buffer, v []byte, hideAll bool) {
	keep := min(labelShownLen, len(v)/4)
	if hideAll {
		keep = 0
	}
	for keep > 0 && keep < len(v) && !utf8.RuneStart(v[keep]) {
		keep--
	}
	out.Write(v[:keep])
	out.WriteString("…[redacted]")
}

// writeSafe writes a byte that is no segment byte, NUL and terminal escapes
// replaced so that they stay off the screen.
func writeSafe(out *bytes.Buffer, c byte) {
	if c < 0x20 && c != '\t' || c == 0x7f {
		out.WriteString("\uFFFD")
		return
	}
	out.WriteByte(c)
}

func skipSpaces(line []byte, k int) int {
	for k < len(line) && line[k] == ' ' {
		k++
	}
	return k
}

// isSegmentByte: the bytes of a word or a base64 run; '/' and '.' split
// segments.
func isSegmentByte(c byte) bool {
	return c == '_' || c == '-' || c == '+' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// secretLike: at least 20 bytes with both letters and digits.
func secretLike(tok []byte) bool {
	if len(tok) < 20 {
		return false
	}
	var letters, digits bool
	for _, c := range tok {
		switch {
		case c >= '0' && c <= '9':
			digits = true
		case (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'):
			letters = true
		}
	}
	return letters && digits
}

func hasSuffixFold(b []byte, suffix string) bool {
	return len(b) >= len(suffix) && asciiEqualFold(b[len(b)-len(suffix):], suffix)
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && asciiEqualFold(b[:len(prefix)], prefix)
}

// asciiEqualFold compares b with a lower-case ASCII s, ignoring case.
func asciiEqualFold(b []byte, s string) bool {
	for i := 0; i < len(s); i++ {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
