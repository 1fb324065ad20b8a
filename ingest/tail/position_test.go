package tail

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPositionHeadMemo checks that the head a position saves, made once
// for a read past the file's first bytes, is always the head made afresh:
// random lines of random lengths are appended and read in random steps,
// with the file's mtime and the file read before it changing between the
// steps. The seed is printed for a failure.
func TestPositionHeadMemo(t *testing.T) {
	for seed := uint64(1); seed <= 200; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		path := filepath.Join(t.TempDir(), "x.log")
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		x, err := openFile("k", path, 0)
		if err != nil {
			t.Fatal(err)
		}
		w, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		lines := 0
		for step := 0; step < 40; step++ {
			var b strings.Builder
			for range rng.IntN(6) {
				b.WriteString(strings.Repeat("a", rng.IntN(90)))
				b.WriteByte('\n')
			}
			if _, err := w.WriteString(b.String()); err != nil {
				t.Fatal(err)
			}
			switch rng.IntN(4) {
			case 0:
				mt := time.Unix(1_700_000_000+int64(rng.IntN(1000)), int64(rng.IntN(1e9)))
				if err := os.Chtimes(path, mt, mt); err != nil {
					t.Fatal(err)
				}
				if _, err := x.truncated(); err != nil {
					t.Fatal(err)
				}
			case 1:
				x.after = []string{"", "12:abcd", x.head}[rng.IntN(3)]
			}
			// A position is also taken between reads (a rotation seen).
			if got, want := x.position().Head, x.positionHeadFresh(); got != want {
				t.Fatalf("seed %d, between reads at offset %d: position head %q, made afresh %q", seed, x.off, got, want)
			}
			_, err := x.read(1<<20, false, func(l *Line) error {
				lines++
				if want := x.positionHeadFresh(); l.Pos.Head != want {
					t.Fatalf("seed %d, line %d at offset %d: position head %q, made afresh %q", seed, lines, x.off, l.Pos.Head, want)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
		}
		w.Close()
		x.close()
	}
}
