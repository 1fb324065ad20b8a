package main

// /healthz and the metrics under the faults a database meets while the
// daemon runs (disk full, locked by another process, corrupt),
// and a source whose layout does not fit its log. Each fault must turn
// /healthz to 503 naming it, show in spraywatch_health_failing, be logged
// once and then summarised, and lose no line: once the fault is gone the
// stored counts add up to exactly the lines written.

import (
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

// rtHealthEnv is an rtEnv whose daemon serves metrics.
func rtHealthEnv(t *testing.T) (*rtEnv, string) {
	t.Helper()
	return rtHealthEnvFor(t, "logs/access.log")
}

// rtHealthEnvFor is rtHealthEnv following pattern.
func rtHealthEnvFor(t *testing.T, pattern string) (*rtEnv, string) {
	t.Helper()
	e := newRTEnv(t, pattern, "3s")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.config, append(cfg, fmt.Sprintf("metrics_listen: %s\n", addr)...), 0o644); err != nil {
		t.Fatal(err)
	}
	return e, "http://" + addr
}

// waitHealth polls /healthz until its code is want and its body holds
// every substring; it returns the body.
func waitHealth(t *testing.T, d *rtDaemon, base string, want int, subs ...string) string {
	t.Helper()
	var body string
	var code int
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			continue // not listening yet
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code, body = resp.StatusCode, string(b)
		ok := code == want
		for _, s := range subs {
			ok = ok && strings.Contains(body, s)
		}
		if ok {
			return body
		}
	}
	t.Fatalf("/healthz = %d %q, want %d with %q; daemon log:\n%s", code, body, want, subs, d.stderr.String())
	return ""
}

func metricLine(t *testing.T, base, name string) string {
	t.Helper()
	_, body := rtGet(t, base+"/metrics")
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, name) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// mountTmpfs mounts a small tmpfs (root only; CI runs as root).
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount tmpfs: %v: %s", err, out)
		}
		t.Skipf("mount tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
}

func TestRunHealthDatabaseFaults(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tmpfs bool
		// fault starts the fault and returns what ends it.
		fault func(t *testing.T, e *rtEnv) (end func())
		want  string
	}{
		{"disk full", true, func(t *testing.T, e *rtEnv) func() {
			filler := e.path("state/filler")
			exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=64k").Run() // fills the file system
			return func() { os.Remove(filler) }
		}, "disk full"},
		{"locked by another process", false, func(t *testing.T, e *rtEnv) func() {
			py := exec.Command("python3", "-c", `import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
c.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()`, e.path("state/spraywatch.db"))
			in, err := py.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			out, err := py.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := py.Start(); err != nil {
				if os.Getenv("CI") == "true" {
					t.Fatal(err)
				}
				t.Skip(err)
			}
			buf := make([]byte, 7)
			if _, err := out.Read(buf); err != nil {
				t.Fatal(err)
			}
			return func() { in.Close(); py.Wait() }
		}, "locked by another process"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, base := rtHealthEnv(t)
			if tc.tmpfs {
				mountTmpfs(t, e.path("state"), "4m")
			}
			w := e.create("logs/access.log")
			e.write(w, 20)
			d := e.start()
			e.waitCounted(d, e.written)
			waitHealth(t, d, base, 200)
			end := tc.fault(t, e)
			for i := 0; i < 20; i++ {
				e.write(w, 5)
				time.Sleep(20 * time.Millisecond)
			}
			body := waitHealth(t, d, base, 503, "database", tc.want)
			t.Logf("/healthz under %s:\n%s", tc.name, body)
			t.Logf("metrics under %s:\n%s\n%s", tc.name, metricLine(t, base, `spraywatch_health_failing{check="database"}`),
				metricLine(t, base, "spraywatch_database_write_errors_total"))
			if m := metricLine(t, base, `spraywatch_health_failing{check="database"}`); !strings.HasSuffix(m, " 1") {
				t.Errorf("spraywatch_health_failing{check=database} = %q, want 1", m)
			}
			time.Sleep(1500 * time.Millisecond) // retried meanwhile: logged once, then summarised
			end()
			waitHealth(t, d, base, 200)
			e.waitCounted(d, e.written)
			e.stop(d)
			e.check()
			log := d.stderr.String()
			if n := strings.Count(log, "failing: "+tc.want); n != 1 {
				t.Errorf("the failure was logged %d times, want once then summarised:\n%s", n, log)
			}
			if !strings.Contains(log, "works again") {
				t.Errorf("the recovery was not logged:\n%s", log)
			}
		})
	}
}

