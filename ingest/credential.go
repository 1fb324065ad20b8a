package ingest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"hash/maphash"
	"slices"
	"unicode"
	"unicode/utf8"
)

// CredentialKind says what a source's credential field holds.
type CredentialKind uint8

const (
	// CredentialAuto treats values up to PrefixMaxLen bytes as logged key
	// prefixes and longer values as whole keys; a field that logs a request
	// header (nginx $http_*, gunicorn %({name}i)s, JSON headers.*) or whose
	// name says key, token, auth, secret or password (but not prefix)
	// always holds whole keys.
	CredentialAuto CredentialKind = iota
	// CredentialPrefix: the log holds a key prefix, used as the label. A
	// value longer than PrefixMaxLen is no prefix but a whole key, and is
	// fingerprinted all the same. It cannot be used on a header field.
	CredentialPrefix
	// CredentialKey: the log holds whole keys, fingerprinted at once.
	CredentialKey
)

// PrefixMaxLen is the longest value CredentialAuto takes for a prefix. nginx
// maps and apps that log key[:12] stay well under it; real keys are longer.
const PrefixMaxLen = 16

// FingerprintLen is the number of hex characters kept of the HMAC.
const FingerprintLen = 16

// labelShownLen is how many leading characters of a whole key a label keeps.
const labelShownLen = 6

// schemePrefixes carry no entropy: a label that is only one of them cannot
// tell keys apart.
var schemePrefixes = []string{"sk_live_", "sk_test_", "pk_live_", "pk_test_", "rk_live_", "ghp_", "gho_", "github_pat_", "xoxb-", "xoxp-", "AKIA", "Bearer "}

// placeholders are values clients send when they have no key at all.
var placeholders = []string{"", "-", "null", "nil", "none", "undefined", "YOUR_API_KEY", "your_api_key", "<api_key>", "changeme", "xxx"}

// IsSchemePrefix reports whether label is nothing but a fixed scheme prefix
// such as "sk_live_", which cannot tell keys apart.
func IsSchemePrefix(label string) bool {
	if len(label) > len("github_pat_") { // longer than every scheme prefix
		return false
	}
	for _, p := range schemePrefixes {
		if label == p || (len(label) < len(p) && len(label) >= 3 && p[:len(label)] == label) {
			return true
		}
	}
	return false
}

// maxPlaceholderLen is the length of the longest placeholder.
var maxPlaceholderLen = len(slices.MaxFunc(placeholders, func(a, b string) int { return len(a) - len(b) }))

func isPlaceholder(v []byte) bool {
	if len(v) > maxPlaceholderLen {
		return false // a key, or a prefix of one: the common case
	}
	for _, p := range placeholders {
		if string(v) == p {
			return true
		}
	}
	return false
}

// credentialLabeler turns a raw credential field into a safe label. It holds
// a keyed HMAC and a bounded intern table, so it is not safe for concurrent
// use: each parser owns one.
type credentialLabeler struct {
	kind   CredentialKind
	mac    hash.Hash
	sum    []byte
	buf    []byte
	intern *interner
	seen   *fingerprints // nil until the first whole key
}

func newCredentialLabeler(kind CredentialKind, secret []byte, in *interner) *credentialLabeler {
	return &credentialLabeler{kind: kind, mac: hmac.New(sha256.New, secret), sum: make([]byte, 0, sha256.Size), buf: make([]byte, 0, 64), intern: in}
}

// label returns the credential label for raw, whether raw was a whole key,
// and whether the value is a placeholder meaning "no credential".
func (c *credentialLabeler) label(raw []byte) (label string, whole, missing bool) {
	if len(raw) > 0 && (!printableASCII(raw[0]) || !printableASCII(raw[len(raw)-1])) {
		raw = bytes.TrimSpace(raw) // which also trims Unicode spaces
	}
	if isPlaceholder(raw) {
		return "", false, true
	}
	raw = bytes.TrimPrefix(raw, []byte("Bearer "))
	// Whatever the configured kind, a value longer than any logged prefix
	// is a whole key: storing it as a label would store the key.
	whole = c.kind == CredentialKey || len(raw) > PrefixMaxLen
	if !whole {
		if !isCleanText(raw) {
			c.buf = appendCleanText(c.buf[:0], raw)
			raw = c.buf
		}
		return c.intern.bytes(raw), false, false
	}
	if c.seen == nil {
		c.seen = newFingerprints(fingerprintsMax)
	}
	return c.seen.label(raw, c.wholeLabel), true, false
}

// wholeLabel is the label of a whole key, interned.
func (c *credentialLabeler) wholeLabel(raw []byte) string {
	return c.intern.bytes(c.fingerprintLabel(raw))
}

// fingerprintsMax is how many whole keys' labels a labeler remembers.
const fingerprintsMax = 1 << 14

// fingerprints remembers the labels of whole keys seen lately, so that a
// key sent again costs no HMAC. It holds no key: a label is found by two
// 64-bit hashes of its key, each with its own random seed that is never
// shown. Another key matches only if both hashes collide, about once in
// 2^128 pairs, and then gets that key's label. Sets of two chosen by the
// first hash, least recently used evicted, as in the interner.
type fingerprints struct {
	sets         []fingerprintSet
	mask         uint64
	seed1, seed2 maphash.Seed
}

type fingerprintSet [2]struct {
	h1, h2 uint64
	label  string // "" for an empty way
}

func newFingerprints(max int) *fingerprints {
	n := 1
	for n*2 < max {
		n *= 2
	}
	return &fingerprints{sets: make([]fingerprintSet, n), mask: uint64(n - 1), seed1: maphash.MakeSeed(), seed2: maphash.MakeSeed()}
}

