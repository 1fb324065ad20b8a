package detect_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/spraywatch/spraywatch/detect"
)

// One writer per database however it is named: through a symlink to the
// file, a symlinked directory, a dangling symlink (the file not created
// yet) or a relative path, the second writer fails at once.
func TestSecondWriterThroughAnotherName(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string) (first, second string)
	}{
		{"symlink to the file", func(t *testing.T, dir string) (string, string) {
			real := filepath.Join(dir, "real.db")
			link := filepath.Join(dir, "link.db")
			if err := os.Symlink(real, link); err != nil {
				t.Fatal(err)
			}
			return real, link
		}},
		{"dangling symlink opened first", func(t *testing.T, dir string) (string, string) {
			real := filepath.Join(dir, "real.db")
			link := filepath.Join(dir, "link.db")
			if err := os.Symlink("real.db", link); err != nil {
				t.Fatal(err)
			}
			return link, real
		}},
		{"symlinked directory", func(t *testing.T, dir string) (string, string) {
			if err := os.Mkdir(filepath.Join(dir, "state"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("state", filepath.Join(dir, "alias")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir, "state", "s.db"), filepath.Join(dir, "alias", "s.db")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first, second := tc.setup(t, t.TempDir())
			openStore(t, first, detect.StoreOptions{})
			if _, err := detect.Open(second, detect.StoreOptions{}); !errors.Is(err, detect.ErrInUse) {
				t.Fatalf("second writer through %s: err = %v, want ErrInUse", second, err)
			}
		})
	}
}
