package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/ingest/loggen"
)

// sampleConfig writes a config for the sample logs of testdata/config with
// the given log_format, its secret in a directory that does not exist.
func sampleConfig(t *testing.T, layout string) (cfg, secret string) {
	t.Helper()
	dir := t.TempDir()
	secret = filepath.Join(dir, "state", "fingerprint.key")
	body := "database: " + filepath.Join(dir, "state", "spraywatch.db") + "\nfingerprint_secret_file: " + secret + `
sources:
  - name: api
    format: nginx
    log_format: '` + layout + `'
    credential: {field: api_key_prefix, kind: prefix}
    identity: {path: ["/api/v1/clients/{identity}/"]}
    timezone: UTC
`
	cfg = filepath.Join(dir, "spraywatch.yml")
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg, secret
}

const sampleLayout = `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" key=$api_key_prefix rt=$request_time`

// A replay whose layout fits no line says so prominently and exits 1, not
// 0 with "no incidents"; one that skips most lines warns and exits 0.
func TestReplayBlindSource(t *testing.T) {
	sample, _ := filepath.Abs("../../testdata/config/logs/api.log")
	cut, _ := filepath.Abs("../../testdata/config/logs/api-mostly-cut.log")
	missingQuote := strings.Replace(sampleLayout, `"$request"`, `"$request`, 1)
	tests := []struct {
		name, layout, file string
		code               int
		want               []string
	}{
		{"layout fits", sampleLayout, sample, 0, nil},
		{"one quote missing", missingQuote, sample, 1, []string{"WARNING: source api is blind: none of its 30 lines fits its layout (30 bad_status)",
			"source(s) api gave no event"}},
		{"most lines cut", sampleLayout, cut, 0, []string{"WARNING: source api skipped 20 of 30 lines (20 layout_mismatch)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _ := sampleConfig(t, tt.layout)
			code, _, stderr := runCLI(t, "replay", "--config", cfg, tt.file)
			if code != tt.code {
				t.Errorf("exit %d, want %d:\n%s", code, tt.code, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if tt.want == nil && strings.Contains(stderr, "WARNING") {
				t.Errorf("a warning for a source that reads well:\n%s", stderr)
			}
		})
	}
}

// Without --db, replay neither creates nor needs the daemon's secret or
// state directory, and says it used a one-off secret.
func TestReplayLeavesDaemonStateAlone(t *testing.T) {
	sample, _ := filepath.Abs("../../testdata/config/logs/api.log")
	cfg, secret := sampleConfig(t, sampleLayout)
	code, _, stderr := runCLI(t, "replay", "--config", cfg, sample)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Dir(secret)); !os.IsNotExist(err) {
		t.Errorf("replay created the state directory %s (%v)", filepath.Dir(secret), err)
	}
	if !strings.Contains(stderr, "fingerprint_secret_file "+secret+" does not exist; this replay fingerprints whole keys with a one-off secret") {
		t.Errorf("replay does not say it used a one-off secret:\n%s", stderr)
	}
	// A secret that cannot be read (here a directory, which even root
	// cannot read as a file) is no reason to stop a forensic replay.
	os.MkdirAll(secret, 0o700)
	code, _, stderr = runCLI(t, "replay", "--config", cfg, sample)
	if code != 0 || !strings.Contains(stderr, "fingerprint_secret_file "+secret+" cannot be read (is a directory); this replay fingerprints whole keys with a one-off secret") {
		t.Errorf("unreadable secret: exit %d:\n%s", code, stderr)
	}
}

// replay - reads standard input, plain or gzip.
func TestReplayStdin(t *testing.T) {
	start := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	dir, _ := writeCase(t, loggen.Options{Start: start, Duration: 6 * time.Hour, Clients: 50, Lines: 3000, Seed: 5, Spray: true})
	for _, name := range []string{"access.log", "access.log.2.gz"} {
		data, _ := os.ReadFile(filepath.Join(dir, name))
		f, err := os.CreateTemp(t.TempDir(), "stdin")
		if err != nil {
			t.Fatal(err)
		}
		f.Write(data)
		f.Seek(0, 0)
		old := os.Stdin
		os.Stdin = f
		code, out, stderr := runCLI(t, "replay", "--config", filepath.Join(dir, "spraywatch.yml"), "-")
		os.Stdin = old
		f.Close()
		if code != 0 || !strings.Contains(stderr, "source api-nginx: 1 file,") || out == "" {
			t.Errorf("%s on stdin: exit %d\n%s\n%s", name, code, out, stderr)
		}
	}
}

// File errors say what happened, once, and "the results cover the rest"
// only when there is a rest.
func TestReplayFileErrors(t *testing.T) {
	cfg, _ := sampleConfig(t, sampleLayout)
	missing := filepath.Join(t.TempDir(), "absent.log")
	code, _, stderr := runCLI(t, "replay", "--config", cfg, missing)
	if code != 1 || !strings.Contains(stderr, "spraywatch: "+missing+" does not exist\n") || !strings.Contains(stderr, "no file could be read (1 tried)") ||
		strings.Contains(stderr, "cover the rest") || strings.Count(stderr, missing) != 1 {
		t.Errorf("exit %d:\n%s", code, stderr)
	}
}

// The root --log-format (spraywatch's own log) works before and after the
// command; the layout of replayed lines is --layout.
func TestGlobalFlagsAnywhere(t *testing.T) {
	sample, _ := filepath.Abs("../../testdata/config/logs/api.log")
	for _, args := range [][]string{
		{"--log-format", "json", "replay", "--layout", sampleLayout, "--identity-path", "/api/v1/clients/{identity}/", "--credential-field", "api_key_prefix", sample},
		{"replay", "--log-format", "json", "--layout", sampleLayout, "--identity-path", "/api/v1/clients/{identity}/", "--credential-field", "api_key_prefix", sample},
		{"replay", "--layout", sampleLayout, "--identity-path", "/api/v1/clients/{identity}/", "--credential-field", "api_key_prefix", sample, "--log-level", "debug"},
	} {
		if code, _, stderr := runCLI(t, args...); code != 0 || strings.Contains(stderr, "WARNING") {
			t.Errorf("%q: exit %d:\n%s", args, code, stderr)
		}
	}
	code, _, stderr := runCLI(t, "replay", "--log-format", sampleLayout, sample)
	if code != exitUsage || !strings.Contains(stderr, "must be text or json") || !strings.Contains(stderr, "replay --layout") {
		t.Errorf("a layout given to --log-format: exit %d:\n%s", code, stderr)
	}
}

func TestUsageErrorsSuggest(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"replya"}, `unknown command "replya" for "spraywatch"; did you mean "replay"?`},
		{[]string{"alerts", "tset"}, `unknown command "tset" for "spraywatch alerts"; did you mean "test"?`},
		{[]string{"alerts", "--db", "x.db", "--kind", "spary"}, `--kind: "spary": must be one of spray,`},
		{[]string{"alerts", "--db", "x.db", "--kind", "spary"}, `(did you mean spray?)`},
		{[]string{"alerts", "--db", "x.db", "--kind", "no_rate_limti"}, `(did you mean no_rate_limit?)`},
		{[]string{"alerts", "--db", "x.db", "--state", "opne"}, `--state: "opne": must be one of open, closed (did you mean open?)`},
		{[]string{"alerts"}, "--db or --config is required"},
		{[]string{"explain", "--db", "x.db", "one"}, `INCIDENT_ID: "one": not an incident number`},
		{[]string{"demo", "--all-attacks", "--hours", "6"}, "--all-attacks needs at least 30 hours"},
	}
	for _, tt := range tests {
		code, _, stderr := runCLI(t, tt.args...)
		if code != exitUsage || !strings.Contains(stderr, tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tt.args, code, stderr, exitUsage, tt.want)
		}
	}
}

