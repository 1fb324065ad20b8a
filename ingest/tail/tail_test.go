package tail_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/ingest/tail"
)

// collector records what a Tailer reports.
type collector struct {
	lines []string
	pos   map[string]tail.Position
}

func (c *collector) emit(l *tail.Line) error {
	if c.pos == nil {
		c.pos = map[string]tail.Position{}
	}
	c.pos[l.Pos.Key] = l.Pos
	switch {
	case l.PositionOnly:
	case l.TooLong:
		c.lines = append(c.lines, "<too long>")
	default:
		c.lines = append(c.lines, string(l.Text))
	}
	return nil
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func TestPartialLineWaitsForNewline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	appendFile(t, path, "one\ntw")
	tl := tail.New(tail.Options{Patterns: []string{path}})
	c := &collector{}
	ctx, now := context.Background(), time.Now()
	tick := func() {
		if err := tl.Tick(ctx, now, c.emit); err != nil {
			t.Fatal(err)
		}
	}
	tick()
	if got := strings.Join(c.lines, "|"); got != "one" {
		t.Fatalf("after a partial line: got %q, want %q", got, "one")
	}
	if got := c.pos[path].Offset; got != 4 {
		t.Errorf("position after the first line = %d, want 4", got)
	}
	appendFile(t, path, "o\nthree\n")
	tick()
	if got, want := strings.Join(c.lines, "|"), "one|two|three"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := c.pos[path].Offset; got != int64(len("one\ntwo\nthree\n")) {
		t.Errorf("position = %d, want %d", got, len("one\ntwo\nthree\n"))
	}
}

func TestLongLinesAreSkippedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	appendFile(t, path, "short\n"+strings.Repeat("x", 300))
	tl := tail.New(tail.Options{Patterns: []string{path}, MaxLineBytes: 256})
	c := &collector{}
	for _, more := range []string{strings.Repeat("y", 300), "\nafter\n"} {
		if err := tl.Tick(context.Background(), time.Now(), c.emit); err != nil {
			t.Fatal(err)
		}
		appendFile(t, path, more)
	}
	if err := tl.Tick(context.Background(), time.Now(), c.emit); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(c.lines, "|"), "short|<too long>|after"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestResumeAndStartAtEnd(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	appendFile(t, path, "old1\nold2\n")
	c := &collector{}
	tl := tail.New(tail.Options{Patterns: []string{path}, StartAtEnd: true})
	if err := tl.Tick(context.Background(), time.Now(), c.emit); err != nil {
		t.Fatal(err)
	}
	if len(c.lines) != 0 {
		t.Fatalf("start at end read %q", c.lines)
	}
	appendFile(t, path, "new1\n")
	tl.Tick(context.Background(), time.Now(), c.emit)
	tl.Close()
	saved := c.pos[path]
	appendFile(t, path, "new2\n")
	c2 := &collector{}
	tl = tail.New(tail.Options{Patterns: []string{path}, Positions: []tail.Position{saved}, StartAtEnd: true})
	tl.Tick(context.Background(), time.Now(), c2.emit)
	tl.Close()
	if got, want := strings.Join(append(c.lines, c2.lines...), "|"), "new1|new2"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// A missing file is an error in Status (retried with backoff), not a
// failure; it is read from its start once it appears.
func TestMissingFileIsRetried(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	tl := tail.New(tail.Options{Patterns: []string{path}, StartAtEnd: true})
	c := &collector{}
	now := time.Now()
	if err := tl.Tick(context.Background(), now, c.emit); err != nil {
		t.Fatal(err)
	}
	st := tl.Status()
	if len(st) != 1 || st[0].Err == nil {
		t.Fatalf("status = %+v, want an error for the missing file", st)
	}
	appendFile(t, path, "first\n")
	tl.Tick(context.Background(), now.Add(100*time.Millisecond), c.emit) // within the backoff: not retried yet
	if len(c.lines) != 0 {
		t.Fatalf("read %q before the retry", c.lines)
	}
	tl.Tick(context.Background(), now.Add(2*time.Second), c.emit)
	if got := strings.Join(c.lines, "|"); got != "first" {
		t.Fatalf("got %q, want %q", got, "first")
	}
	if st := tl.Status(); st[0].Err != nil {
		t.Errorf("status still has %v", st[0].Err)
	}
}

// Bytes behind are what is behind now, not at the last Tick: a reader
// held up downstream (a locked database) or in the middle of a long read
// still shows its backlog; a long read reports its progress as it goes.
func TestStatusShowsBacklogBetweenTicks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	appendFile(t, path, "one\n")
	tl := tail.New(tail.Options{Patterns: []string{path}})
	defer tl.Close()
	c := &collector{}
	if err := tl.Tick(context.Background(), time.Now(), c.emit); err != nil {
		t.Fatal(err)
	}
	more := strings.Repeat("a line not read yet\n", 10)
	appendFile(t, path, more)
	if st := tl.Status(); len(st) != 1 || st[0].Behind != int64(len(more)) {
		t.Fatalf("status after an unread append = %+v, want %d bytes behind", st, len(more))
	}
	// A long read: the status seen from inside emit moves on before the
	// Tick ends.
	appendFile(t, path, strings.Repeat("x\n", 3*4096))
	var mid []int64
	n := 0
	err := tl.Tick(context.Background(), time.Now(), func(l *tail.Line) error {
		if n++; n%4096 == 1 && n > 1 {
			mid = append(mid, tl.Status()[0].Behind)
		}
		return c.emit(l)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(mid) < 2 || mid[0] <= mid[len(mid)-1] || mid[0] == 0 {
		t.Errorf("bytes behind seen during a long read = %v, want shrinking, non-zero values", mid)
	}
	if st := tl.Status(); st[0].Behind != 0 {
		t.Errorf("behind after the read = %d, want 0", st[0].Behind)
	}
}

// The three sequences once known to lose lines, each written out: every
// line must come out once.
func TestKnownLossSequences(t *testing.T) {
	type step func(t *testing.T, dir string, tk *ticker)
	lines := func(prefix string, n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "%s-%02d some text to make the line longer than a few bytes, as log lines are\n", prefix, i)
		}
		return b.String()
	}
	mv := func(t *testing.T, dir, from, to string) {
		t.Helper()
		if err := os.Rename(filepath.Join(dir, from), filepath.Join(dir, to)); err != nil {
			t.Fatal(err)
		}
	}
	copytruncate := func(t *testing.T, dir, to string) {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(dir, "access.log"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, to), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(filepath.Join(dir, "access.log"), 0); err != nil {
			t.Fatal(err)
		}
	}
	// inParts writes data to name a part at a time (up to each cut),
	// looking after each part, as logrotate's copy and gzip write while
	// the daemon may look.
	inParts := func(t *testing.T, tk *ticker, name string, data []byte, cuts ...int) {
		t.Helper()
		f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		at := 0
		for _, c := range append(cuts, len(data)) {
			if _, err := f.Write(data[at:c]); err != nil {
				t.Fatal(err)
			}
			at = c
			if c < len(data) {
				tk.tick(t)
			}
		}
	}
	gz := func(t *testing.T, data []byte) []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	for _, tc := range []struct {
		name  string
		steps []step
		want  int
	}{
		{"copytruncate while running, then a rename rotation while stopped", []step{
			func(t *testing.T, dir string, tk *ticker) { appendFile(t, tk.path, lines("a", 5)); tk.tick(t) },
			func(t *testing.T, dir string, tk *ticker) {
				copytruncate(t, dir, "access.log.1")
				appendFile(t, tk.path, lines("b", 3))
				tk.tick(t)
				tk.restart(t, func() {
					appendFile(t, tk.path, lines("c", 4))
					mv(t, dir, "access.log.1", "access.log.2")
					mv(t, dir, "access.log", "access.log.1")
					appendFile(t, tk.path, lines("d", 2))
				})
			},
		}, 14},
		{"two copytruncates while stopped, with logrotate's names", []step{
			func(t *testing.T, dir string, tk *ticker) { appendFile(t, tk.path, lines("a", 5)); tk.tick(t) },
			func(t *testing.T, dir string, tk *ticker) {
				tk.restart(t, func() {
					appendFile(t, tk.path, lines("b", 3))
					copytruncate(t, dir, "access.log.1")
					appendFile(t, tk.path, lines("c", 4))
					mv(t, dir, "access.log.1", "access.log.2")
					copytruncate(t, dir, "access.log.1")
					appendFile(t, tk.path, lines("d", 2))
				})
			},
		}, 14},
		{"a file created, written and copytruncated between two polls", []step{
			func(t *testing.T, dir string, tk *ticker) { appendFile(t, tk.path, ""); tk.tick(t) },
			func(t *testing.T, dir string, tk *ticker) {
				appendFile(t, tk.path, lines("a", 5))
				copytruncate(t, dir, "access.log.1")
				appendFile(t, tk.path, lines("b", 2))
				tk.tick(t)
			},
		}, 7},
		{"copytruncate's copy seen while being written: part of a line, more than was read", []step{
			func(t *testing.T, dir string, tk *ticker) { appendFile(t, tk.path, ""); tk.tick(t) },
			func(t *testing.T, dir string, tk *ticker) {
				appendFile(t, tk.path, lines("a", 3)) // not read yet
				data, err := os.ReadFile(tk.path)
				if err != nil {
					t.Fatal(err)
				}
				inParts(t, tk, filepath.Join(dir, "access.log.1"), data, 9, 100)
				if err := os.Truncate(tk.path, 0); err != nil {
					t.Fatal(err)
				}
				appendFile(t, tk.path, lines("b", 2))
				tk.tick(t)
				tk.restart(t, func() { appendFile(t, tk.path, lines("c", 1)) })
			},
		}, 6},
		{"copytruncate's copy, shorter than the head, recorded while being written and finished while stopped", []step{
			func(t *testing.T, dir string, tk *ticker) { appendFile(t, tk.path, lines("a", 3)); tk.tick(t) },
			func(t *testing.T, dir string, tk *ticker) {
				data, err := os.ReadFile(tk.path) // what the copy will hold
				if err != nil {
					t.Fatal(err)
				}
				appendFile(t, tk.path, lines("a", 4)[len(data):]) // read before the truncate
				tk.tick(t)
				f, err := os.Create(filepath.Join(dir, "access.log.1"))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				f.Write(data[:len(data)*2/3])
				tk.tick(t)
				tk.restart(t, func() {
					f.Write(data[len(data)*2/3:])
					if err := os.Truncate(tk.path, 0); err != nil {
						t.Fatal(err)
					}
					appendFile(t, tk.path, lines("b", 2))
				})
				tk.restart(t, func() { appendFile(t, tk.path, lines("c", 1)) })
			},
		}, 7},
		{"gzip's output seen while being written: empty, one byte, part of the stream", []step{
			func(t *testing.T, dir string, tk *ticker) { appendFile(t, tk.path, lines("a", 5)); tk.tick(t) },
			func(t *testing.T, dir string, tk *ticker) {
				appendFile(t, tk.path, lines("b", 3))
				copytruncate(t, dir, "access.log.1")
				tk.tick(t)
				appendFile(t, tk.path, lines("c", 2))
				data, err := os.ReadFile(filepath.Join(dir, "access.log.1"))
				if err != nil {
					t.Fatal(err)
				}
				z := gz(t, data)
				inParts(t, tk, filepath.Join(dir, "access.log.1.gz"), z, 0, 1, len(z)/2)
				tk.tick(t)
				if err := os.Remove(filepath.Join(dir, "access.log.1")); err != nil {
					t.Fatal(err)
				}
				tk.tick(t)
				tk.restart(t, func() { appendFile(t, tk.path, lines("d", 1)) })
			},
		}, 11},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tk := &ticker{path: filepath.Join(dir, "access.log"), c: &collector{}}
			tk.tl = tail.New(tail.Options{Patterns: []string{tk.path}})
			for _, s := range tc.steps {
				s(t, dir, tk)
			}
			tk.tick(t)
			tk.tl.Close()
			seen := map[string]int{}
			for _, l := range tk.c.lines {
				seen[l]++
				if seen[l] > 1 {
					t.Errorf("read twice: %q", l)
				}
			}
			if len(seen) != tc.want {
				t.Errorf("read %d distinct lines, want %d: %q", len(seen), tc.want, tk.c.lines)
			}
		})
	}
}

