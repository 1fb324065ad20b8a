package tail_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/ingest/tail"
)

// A pattern that names nothing run follows says why: a directory, only
// rotated or compressed files, a missing directory, or nothing at all.
func TestUnfollowedSaysWhy(t *testing.T) {
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	old := filepath.Join(dir, "old")
	for _, d := range []string{logs, old, filepath.Join(dir, "sub", "a")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"logs/access.log", "logs/access.log.1", "old/access.log.2.gz", "old/access.log-20261130"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		pattern string
		want    string // "" when followed
	}{
		{filepath.Join(logs, "access.log"), ""},
		{filepath.Join(logs, "*"), ""},
		{filepath.Join(logs, "access.log*"), ""},
		{logs, "is a directory: name its files"},
		{filepath.Join(old, "*.gz"), "matches only rotated or compressed files (1, such as access.log.2.gz)"},
		{filepath.Join(old, "*"), "matches only rotated or compressed files (2,"},
		{filepath.Join(dir, "sub", "*"), "matches only directories"},
		{filepath.Join(logs, "*.json"), "matches no file"},
		{filepath.Join(dir, "nowhere", "*.log"), "its directory " + filepath.Join(dir, "nowhere") + " cannot be read"},
		{filepath.Join(dir, "nowhere", "access.log"), "cannot be read"},
	} {
		got := tail.Unfollowed(c.pattern)
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("Unfollowed(%q) = %q, want %q", c.pattern, got, c.want)
		}
	}
}

// Files beside the log whose names are no rotation's (an editor's swap
// file, a tool's counter) are not its history: never read as rotated,
// while a real rotated sibling that appears is.
func TestFilesBesideTheLogThatAreNoRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(path, "live 1\n")
	tl := tail.New(tail.Options{Patterns: []string{path}})
	var got []string
	emit := func(l *tail.Line) error {
		if !l.PositionOnly {
			got = append(got, string(l.Text))
		}
		return nil
	}
	ctx, now := context.Background(), time.Now()
	if err := tl.Tick(ctx, now, emit); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"access.log.count", "access.log.swp", "access.log.tmp", "access.log-old"} {
		write(filepath.Join(dir, name), name+" line\n")
	}
	for i := range 3 {
		if err := tl.Tick(ctx, now.Add(time.Duration(i+1)*time.Minute), emit); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(got) != "[live 1]" {
		t.Errorf("read %q, want only the live line", got)
	}
}
