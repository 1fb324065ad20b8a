package ingest

import (
	"fmt"
	"testing"
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
