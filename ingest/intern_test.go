package ingest

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
	"unsafe"
)

// The interner hands back the string it holds for values seen lately, with
// no allocation, and a value evicted by newer ones comes back equal.
func TestInterner(t *testing.T) {
	in := newInterner(64)
	if n := len(in.sets) * internWays; n < 64 || n >= 2*64 {
		t.Fatalf("%d strings held, want 64 to 127", n)
	}
	if size := unsafe.Sizeof(internSet{}); size != 64 {
		t.Errorf("a set is %d bytes, want one 64-byte cache line", size)
	}
	steady := [][]byte{[]byte("GET"), []byte("POST"), []byte("client-1"), []byte("")}
	first := make([]string, len(steady))
	for i, b := range steady {
		first[i] = in.bytes(b)
	}
	if n := testing.AllocsPerRun(100, func() {
		for i, b := range steady {
			if s := in.bytes(b); unsafe.StringData(s) != unsafe.StringData(first[i]) || s != string(b) {
				t.Fatalf("%q came back as another string", b)
			}
		}
	}); n != 0 {
		t.Errorf("steady values allocate %.1f times a round, want 0", n)
	}
	// A flood of one-off values: each comes back equal, and so do the
	// steady values it evicted.
	for i := 0; i < 10_000; i++ {
		b := fmt.Appendf(nil, "client-f%d", i)
		if s := in.bytes(b); s != string(b) {
			t.Fatalf("%q came back as %q", b, s)
		}
	}
	for _, b := range steady {
		if s := in.bytes(b); s != string(b) {
			t.Errorf("%q came back as %q after the flood", b, s)
		}
	}
}

// TestFingerprintsRemember: whole keys labelled through the labeler's
// memory of recent keys get the label a fresh HMAC gives, whether they were
// seen lately, evicted or never seen; and the memory holds no key, only
// labels (which show no more than a key's first characters).
func TestFingerprintsRemember(t *testing.T) {
	r := textSeed(t)
	secret := []byte("fingerprint-test-secret")
	keys := make([][]byte, 3000)
	for i := range keys {
		k := make([]byte, 17+r.IntN(48))
		for j := range k {
			k[j] = byte(0x21 + r.IntN(0x5e))
			if r.IntN(30) == 0 {
				k[j] = byte(r.IntN(256)) // invalid UTF-8 and control bytes too
			}
		}
		keys[i] = k
	}
	for _, max := range []int{fingerprintsMax, 64} { // roomy, and evicting all the time
		c := newCredentialLabeler(CredentialKey, secret, newInterner(1<<10))
		c.seen = newFingerprints(max)
		ref := newCredentialLabeler(CredentialKey, secret, newInterner(1))
		for range 50_000 {
			k := keys[r.IntN(len(keys))]
			if r.IntN(2) == 0 {
				k = keys[r.IntN(20)] // hot keys
			}
			raw := bytes.Clone(k)
			got, whole, missing := c.label(raw)
			if want := string(ref.fingerprintLabel(bytes.TrimSpace(bytes.TrimPrefix(bytes.TrimSpace(k), []byte("Bearer "))))); got != want || !whole || missing {
				t.Fatalf("max %d: label(%q) = %q, %v, %v; want %q, whole", max, k, got, whole, missing, want)
			}
		}
		held := 0
		for _, set := range c.seen.sets {
			for _, w := range set {
				if w.label == "" {
					continue
				}
				held++
				shown, fp, ok := strings.Cut(w.label, "…")
				if !ok || utf8.RuneCountInString(shown) > labelShownLen || len(fp) != FingerprintLen || strings.Trim(fp, "0123456789abcdef") != "" {
					t.Fatalf("max %d: the memory holds %q, which is no fingerprint label", max, w.label)
				}
			}
		}
		if held == 0 || held > max {
			t.Errorf("max %d: %d labels held", max, held)
		}
	}
}
