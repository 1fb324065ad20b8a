package main

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
)

// A source whose path matches no file makes /healthz answer 503 naming it
// and sets spraywatch_health_failing{check="file:<source>"}, so that an
// alert on the gauge catches a wrong path; once the file exists and is
// read, both clear.
func TestRunHealthMissingFile(t *testing.T) {
	e, base := rtHealthEnv(t)
	d := e.start()
	const gauge = `spraywatch_health_failing{check="file:api"}`
	waitHealth(t, d, base, 503, "source api")
	waitMetric(t, base, gauge, "1")
	w := e.create("logs/access.log")
	e.write(w, 10)
	e.waitCounted(d, e.written)
	waitHealth(t, d, base, 200)
	waitMetric(t, base, gauge, "0")
	e.stop(d)
}

// A glob that matches only rotated files names no log run follows:
// /healthz says so, and why, until a live file appears.
func TestRunHealthGlobOfRotatedFiles(t *testing.T) {
	e, base := rtHealthEnvFor(t, "logs/access.log*")
	e.create("logs/access.log.1.gz")
	d := e.start()
	waitHealth(t, d, base, 503, "source api: no file matches its paths (", "access.log* matches only rotated or compressed files (1, such as access.log.1.gz)")
	w := e.create("logs/access.log")
	e.write(w, 10)
	e.waitCounted(d, e.written)
	waitHealth(t, d, base, 200)
	e.stop(d)
}

// waitMetric waits for the metric line name to hold value: gauges are set
// as the daemon looks at its readers, each tick, so they may trail
// /healthz (which looks when asked) by a tick.
func waitMetric(t *testing.T, base, name, value string) {
	t.Helper()
	m := ""
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if m = metricLine(t, base, name); strings.HasSuffix(m, " "+value) {
			return
		}
	}
	t.Errorf("%s = %q, want %s", name, m, value)
}

// The daemon's health names a real read-only refusal from SQLite as
// "read-only". (A file system cannot be made read-only under a running
// daemon's open database on a test machine: a remount is refused while
// files are open for writing, and modes do not bind descriptors already
// open or root.)
func TestHealthNamesReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := detect.Open(path, detect.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	ro, err := detect.Open(path, detect.StoreOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	a := detect.NewAttempts()
	a.Add(&ingest.Event{Time: time.Now(), Source: "api", IP: netip.MustParseAddr("10.0.0.1"), Identity: "c1", Outcome: ingest.Failure})
	if cause, _ := dbCause(ro.Flush(context.Background(), detect.Batch{Attempts: a})); cause != "read-only" {
		t.Errorf("a read-only refusal is named %q, want read-only", cause)
	}
}
