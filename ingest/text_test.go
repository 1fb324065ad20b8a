package ingest

import (
	"bytes"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"
)

// referenceCleanText is isCleanText as first written: one byte at a time,
// then utf8.Valid.
func referenceCleanText(b []byte) bool {
	for i, c := range b {
		if c < 0x20 || c == 0x7f || c == 0xc2 && i+1 < len(b) && b[i+1] >= 0x80 && b[i+1] <= 0x9f {
			return false
		}
	}
	return utf8.Valid(b)
}

// referenceSeconds is seconds as first written: cut at the first '.',
// then num for the whole seconds.
func referenceSeconds(b []byte) (time.Duration, bool) {
	b = firstOfList(b)
	whole, frac := b, []byte(nil)
	if i := bytes.IndexByte(b, '.'); i >= 0 {
		whole, frac = b[:i], b[i+1:]
	}
	w, ok := num(whole)
	if !ok || w > maxSeconds {
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

// textSeed returns the seed of a random test, from TEXT_SEED when set.
func textSeed(t *testing.T) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("TEXT_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (replay with TEXT_SEED=%d)", seed, seed)
	return rand.New(rand.NewPCG(seed, 1))
}

// randomText is up to 40 bytes drawn mostly from the bytes at the edges of
// what isCleanText accepts, so that every byte position of a word sees them.
func randomText(r *rand.Rand) []byte {
	edges := []byte{0x00, 0x1f, 0x20, 0x21, 0x7e, 0x7f, 0x80, 0x9f, 0xa0, 0xc2, 0xc3, 0xe2, 0xff, 'a', '0', '.', ',', ' '}
	b := make([]byte, r.IntN(41))
	for i := range b {
		if r.IntN(4) == 0 {
			b[i] = byte(r.IntN(256))
		} else if r.IntN(3) == 0 {
			b[i] = edges[r.IntN(len(edges))]
		} else {
			b[i] = byte('0' + r.IntN(10)) // digits, so that seconds sees numbers
		}
	}
	if r.IntN(3) == 0 {
		// Mostly printable ASCII with one odd byte, the case the word
		// loop must not miss.
		for i := range b {
			b[i] = byte(0x21 + r.IntN(0x5e))
		}
		if len(b) > 0 {
			b[r.IntN(len(b))] = edges[r.IntN(len(edges))]
		}
	}
	return b
}

// TestCleanTextMatchesReference: isCleanText agrees with the byte-at-a-time
// reference on random text full of control, DEL, C1 and invalid bytes.
func TestCleanTextMatchesReference(t *testing.T) {
	r := textSeed(t)
	for range 200_000 {
		b := randomText(r)
		if got, want := isCleanText(b), referenceCleanText(b); got != want {
			t.Fatalf("isCleanText(%q) = %v, reference %v", b, got, want)
		}
	}
}

// TestSecondsMatchesReference: seconds agrees with the reference on random
// numbers, fractions, lists and garbage.
func TestSecondsMatchesReference(t *testing.T) {
	r := textSeed(t)
	for _, b := range [][]byte{[]byte("0.040"), []byte("12"), []byte(".5"), []byte("1."), []byte("1.2.3"), []byte(""), []byte("0.1, 0.2"),
		[]byte("999999999999999999"), []byte("9223372037"), []byte("9223372036.9"), []byte("1234567890123456789"),
		[]byte("9999999999999999999"), []byte("18446744073709552017.5")} {
		gd, gok := seconds(b)
		wd, wok := referenceSeconds(b)
		if gd != wd || gok != wok {
			t.Errorf("seconds(%q) = %v, %v; reference %v, %v", b, gd, gok, wd, wok)
		}
	}
	for range 200_000 {
		b := randomText(r)
		if r.IntN(2) == 0 && len(b) > 2 {
			b[r.IntN(len(b))] = '.'
		}
		gd, gok := seconds(b)
		wd, wok := referenceSeconds(b)
		if gd != wd || gok != wok {
			t.Fatalf("seconds(%q) = %v, %v; reference %v, %v", b, gd, gok, wd, wok)
		}
	}
}
