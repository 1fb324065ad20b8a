package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
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