// alerts and explain find the database through --config.
func TestAlertsAndExplainTakeConfig(t *testing.T) {
	start := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	dir, _ := writeCase(t, loggen.Options{Start: start, Duration: 6 * time.Hour, Clients: 50, Lines: 3000, Seed: 5, Spray: true})
	cfg := filepath.Join(dir, "spraywatch.yml")
	if code, _, stderr := runCLI(t, "replay", "--config", cfg, "--db", filepath.Join(dir, "demo.db")); code != 0 {
		t.Fatalf("replay: exit %d: %s", code, stderr)
	}
	code, out, stderr := runCLI(t, "alerts", "--config", cfg, "--kind", "spray")
	if code != 0 || !strings.Contains(out, "spray") || strings.Contains(out, "enumeration_oracle") {
		t.Errorf("alerts --config: exit %d\n%s%s", code, out, stderr)
	}
	code, out, stderr = runCLI(t, "explain", "--config", cfg, "1")
	if code != 0 || !strings.Contains(out, "evidence (") {
		t.Errorf("explain --config: exit %d\n%s%s", code, out, stderr)
	}
}

// Evidence lines show credentials as the incident does: a logged prefix as
// itself, a whole key as its fingerprint label when the secret is at hand;
// anything else secret-looking stays masked.
func TestRedactEvidence(t *testing.T) {
	secret := []byte(strings.Repeat("s", 32))
	key := "sk_live_51HxAbCdEfGhIjKlMnOpQrStUv"
	label := ingest.Fingerprint(secret, []byte(key))
	other := "sk_live_99ZzYyXxWwVvUuTtSsRrQqPpOo"
	tests := []struct {
		name, line string
		labels     []string
		secret     []byte
		want       []string
		never      []string
	}{
		{"prefix label", `1.2.3.4 "GET /x" 401 key=sk_live_dead rt=0.1`, []string{"sk_live_dead"}, nil, []string{"key=sk_live_dead rt=0.1"}, nil},
		{"prefix not in the incident", `1.2.3.4 "GET /x" 401 key=sk_live_beef rt=0.1`, []string{"sk_live_dead"}, nil, nil, []string{"sk_live_beef"}},
		{"whole key with secret", `1.2.3.4 "GET /x" 401 "Bearer ` + key + `"`, []string{label}, secret, []string{label}, []string{key}},
		{"whole key without secret", `1.2.3.4 "GET /x" 401 "Bearer ` + key + `"`, []string{label}, nil, nil, []string{key}},
		{"another whole key", `1.2.3.4 x_api_key=` + other + ` ` + key, []string{label}, secret, []string{label}, []string{other, key}},
	}
	for _, tt := range tests {
		got := redactEvidence([]byte(tt.line), tt.labels, tt.secret)
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", tt.name, got, w)
			}
		}
		for _, n := range tt.never {
			if strings.Contains(got, n) {
				t.Errorf("%s: %q shows %q", tt.name, got, n)
			}
		}
	}
}

