package tail_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/ingest/tail"
)

// logrotate may act while a restarted Tailer takes up its saved positions:
// between the start's look at the path's siblings and the look that
// records what the start accounted for. A file that appears or changes
// meanwhile was not looked at; it must be looked at by the next look, not
// taken as accounted for. Each case is a rotation the hook does at that
// moment; every line must be reported exactly once. (The daemon's rotation
// storm lost three rounds of lines to the copytruncate case: 8390 of 9320.)
func TestStartRacedByRotation(t *testing.T) {
	line := func(i int) string {
		return fmt.Sprintf("line %04d %s", i, strings.Repeat("x", 60+i%7))
	}
	for _, c := range []struct {
		name    string
		running func(t *testing.T, path string, write func(string, int)) // while the first Tailer runs
		pre     func(t *testing.T, path string, write func(string, int)) // before the start
		rotate  func(t *testing.T, path string, write func(string, int))
	}{
		{"copytruncate", nil, nil, func(t *testing.T, path string, write func(string, int)) {
			write(path, 5)
			raw, err := os.ReadFile(path)
			must(t, err)
			must(t, os.WriteFile(path+".1", raw, 0o644))
			must(t, os.Truncate(path, 0))
		}},
		{"copytruncate and more lines", nil, nil, func(t *testing.T, path string, write func(string, int)) {
			raw, err := os.ReadFile(path)
			must(t, err)
			must(t, os.WriteFile(path+".1", raw, 0o644))
			must(t, os.Truncate(path, 0))
			write(path, 3)
		}},
		{"copy before the start, truncate after it", nil, func(t *testing.T, path string, write func(string, int)) {
			raw, err := os.ReadFile(path)
			must(t, err)
			must(t, os.WriteFile(path+".1", raw, 0o644))
		}, func(t *testing.T, path string, write func(string, int)) {
			must(t, os.Truncate(path, 0))
			write(path, 3)
		}},
		{"a copy the start read, compressed meanwhile", nil, func(t *testing.T, path string, write func(string, int)) {
			raw, err := os.ReadFile(path)
			must(t, err)
			must(t, os.WriteFile(path+".1", raw, 0o644))
			must(t, os.Truncate(path, 0))
			write(path, 4)
		}, func(t *testing.T, path string, write func(string, int)) {
			must(t, os.Rename(path+".1", path+".2"))
			gzipAway(t, path+".2")
		}},
		{"a copy read before, compressed while the start looks", func(t *testing.T, path string, write func(string, int)) {
			raw, err := os.ReadFile(path)
			must(t, err)
			must(t, os.WriteFile(path+".1", raw, 0o644))
			must(t, os.Truncate(path, 0))
			write(path, 3)
		}, nil, func(t *testing.T, path string, write func(string, int)) {
			must(t, os.Rename(path+".1", path+".2"))
			gzipAway(t, path+".2")
		}},
		{"rename and create", nil, nil, func(t *testing.T, path string, write func(string, int)) {
			write(path, 2)
			must(t, os.Rename(path, path+".1"))
			write(path, 4)
		}},
		{"rename, late lines, create", nil, nil, func(t *testing.T, path string, write func(string, int)) {
			must(t, os.Rename(path, path+".1"))
			write(path+".1", 2)
			write(path, 4)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "access.log")
			n := 0
			var written []string
			write := func(p string, k int) {
				var b strings.Builder
				for i := 0; i < k; i++ {
					b.WriteString(line(n) + "\n")
					written = append(written, line(n))
					n++
				}
				appendFile(t, p, b.String())
			}
			write(path, 10)
			ctx, now := context.Background(), time.Unix(1_800_000_000, 0)
			c1 := &collector{}
			tl := tail.New(tail.Options{Patterns: []string{path}, RotateWait: time.Minute})
			must(t, tl.Tick(ctx, now, c1.emit))
			if c.running != nil {
				c.running(t, path, write)
				must(t, tl.Tick(ctx, now.Add(time.Second), c1.emit))
				must(t, tl.Tick(ctx, now.Add(2*time.Second), c1.emit))
			}
			tl.Close()
			write(path, 10) // read by the restarted Tailer
			if c.pre != nil {
				c.pre(t, path, write)
			}
			var saved []tail.Position
			for _, p := range c1.pos {
				saved = append(saved, p)
			}
			tl = tail.New(tail.Options{Patterns: []string{path}, Positions: saved, RotateWait: time.Minute})
			defer tl.Close()
			c2 := &collector{}
			raced := false
			tail.SetAfterStart(func() {
				if !raced {
					raced = true
					c.rotate(t, path, write)
				}
			})
			defer tail.SetAfterStart(nil)
			for i := 0; i < 5; i++ {
				must(t, tl.Tick(ctx, now.Add(time.Duration(i)*time.Second), c2.emit))
			}
			if !raced {
				t.Fatal("the hook did not run")
			}
			got := append(append([]string{}, c1.lines...), c2.lines...)
			sort.Strings(got)
			want := append([]string{}, written...)
			sort.Strings(want)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("reported %d lines, want the %d written, each once:\n got %s\nwant %s", len(got), len(want), brief(got), brief(want))
			}
		})
	}
}

// brief names lines by their numbers.
func brief(lines []string) string {
	var out []string
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 1 {
			out = append(out, f[1])
		}
	}
	return strings.Join(out, " ")
}

// gzipAway compresses path to path.gz and removes it, as logrotate's
// compress does.
func gzipAway(t *testing.T, path string) {
	raw, err := os.ReadFile(path)
	must(t, err)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	must(t, os.WriteFile(path+".gz", gz.Bytes(), 0o644))
	must(t, os.Remove(path))
}