// ticker drives a Tailer on a fake clock and restarts it from the
// positions it reported.
type ticker struct {
	path string
	tl   *tail.Tailer
	c    *collector
	now  time.Time
}

func (k *ticker) tick(t *testing.T) {
	t.Helper()
	if k.now.IsZero() {
		k.now = time.Now()
	}
	k.now = k.now.Add(time.Second)
	if err := k.tl.Tick(context.Background(), k.now, k.c.emit); err != nil {
		t.Fatal(err)
	}
}

// restart stops the Tailer, runs while, and starts a new one from the
// saved positions.
func (k *ticker) restart(t *testing.T, while func()) {
	t.Helper()
	k.tl.Close()
	time.Sleep(10 * time.Millisecond) // later writes get later mtimes
	while()
	var pos []tail.Position
	for _, p := range k.c.pos {
		pos = append(pos, p)
	}
	k.tl = tail.New(tail.Options{Patterns: []string{k.path}, Positions: pos})
	k.tick(t)
}

// TestPositionsSavedBeforeExtraKeys: positions as the version before
// ExtraKeys (and older ones) saved them are still taken up: the path's key,
// the rotated key (being read, or "done"), "gone", and an undated empty
// head. The format is spelled out here on purpose: it is in users'
// databases.
func TestPositionsSavedBeforeExtraKeys(t *testing.T) {
	fp := func(b []byte) string {
		if len(b) > tail.HeadBytes {
			b = b[:tail.HeadBytes]
		}
		sum := sha256.Sum256(b)
		return fmt.Sprintf("%d:%s", len(b), hex.EncodeToString(sum[:8]))
	}
	ident := func(t *testing.T, path string) (uint64, uint64, time.Time) {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		return uint64(st.Dev), st.Ino, fi.ModTime()
	}
	pos := func(t *testing.T, key, path, read string) tail.Position {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		dev, ino, mtime := ident(t, path)
		return tail.Position{Key: key, Dev: dev, Inode: ino, Head: fmt.Sprintf("%s t=%d", fp(data), mtime.UnixNano()), Offset: int64(len(read))}
	}
	for _, tc := range []struct {
		name string
		// setup writes the files and returns the saved positions; then
		// more lines may be appended.
		setup func(t *testing.T, dir string) []tail.Position
		want  string
	}{
		{"the path's key: resumed at its offset", func(t *testing.T, dir string) []tail.Position {
			p := filepath.Join(dir, "access.log")
			appendFile(t, p, "a1\na2\n")
			saved := pos(t, p, p, "a1\na2\n")
			appendFile(t, p, "a3\n")
			return []tail.Position{saved}
		}, "a3"},
		{"the rotated key being read: late lines, then the new file", func(t *testing.T, dir string) []tail.Position {
			p := filepath.Join(dir, "access.log")
			appendFile(t, p, "a1\na2\n")
			if err := os.Rename(p, p+".1"); err != nil {
				t.Fatal(err)
			}
			appendFile(t, p, "b1\n")
			old := pos(t, p+tail.RotatedSuffix, p+".1", "a1\na2\n")
			cur := pos(t, p, p, "b1\n")
			appendFile(t, p+".1", "a3\n")
			appendFile(t, p, "b2\n")
			return []tail.Position{cur, old}
		}, "a3|b2"},
		{"a done rotated key and a gone path: the path read from its start", func(t *testing.T, dir string) []tail.Position {
			p := filepath.Join(dir, "access.log")
			appendFile(t, p+".1", "a1\na2\n")
			data, _ := os.ReadFile(p + ".1")
			dev, ino, mtime := ident(t, p+".1")
			done := tail.Position{Key: p + tail.RotatedSuffix, Dev: dev, Inode: ino, Head: "done " + fp(data), Offset: int64(len(data))}
			gone := tail.Position{Key: p, Head: fmt.Sprintf("gone t=%d a=%s", mtime.UnixNano(), fp(data))}
			time.Sleep(10 * time.Millisecond) // the new file is later
			appendFile(t, p, "b1\nb2\n")
			return []tail.Position{gone, done}
		}, "b1|b2"},
		{"an undated empty head (the oldest format): the path from its start", func(t *testing.T, dir string) []tail.Position {
			p := filepath.Join(dir, "access.log")
			appendFile(t, p, "a1\n")
			return []tail.Position{{Key: p}}
		}, "a1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "access.log")
			saved := tc.setup(t, dir)
			c := &collector{}
			tl := tail.New(tail.Options{Patterns: []string{path}, Positions: saved, RotateWait: time.Minute})
			now := time.Now()
			for i := 0; i < 3; i++ {
				if err := tl.Tick(context.Background(), now, c.emit); err != nil {
					t.Fatal(err)
				}
				now = now.Add(2 * time.Minute)
			}
			tl.Close()
			sort.Strings(c.lines) // (the order of files is not the point)
			if got := strings.Join(c.lines, "|"); got != tc.want {
				t.Fatalf("read %q, want %q", got, tc.want)
			}
		})
	}
}