// label returns the remembered label of raw, or makes it with mk and
// remembers it.
func (f *fingerprints) label(raw []byte, mk func([]byte) string) string {
	h1, h2 := maphash.Bytes(f.seed1, raw), maphash.Bytes(f.seed2, raw)
	set := &f.sets[h1&f.mask]
	if w := &set[0]; w.h1 == h1 && w.h2 == h2 && w.label != "" {
		return w.label
	}
	if w := set[1]; w.h1 == h1 && w.h2 == h2 && w.label != "" {
		set[0], set[1] = w, set[0]
		return w.label
	}
	set[1] = set[0]
	set[0].h1, set[0].h2, set[0].label = h1, h2, mk(raw)
	return set[0].label
}

// fingerprintLabel renders "first6…fingerprint" into c.buf.
func (c *credentialLabeler) fingerprintLabel(raw []byte) []byte {
	c.mac.Reset()
	c.mac.Write(raw)
	c.sum = c.mac.Sum(c.sum[:0])
	shown := raw
	if len(shown) > labelShownLen {
		n := labelShownLen
		for n > 0 && !utf8.RuneStart(shown[n]) {
			n-- // never cut a character in half
		}
		shown = shown[:n]
	}
	c.buf = appendCleanText(c.buf[:0], shown)
	c.buf = append(c.buf, "…"...)
	c.buf = hex.AppendEncode(c.buf, c.sum[:FingerprintLen/2])
	return c.buf
}

// Fingerprint returns the keyed fingerprint label of a whole key, as Parse
// would store it. It exists for tools that must match a key an operator holds
// against stored labels without storing the key.
func Fingerprint(secret, key []byte) string {
	c := newCredentialLabeler(CredentialKey, secret, newInterner(1))
	return string(c.fingerprintLabel(key))
}

// interner returns one shared string for equal byte slices so that steady
// traffic allocates nothing. It is a cache of max strings (rounded up to a
// power of two of sets), in sets of internWays chosen by a seeded hash (an
// attacker cannot aim at one set): a value not seen lately costs one
// allocation and evicts the least recently used of its set, never a map
// insert or a clear, so one-off values under a flood cost little and memory
// stays bounded.
//
// A set is one 64-byte cache line: each way keeps 32 bits of the value's
// hash beside its string, so a lookup reads that one line, and the bytes of
// a held string only when its tag matches (almost always the value itself).
type interner struct {
	sets []internSet
	mask uint64
}

// internWays is the number of strings in a set; with their tags they fill
// a cache line.
const internWays = 3

type internSet struct {
	tag [internWays]uint32 // the hash's high half with the low bit set; 0 is an empty way
	_   uint32
	s   [internWays]string // the most recently used first
}

var internSeed = maphash.MakeSeed()

func newInterner(max int) *interner {
	n := 1
	for n*internWays < max {
		n *= 2
	}
	return &interner{sets: make([]internSet, n), mask: uint64(n - 1)}
}

func (in *interner) bytes(b []byte) string {
	h := maphash.Bytes(internSeed, b)
	set := &in.sets[h&in.mask]
	tag := uint32(h>>32) | 1
	for w := 0; w < internWays; w++ {
		if set.tag[w] == tag && set.s[w] == string(b) {
			s := set.s[w]
			for ; w > 0; w-- {
				set.tag[w], set.s[w] = set.tag[w-1], set.s[w-1]
			}
			set.tag[0], set.s[0] = tag, s
			return s
		}
	}
	s := string(b)
	for w := internWays - 1; w > 0; w-- {
		set.tag[w], set.s[w] = set.tag[w-1], set.s[w-1]
	}
	set.tag[0], set.s[0] = tag, s
	return s
}

// printableASCII reports whether c is a printable ASCII byte other than
// space.
func printableASCII(c byte) bool { return c > ' ' && c < 0x7f }

// isCleanText reports whether b is valid UTF-8 without control characters
// (C0, DEL, C1), without allocating.
func isCleanText(b []byte) bool {
	// Printable ASCII, the common case, eight bytes at a time: a word is
	// clean when no byte has its high bit set, none is below 0x20 (which
	// borrows into its high bit when 0x20 is taken off) and none is 0x7f
	// (which x^0x7f turns into a zero byte).
	const ones, highs, spaces, dels = 0x0101010101010101, 0x8080808080808080, 0x2020202020202020, 0x7f7f7f7f7f7f7f7f
	i := 0
	for ; i+8 <= len(b); i += 8 {
		w := binary.LittleEndian.Uint64(b[i:])
		x := w ^ dels
		if w&highs != 0 || (w-spaces)&highs != 0 || (x-ones)&^x&highs != 0 {
			break
		}
	}
	for ; i < len(b); i++ {
		c := b[i]
		if c >= 0x80 {
			return isCleanUTF8(b[i:]) // b[:i] is ASCII: b is valid iff b[i:] is
		}
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// isCleanUTF8 is isCleanText on text that is not all ASCII.
func isCleanUTF8(b []byte) bool {
	for i, c := range b {
		if c < 0x20 || c == 0x7f || c == 0xc2 && i+1 < len(b) && b[i+1] >= 0x80 && b[i+1] <= 0x9f {
			return false
		}
	}
	return utf8.Valid(b)
}

// appendCleanText appends b to dst with each invalid byte and control
// character replaced by U+FFFD, so that identities and labels shown in
// terminals, alerts and Slack carry no NUL or escape sequence.
func appendCleanText(dst, b []byte) []byte {
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 || unicode.IsControl(r) {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, b[:n]...)
		}
		b = b[n:]
	}
	return dst
}