// demo without --keep names no path it is about to delete.
func TestDemoPrintsNoDoomedPaths(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"demo", "--lines", "2000", "--hours", "2"}, &out, &errb); code != 0 {
		t.Fatalf("demo: exit %d: %s", code, errb.String())
	}
	if strings.Contains(out.String()+errb.String(), os.TempDir()) {
		t.Errorf("demo printed a temporary path it removes:\n%s", errb.String())
	}
}

// check --sample judges a source against a log it is not configured with.
func TestCheckSample(t *testing.T) {
	good, _ := filepath.Abs("../../testdata/config/check-ok.good.yml")
	cut, _ := filepath.Abs("../../testdata/config/logs/api-mostly-cut.log")
	var out, errb bytes.Buffer
	g := &globals{stdout: &out, stderr: &errb, logLevel: "warn", logFormat: "text"}
	err := runCheck(context.Background(), g, &checkFlags{config: good, sample: cut}, checkNow)
	if err == nil || !strings.Contains(out.String(), "error: most lines do not fit: 20 of 30 skipped") {
		t.Errorf("err %v:\n%s", err, out.String())
	}
	if code, _, stderr := runCLI(t, "explain", "--db", filepath.Join(t.TempDir(), "absent.db"), "1"); code != exitRuntime || strings.Count(stderr, "absent.db") != 1 {
		t.Errorf("explain on a missing database: exit %d: %s", code, stderr)
	}
}

// A replay a signal ends says so in words, not as "context canceled".
func TestReplayInterrupted(t *testing.T) {
	start := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	dir, _ := writeCase(t, loggen.Options{Start: start, Duration: 6 * time.Hour, Clients: 50, Lines: 3000, Seed: 5, Spray: true})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"replay", "--config", filepath.Join(dir, "spraywatch.yml"), filepath.Join(dir, "access.log")}, &out, &errb)
	if code != exitRuntime || !strings.Contains(errb.String(), "spraywatch: interrupted by a signal") || strings.Contains(errb.String(), "context canceled") {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}