// A corrupt database stops reading without losing a line, says what to
// do, and the daemon starts again by itself once the file is replaced:
// the new database gets exactly the lines written after the last good
// write.
func TestRunHealthCorruptDatabase(t *testing.T) {
	e, base := rtHealthEnv(t)
	w := e.create("logs/access.log")
	e.write(w, 20)
	d := e.start()
	e.waitCounted(d, e.written)
	before := e.counted()
	db := e.path("state/spraywatch.db")
	// Move every page into the database file, overwrite all but the
	// first with garbage, then write through another connection so that
	// the daemon's cache is dropped and it reads the garbage.
	other, err := sql.Open("sqlite3", "file:"+db+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(db, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	f.WriteAt([]byte(strings.Repeat("\xa5", int(max(0, fi.Size()-4096)))), 4096)
	f.Close()
	if _, err := other.Exec(`PRAGMA user_version = 7`); err != nil {
		t.Fatal(err)
	}
	other.Close()
	e.write(w, 30)
	body := waitHealth(t, d, base, 503, "database", "corrupt")
	t.Logf("/healthz with a corrupt database:\n%s", body)
	t.Logf("metrics: %s", metricLine(t, base, `spraywatch_health_failing{check="database"}`))
	if !strings.Contains(d.stderr.String(), "move the file aside") {
		t.Errorf("the log does not say what to do:\n%s", d.stderr.String())
	}
	// Replace it: move it aside, as the message says.
	for _, suf := range []string{"", "-wal", "-shm"} {
		os.Rename(db+suf, filepath.Join(e.dir, "corrupt.db"+suf))
	}
	waitHealth(t, d, base, 200)
	e.write(w, 5)
	after := e.written - before
	e.waitCounted(d, after)
	e.stop(d)
	if got := e.counted(); got != after {
		t.Errorf("the new database counts %d lines, want the %d written after the last good write", got, after)
	}
}

// A source whose log_format does not fit its log (one quote missing) is
// blind: a WARN names it with a redacted sample, /healthz answers 503 for
// it, and spraywatch_health_failing shows it.
func TestRunHealthBlindSource(t *testing.T) {
	e, base := rtHealthEnv(t)
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	// A literal the log does not have (a unit after the request time).
	broken := strings.Replace(string(cfg), `rt=$request_time`, `rt=$request_time ms`, 1)
	if broken == string(cfg) {
		t.Fatalf("the test config has no rt=$request_time to change:\n%s", cfg)
	}
	if err := os.WriteFile(e.config, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	w := e.create("logs/access.log")
	e.write(w, 40)
	d := e.start()
	body := waitHealth(t, d, base, 503, "source api: blind")
	t.Logf("/healthz with a layout that does not fit:\n%s", body)
	if strings.Contains(body, "sk_live_dead") {
		t.Errorf("/healthz shows a raw key: %s", body)
	}
	if m := metricLine(t, base, `spraywatch_health_failing{check="blind:api"}`); !strings.HasSuffix(m, " 1") {
		t.Errorf("spraywatch_health_failing{check=blind:api} = %q, want 1", m)
	}
	e.stop(d)
	log := d.stderr.String()
	if !strings.Contains(log, "level=WARN") || !strings.Contains(log, "source is blind") || !strings.Contains(log, "source=api") {
		t.Errorf("no WARN naming the blind source:\n%s", log)
	}
	if strings.Contains(log, "sk_live_dead") {
		t.Errorf("the log shows a raw key")
	}
}

// A source whose every line is left out by its routes is blind
// after health.blind_after: the WARN and /healthz name why and show a
// redacted line of it, not an empty sample.
func TestRunHealthBlindByFilters(t *testing.T) {
	e, base := rtHealthEnv(t)
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	// The identity template of another version of the API: every line is
	// outside the routes it names.
	filtered := strings.Replace(string(cfg), `identity: {path: ["/api/v1/`, `identity: {path: ["/api/v2/`, 1)
	if filtered == string(cfg) {
		t.Fatalf("the test config has no /api/v1/ identity path to change:\n%s", cfg)
	}
	filtered += "health: {blind_after: 1s}\n"
	if err := os.WriteFile(e.config, []byte(filtered), 0o644); err != nil {
		t.Fatal(err)
	}
	w := e.create("logs/access.log")
	e.write(w, 40)
	d := e.start()
	body := waitHealth(t, d, base, 503, "source api: blind", "none produced an event", "a line left out: ", "/api/v1/clients/")
	t.Logf("/healthz with every line outside the routes:\n%s", body)
	e.stop(d)
	log := d.stderr.String()
	if !strings.Contains(log, "source is blind") || strings.Contains(log, `sample=""`) || !strings.Contains(log, "/api/v1/clients/") {
		t.Errorf("the blind WARN names no line left out:\n%s", log)
	}
	if strings.Contains(body+log, "sk_live_dead") {
		t.Errorf("a raw key is shown:\n%s\n%s", body, log)
	}
}