// TestRotatedFilesFollowedTogether: a rotated file is read for late lines
// until it is quiet, even when another rotation comes first (two writers
// that reopen late), and a restart takes every one of them up again from
// its own key.
func TestRotatedFilesFollowedTogether(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	mv := func(from, to string) {
		t.Helper()
		if err := os.Rename(filepath.Join(dir, from), filepath.Join(dir, to)); err != nil {
			t.Fatal(err)
		}
	}
	tk := &ticker{path: path, c: &collector{}}
	tk.tl = tail.New(tail.Options{Patterns: []string{path}, RotateWait: time.Minute})
	appendFile(t, path, "a1\n")
	tk.tick(t)
	// Writer A keeps its descriptor on the file rotated first.
	wa, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer wa.Close()
	mv("access.log", "access.log.1")
	appendFile(t, path, "b1\n")
	tk.tick(t)
	mv("access.log.1", "access.log.2")
	mv("access.log", "access.log.1")
	appendFile(t, path, "c1\n")
	tk.tick(t)
	wa.WriteString("a2\n") // late, after the second rotation
	appendFile(t, filepath.Join(dir, "access.log.1"), "b2\n")
	tk.tick(t)
	var keys []string
	for k, p := range tk.c.pos {
		if strings.HasPrefix(k, path+" (rotated") && !strings.HasPrefix(p.Head, "done ") && p.Head != "" {
			keys = append(keys, filepath.Base(k))
		}
	}
	sort.Strings(keys)
	if len(keys) != 2 {
		t.Errorf("rotated files followed under %q, want two keys", keys)
	}
	tk.restart(t, func() {
		wa.WriteString("a3\n")
		appendFile(t, filepath.Join(dir, "access.log.1"), "b3\n")
	})
	tk.tick(t) // (the files a start takes up are read from the next Tick)
	tk.tl.Close()
	sort.Strings(tk.c.lines)
	if got, want := strings.Join(tk.c.lines, "|"), "a1|a2|a3|b1|b2|b3|c1"; got != want {
		t.Fatalf("read %q, want %q", got, want)
	}
}
