package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/ingest/loggen"
)

// Replay shows a progress bar when stderr is a terminal, and stays silent
// when it is not.
func TestReplayProgressBarOnlyOnATerminal(t *testing.T) {
	start := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	dir, _ := writeCase(t, loggen.Options{Start: start, Duration: time.Hour, Clients: 20, Lines: 2000, Seed: 9})
	args := []string{"replay", "--config", filepath.Join(dir, "spraywatch.yml"), filepath.Join(dir, "access.log")}

	tty, err := integPTY()
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	defer tty.master.Close()
	read := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(tty.master) // ends when the slave side closes
		read <- string(b)
	}()
	var out bytes.Buffer
	if code := run(context.Background(), args, &out, tty.slave); code != 0 {
		t.Fatalf("replay on a terminal: exit %d", code)
	}
	tty.slave.Close()
	if got := <-read; !strings.Contains(got, "replaying") || !strings.Contains(got, "100%") {
		t.Errorf("no progress bar on a terminal; stderr was:\n%q", got)
	}

	code, _, stderr := runCLI(t, args...)
	if code != 0 || strings.Contains(stderr, "replaying") {
		t.Errorf("exit %d; a progress bar on a pipe:\n%s", code, stderr)
	}
}
