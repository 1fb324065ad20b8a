package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spraywatch/spraywatch/ingest/loggen"
)

// The bundled demo log is the demo's generator output, byte for byte, and
// replaying it prints what the README shows under "What the demo shows".
// To rebuild it after a change to the generator:
//
//	go run ./cmd/spraywatch demo --write /tmp/demo && gzip -9 -n -c /tmp/demo/access.log > testdata/demo/access.log.gz
//
// and paste the replay's table into the README.
func TestBundledDemoLog(t *testing.T) {
	const bundled = "../../testdata/demo/access.log.gz"
	f, err := os.Open(bundled)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if _, err := loggen.Write(&want, demoOptions(&demoFlags{hours: 6, clients: 200, lines: 40_000})); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("%s (%d bytes) is not what the demo writes (%d bytes); rebuild it as this test's comment says", bundled, len(got), want.Len())
	}

	code, out, stderr := runCLI(t, "replay", "--config", "../../testdata/demo/spraywatch.yml", bundled)
	if code != 0 {
		t.Fatalf("replay of the bundled log: exit %d: %s", code, stderr)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(readme)
	at := strings.Index(doc, "## What the demo shows")
	if at < 0 {
		t.Fatal(`README has no "What the demo shows" section`)
	}
	block := doc[at:]
	if a := strings.Index(block, "```\n"); a >= 0 {
		block = block[a+4:]
		block = block[:strings.Index(block, "```")]
	}
	for _, line := range strings.Split(out, "\n") {
		if line != "" && !strings.Contains(block, line+"\n") {
			t.Errorf("the README's demo output lacks this line the replay printed:\n%s", line)
		}
	}
	at = strings.Index(stderr, "source api-nginx:")
	if at < 0 {
		t.Fatalf("the replay printed no summary for api-nginx:\n%s", stderr)
	}
	summary := stderr[at:]
	summary = summary[:strings.Index(summary, "\n")+1]
	if !strings.Contains(block, summary) {
		t.Errorf("the README's demo output lacks the replay's summary line:\n%s", summary)
	}
}

// explain follows evidence across rotation: to the renamed file by its
// inode, to a compressed copy by content (the line must name one of the
// incident's addresses), and never shows the line at the same offset of
// another file that took the name.
func TestExplainAfterRotation(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "access.log")
	f, _ := os.Open("../../testdata/demo/access.log.gz")
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(zr)
	f.Close()
	if err := os.WriteFile(log, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, _ := os.ReadFile("../../testdata/demo/spraywatch.yml")
	os.WriteFile(filepath.Join(dir, "spraywatch.yml"), cfg, 0o644)
	db := filepath.Join(dir, "case.db")
	if code, _, stderr := runCLI(t, "replay", "--config", filepath.Join(dir, "spraywatch.yml"), "--db", db, log); code != 0 {
		t.Fatalf("replay: exit %d: %s", code, stderr)
	}
	if code, _, stderr := runCLI(t, "explain", "--db", db, "999"); code != exitRuntime || !strings.Contains(stderr, "incident 999: not found") || !strings.Contains(stderr, "'spraywatch alerts' lists") {
		t.Errorf("explain of an incident not held: exit %d, stderr %q; want 1, naming it and pointing to alerts", code, stderr)
	}
	explain := func() string {
		t.Helper()
		code, out, stderr := runCLI(t, "explain", "--db", db, "1") // the spray
		if code != 0 {
			t.Fatalf("explain: exit %d: %s", code, stderr)
		}
		return out
	}
	evidence := func(out string) []string {
		return strings.Split(strings.TrimSpace(out[strings.Index(out, "\nevidence ("):]), "\n")[1:]
	}
	lines := evidence(explain())
	if len(lines) == 0 || !strings.Contains(lines[0], "203.0.113.66") {
		t.Fatalf("no spray evidence before rotation: %v", lines)
	}
	// Rotated by rename; a new file takes the name, its lines of another address.
	os.Rename(log, log+".1")
	os.WriteFile(log, []byte(strings.Repeat(`198.51.100.1 - - [27/Nov/2026:07:00:00 +0000] "GET /api/v1/clients/x/resource HTTP/1.1" 200 5 "-" "c" key=sk_live_aaaa rt=0.001`+"\n", 60000)), 0o644)
	for _, l := range evidence(explain()) {
		if !strings.Contains(l, log+".1 (byte") || !strings.Contains(l, "203.0.113.66") {
			t.Fatalf("after a rename, evidence line not read from access.log.1: %s", l)
		}
	}
	// access.log.1 compressed (logrotate's delaycompress, a cycle later).
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(data)
	zw.Close()
	os.WriteFile(log+".2.gz", gz.Bytes(), 0o644)
	os.Remove(log + ".1")
	for _, l := range evidence(explain()) {
		if !strings.Contains(l, log+".2.gz (compressed since; matched by content) (byte") || !strings.Contains(l, "203.0.113.66") {
			t.Fatalf("after compression, evidence line not matched in access.log.2.gz: %s", l)
		}
	}
	// And gone: unavailable, saying why, never the new file's line.
	os.Remove(log + ".2.gz")
	for _, l := range evidence(explain()) {
		if !strings.Contains(l, "unavailable: "+log+" has been rotated since") || strings.Contains(l, "198.51.100.1") {
			t.Fatalf("with the rotated file gone: %s", l)
		}
	}
}

// A signal stops a replay that is still spooling a pipe that never ends
// (tail -f access.log | spraywatch replay -), and leaves no spool behind.
func TestReplayStdinStopsOnSignal(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	var spool []string
	go func() {
		var err error
		spool, _, err = spoolStdin(ctx, []string{"-"}, pr)
		errc <- err
	}()
	// A line is read (Write returns once it was), then the next read waits.
	pw.Write([]byte("203.0.113.66 - - [27/Nov/2026:02:00:00 +0000] \"GET / HTTP/1.1\" 401 5 \"-\" \"c\" key=sk_live_dead rt=0.001\n"))
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("spoolStdin after a signal: %v, want context.Canceled", err)
	}
	if spool != nil {
		t.Errorf("spool files returned after a signal: %v", spool)
	}
}
