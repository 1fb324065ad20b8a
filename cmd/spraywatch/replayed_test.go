package main

import (
	"bytes"
	"compress/gzip"
	"database/sql"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/ingest/loggen"
)

// attemptsIn sums the counts of the attempts table of a case database.
func attemptsIn(t *testing.T, db string) int64 {
	t.Helper()
	d, err := sql.Open("sqlite3", "file:"+db+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var n int64
	if err := d.QueryRow(`SELECT COALESCE(SUM(count), 0) FROM attempts`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Replays into one database of a log as logrotate and the writer change it
// count each line once: a rotated log compressed since is the same content
// and skipped; a log that grew since is refused, naming the --since that
// reads only its later lines, which then counts exactly those.
func TestReplayRotatedAndGrownCountedOnce(t *testing.T) {
	start := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	dir, _ := writeCase(t, loggen.Options{Start: start, Duration: 6 * time.Hour, Clients: 100, Lines: 6000, Seed: 9, Spray: true})
	db := filepath.Join(dir, "case.db")
	args := []string{"replay", "--config", filepath.Join(dir, "spraywatch.yml"), "--db", db, "--no-progress"}
	if code, _, stderr := runCLI(t, args...); code != exitOK {
		t.Fatalf("first replay: exit %d: %s", code, stderr)
	}
	once := attemptsIn(t, db)
	// logrotate with compress: .2.gz -> .3.gz, .1 -> .2.gz, the log -> .1,
	// and a new log with the next day's lines.
	log := filepath.Join(dir, "access.log")
	must(t, os.Rename(log+".2.gz", log+".3.gz"))
	one, err := os.ReadFile(log + ".1")
	must(t, err)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(one)
	zw.Close()
	must(t, os.WriteFile(log+".2.gz", gz.Bytes(), 0o644))
	must(t, os.Remove(log+".1"))
	must(t, os.Rename(log, log+".1"))
	var next bytes.Buffer
	if _, err := loggen.Write(&next, loggen.Options{Start: start.Add(24 * time.Hour), Duration: 2 * time.Hour, Clients: 100, Lines: 2000, Seed: 10}); err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(next.String(), "\n")
	half := len(lines) / 2
	must(t, os.WriteFile(log, []byte(strings.Join(lines[:half], "")), 0o644))
	code, _, stderr := runCLI(t, args...)
	if code != exitOK || strings.Count(stderr, "was already replayed") != 3 {
		t.Fatalf("after rotation: exit %d, want the three rotated files skipped: %s", code, stderr)
	}
	afterRotation := attemptsIn(t, db)
	if afterRotation <= once {
		t.Fatalf("after rotation: %d attempts, %d before: the new log was not counted", afterRotation, once)
	}
	// The writer goes on: the log grew since it was replayed.
	f, err := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	f.WriteString(strings.Join(lines[half:], ""))
	f.Close()
	code, _, stderr = runCLI(t, args...)
	m := regexp.MustCompile(`--since (\S+) `).FindStringSubmatch(stderr)
	if code != exitRuntime || !strings.Contains(stderr, "grew since") || m == nil {
		t.Fatalf("grown log: exit %d, stderr %q; want it refused with a --since", code, stderr)
	}
	if n := attemptsIn(t, db); n != afterRotation {
		t.Fatalf("a refused replay wrote %d attempts", n-afterRotation)
	}
	if code, _, stderr := runCLI(t, append(args, "--since", m[1])...); code != exitOK {
		t.Fatalf("replay --since %s: exit %d: %s", m[1], code, stderr)
	}
	// Exactly the later lines are counted: a replay of everything into a
	// new database gives the same total.
	fresh := filepath.Join(t.TempDir(), "fresh.db")
	if code, _, stderr := runCLI(t, "replay", "--config", filepath.Join(dir, "spraywatch.yml"), "--db", fresh, "--no-progress"); code != exitOK {
		t.Fatalf("fresh replay: exit %d: %s", code, stderr)
	}
	if got, want := attemptsIn(t, db), attemptsIn(t, fresh); got != want {
		t.Errorf("after the replays: %d attempts, a replay of it all into a new database %d", got, want)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