// A replay into a kept database that a signal stops after writing counts
// marks its files, so a later replay of them into that database is refused
// instead of counting their first part twice; --force still reads them.
func TestReplayInterruptedRefusesRerun(t *testing.T) {
	start := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	dir, _ := writeCase(t, loggen.Options{Start: start, Duration: 6 * time.Hour, Clients: 200, Lines: 20000, Seed: 5, Spray: true})
	db := filepath.Join(dir, "case.db")
	args := []string{"replay", "--config", filepath.Join(dir, "spraywatch.yml"), "--db", db, "--no-progress"} // the log and its rotated siblings
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rows, hook := replayBatchRows, replaySentHook
	replayBatchRows, replaySentHook = 200, func(sent int) {
		if sent == 2 {
			cancel()
		}
	}
	var out, errb bytes.Buffer
	code := run(ctx, args, &out, &errb)
	replayBatchRows, replaySentHook = rows, hook
	if code != exitRuntime || !strings.Contains(errb.String(), "holds the counts of part of the replayed files; a later replay of them into it is refused") {
		t.Fatalf("interrupted replay: exit %d, stderr %q", code, errb.String())
	}
	code, _, stderr := runCLI(t, args...)
	if code != exitRuntime || !strings.Contains(stderr, "stopped before the end of this file") || !strings.Contains(stderr, "access.log") {
		t.Fatalf("replay again: exit %d, stderr %q; want it refused, naming the file", code, stderr)
	}
	if code, out, stderr := runCLI(t, append(args, "--force")...); code != exitOK || !strings.Contains(out, "spray") {
		t.Fatalf("replay --force: exit %d, stderr %q, out %q", code, stderr, out)
	}
}

// A source that logs failed attempts but no success (an app logging only
// its refusals) is warned about by replay and check: owners' mistakes and
// compromises cannot be judged there.
func TestFailuresOnlySourceIsWarned(t *testing.T) {
	start := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	dir, _ := writeCase(t, loggen.Options{Start: start, Duration: 6 * time.Hour, Clients: 50, Lines: 3000, Seed: 5})
	data, err := os.ReadFile(filepath.Join(dir, "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	// Every request refused, as an app logging only its refusals shows.
	refused := strings.ReplaceAll(string(data), `" 200 `, `" 401 `)
	if strings.Count(refused, `" 401 `) < 50 {
		t.Fatalf("only %d refused lines", strings.Count(refused, `" 401 `))
	}
	log := filepath.Join(dir, "refusals.log")
	os.WriteFile(log, []byte(refused), 0o644)
	cfg := filepath.Join(dir, "spraywatch.yml")
	want := "failed attempts and not one success"
	if _, _, stderr := runCLI(t, "replay", "--config", cfg, "--no-progress", log); !strings.Contains(stderr, "WARNING: source api-nginx logged") || !strings.Contains(stderr, want) {
		t.Errorf("replay of failures only: stderr %q, want the warning", stderr)
	}
	if _, out, stderr := runCLI(t, "check", "--config", cfg, "--sample", log); !strings.Contains(out+stderr, want) {
		t.Errorf("check of failures only: %q, want the warning", out+stderr)
	}
	if _, _, stderr := runCLI(t, "replay", "--config", cfg, "--no-progress", filepath.Join(dir, "access.log")); strings.Contains(stderr, want) {
		t.Errorf("replay of an access log with successes warned: %q", stderr)
	}
}

// A named pipe (a shell's <(zcat x.log.gz)) is read like standard input.
func TestReplayNamedPipe(t *testing.T) {
	start := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	dir, _ := writeCase(t, loggen.Options{Start: start, Duration: 6 * time.Hour, Clients: 50, Lines: 3000, Seed: 5, Spray: true})
	data, err := os.ReadFile(filepath.Join(dir, "access.log.2.gz"))
	if err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(t.TempDir(), "pipe")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("no named pipes here: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err == nil {
			_, err = w.Write(data)
			w.Close()
		}
		done <- err
	}()
	code, out, stderr := runCLI(t, "replay", "--config", filepath.Join(dir, "spraywatch.yml"), fifo)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if code != 0 || !strings.Contains(stderr, "source api-nginx: 1 file,") || out == "" || strings.Contains(stderr, "illegal seek") {
		t.Errorf("replay of a pipe: exit %d\n%s\n%s", code, out, stderr)
	}
}
