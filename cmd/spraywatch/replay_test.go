package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest/loggen"
)

// runCLI runs spraywatch with args and returns its exit code and output.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// writeCase writes a generated log split like logrotate leaves it
// (access.log.2.gz, access.log.1, access.log) and its config.
func writeCase(t *testing.T, o loggen.Options) (dir string, expect []loggen.Expect) {
	t.Helper()
	dir = t.TempDir()
	var buf bytes.Buffer
	expect, err := loggen.Write(&buf, o)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(buf.String(), "\n")
	third := len(lines) / 3
	parts := []string{strings.Join(lines[:third], ""), strings.Join(lines[third:2*third], ""), strings.Join(lines[2*third:], "")}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(parts[0]))
	zw.Close()
	for name, data := range map[string][]byte{"access.log.2.gz": gz.Bytes(), "access.log.1": []byte(parts[1]), "access.log": []byte(parts[2])} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := fmt.Sprintf(demoConfig, loggen.LogFormat, loggen.IdentityPath)
	if err := os.WriteFile(filepath.Join(dir, "spraywatch.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, expect
}

func decodeIncidents(t *testing.T, out string) []map[string]any {
	t.Helper()
	var incs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("output line is not JSON: %q: %v", sc.Text(), err)
		}
		incs = append(incs, m)
	}
	return incs
}

// TestReplayEndToEnd replays a generated 30-hour log, rotated and partly
// gzipped, with every kind of attack hidden in benign traffic, and checks
// the incidents' kinds and exact counts, then alerts and explain on the
// kept case.
func TestReplayEndToEnd(t *testing.T) {
	start := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	dir, expect := writeCase(t, loggen.Options{Start: start, Duration: 30 * time.Hour, Clients: 200, Lines: 60_000, Seed: 3,
		Spray: true, BruteForce: true, Stuffing: true, Distributed: true, LowAndSlow: true, NAT: true, Stale: true, Compromise: true})
	db := filepath.Join(dir, "case.db")
	files := []string{filepath.Join(dir, "access.log"), filepath.Join(dir, "access.log.1"), filepath.Join(dir, "access.log.2.gz")}
	code, out, stderr := runCLI(t, append([]string{"replay", "--config", filepath.Join(dir, "spraywatch.yml"), "--db", db, "--output", "json"}, files...)...)
	if code != 0 {
		t.Fatalf("replay exit %d: %s", code, stderr)
	}
	incs := decodeIncidents(t, out)
	byKind := map[string]map[string]any{}
	for _, inc := range incs {
		for _, key := range []string{"id", "kind", "severity", "source", "first_seen", "last_seen", "ips", "credentials", "identities", "identity_sample", "compromised", "attempts", "rule", "evidence"} {
			if v, ok := inc[key]; !ok || v == nil {
				t.Errorf("incident %v lacks key %q (or it is null)", inc["id"], key)
			}
		}
		kind := inc["kind"].(string)
		if byKind[kind] != nil {
			t.Errorf("two %s incidents; one attack must be one incident", kind)
		}
		byKind[kind] = inc
	}
	for _, e := range expect {
		inc := byKind[e.Kind]
		if inc == nil {
			t.Errorf("no %s incident; got %v", e.Kind, keys(byKind))
			continue
		}
		if got := int(inc["attempts"].(float64)); got != e.Attempts {
			t.Errorf("%s attempts = %d, want %d", e.Kind, got, e.Attempts)
		}
		if got := int(inc["identities"].(float64)); got != e.Identities {
			t.Errorf("%s identities = %d, want %d", e.Kind, got, e.Identities)
		}
		if got := len(inc["ips"].([]any)); got != e.IPs {
			t.Errorf("%s addresses = %d, want %d", e.Kind, got, e.IPs)
		}
	}
	if c := byKind["compromise"]; c == nil || c["severity"] != "critical" {
		t.Errorf("compromise after the spray is not critical: %v", c)
	}
	if byKind["enumeration_oracle"] == nil {
		t.Error("the 404-for-unknown-IDs route was not reported as an enumeration oracle")
	}
	if byKind["no_rate_limit"] == nil {
		t.Error("the never-throttling route was not reported as no_rate_limit")
	}
	if want := len(expect) + 2; len(incs) != want { // + the enumeration oracle and no_rate_limit findings
		t.Errorf("%d incidents, want %d: %v", len(incs), want, keys(byKind))
	}
	if !strings.Contains(stderr, "0 skipped") {
		t.Errorf("summary reports skipped lines:\n%s", stderr)
	}

	code, out, stderr = runCLI(t, "alerts", "--db", db, "--output", "json")
	if code != 0 || len(decodeIncidents(t, out)) != len(incs) {
		t.Fatalf("alerts exit %d, %d incidents (want %d): %s", code, len(decodeIncidents(t, out)), len(incs), stderr)
	}
	spray := byKind["spray"]
	code, out, stderr = runCLI(t, "explain", "--db", db, fmt.Sprint(int(spray["id"].(float64))))
	if code != 0 {
		t.Fatalf("explain exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "evidence (") || !strings.Contains(out, "203.0.113.66") || !strings.Contains(out, "access.log") {
		t.Errorf("explain shows no evidence lines:\n%s", out)
	}
	// The lines show the sprayed credential as the header does: by its
	// label, here the logged prefix.
	if !strings.Contains(out, "credentials  sk_live_dead\n") || !strings.Contains(out, "key=sk_live_dead rt=") {
		t.Errorf("explain does not show the credential the same way in its header and its lines:\n%s", out)
	}
	if !strings.Contains(out, "(byte ") {
		t.Errorf("explain does not say its offsets are bytes:\n%s", out)
	}

	// The same files again: already replayed, nothing counted twice.
	code, _, stderr = runCLI(t, append([]string{"replay", "--config", filepath.Join(dir, "spraywatch.yml"), "--db", db}, files...)...)
	if code != 0 || !strings.Contains(stderr, "already replayed") {
		t.Errorf("second replay: exit %d, stderr %s", code, stderr)
	}
	// A copy of a replayed file, and the same file through standard input,
	// are the same evidence: skipped too.
	last := files[len(files)-1]
	data, err := os.ReadFile(last)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "copy.log")
	if err := os.WriteFile(cp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, "replay", "--config", filepath.Join(dir, "spraywatch.yml"), "--db", db, cp)
	if code != 0 || !strings.Contains(stderr, "already replayed") {
		t.Errorf("replay of a copy: exit %d, stderr %s", code, stderr)
	}
	in, err := os.Open(last)
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdin
	os.Stdin = in
	code, _, stderr = runCLI(t, "replay", "--config", filepath.Join(dir, "spraywatch.yml"), "--db", db, "-")
	os.Stdin = old
	in.Close()
	if code != 0 || !strings.Contains(stderr, "already replayed") {
		t.Errorf("replay of the same log on standard input: exit %d, stderr %s", code, stderr)
	}
	store, err := detect.Open(db, detect.StoreOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	all, err := store.Incidents(context.Background(), detect.IncidentFilter{})
	if err != nil || len(all) != len(incs) {
		t.Errorf("after replaying the same files again the database holds %d incidents (err %v), want %d", len(all), err, len(incs))
	}
}

func keys(m map[string]map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestReplayBadInput: missing and truncated files are reported per file
// and the rest is still read; over-long lines are counted, not fatal.
func TestReplayBadInput(t *testing.T) {
	start := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	dir, _ := writeCase(t, loggen.Options{Start: start, Duration: 6 * time.Hour, Clients: 50, Lines: 3000, Seed: 5, Spray: true})
	good := filepath.Join(dir, "access.log.1")
	f, err := os.OpenFile(good, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(strings.Repeat("A", 2<<20) + "\n")                 // 2 MiB line
	f.WriteString("garbage \xff\xfe not a log line\x00\n")           // invalid UTF-8 and NUL
	f.WriteString(`127.0.0.1 - - [27/Nov/2026:99:99:99 +0000] "GET`) // truncated, no newline
	f.Close()
	gz, _ := os.ReadFile(filepath.Join(dir, "access.log.2.gz"))
	truncated := filepath.Join(dir, "cut.log.gz")
	os.WriteFile(truncated, gz[:len(gz)/2], 0o644)
	missing := filepath.Join(dir, "missing.log")

	code, out, stderr := runCLI(t, "replay", "--config", filepath.Join(dir, "spraywatch.yml"), "--output", "json",
		missing, truncated, good, filepath.Join(dir, "access.log"), filepath.Join(dir, "access.log.2.gz"))
	if code != 1 {
		t.Errorf("exit %d, want 1 (some files could not be read)", code)
	}
	for _, want := range []string{"missing.log", "cut.log.gz", "line_too_long", "layout_mismatch", "2 of 5 file(s) could not be read in full; the results cover the other 3"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not mention %q:\n%s", want, stderr)
		}
	}
	found := false
	for _, inc := range decodeIncidents(t, out) {
		found = found || (inc["kind"] == "spray" && inc["attempts"].(float64) == 150)
	}
	if !found {
		t.Errorf("the spray in the readable files was not found:\n%s", out)
	}
}

func TestReplayLockedDatabase(t *testing.T) {
	start := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	dir, _ := writeCase(t, loggen.Options{Start: start, Duration: time.Hour, Clients: 10, Lines: 100, Seed: 5})
	db := filepath.Join(dir, "busy.db")
	holder, err := detect.Open(db, detect.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	code, _, stderr := runCLI(t, "replay", "--config", filepath.Join(dir, "spraywatch.yml"), "--db", db, filepath.Join(dir, "access.log"))
	if code != 1 || !strings.Contains(stderr, "in use by another spraywatch") {
		t.Errorf("exit %d, stderr %q; want 1 and a clear 'in use' error", code, stderr)
	}
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yml")
	os.WriteFile(bad, []byte("rules: {spray: {min_identities: 0}}\n"), 0o644)
	tests := []struct {
		args []string
		want int
	}{
		{[]string{"replay", "--no-such-flag"}, exitUsage},
		{[]string{"nonsense"}, exitUsage},
		{[]string{"check", "--config", bad}, exitUsage},
		{[]string{"check", "--config", filepath.Join(dir, "absent.yml")}, exitUsage},
		{[]string{"explain", "--db", filepath.Join(dir, "absent.db"), "1"}, exitRuntime},
		{[]string{"replay", "--since", "yesterday", "x.log"}, exitUsage},
		// The example's paths do not exist here: check reads real logs.
		{[]string{"check", "--config", "spraywatch.example.yml"}, exitUsage},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			if code, _, stderr := runCLI(t, tc.args...); code != tc.want {
				t.Errorf("exit %d, want %d; stderr: %s", code, tc.want, stderr)
			}
		})
	}
}

func TestDemo(t *testing.T) {
	code, out, stderr := runCLI(t, "demo", "--output", "json")
	if code != 0 {
		t.Fatalf("demo exit %d: %s", code, stderr)
	}
	got := map[string]bool{}
	for _, inc := range decodeIncidents(t, out) {
		got[inc["kind"].(string)] = true
	}
	for _, kind := range []string{"spray", "brute_force", "credential_stuffing", "compromise"} {
		if !got[kind] {
			t.Errorf("demo found no %s; found %v", kind, got)
		}
	}
}

// TestReplaySince: a replay that starts where an attack starts still knows
// which keys the benign clients owned before it, so their successes are
// not compromises, and the real compromise is found.
func TestReplaySince(t *testing.T) {
	start := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	dir, _ := writeCase(t, loggen.Options{Start: start, Duration: 6 * time.Hour, Clients: 200, Lines: 40_000, Seed: 7,
		Spray: true, BruteForce: true, Stuffing: true, NAT: true, Stale: true, Compromise: true})
	files := []string{filepath.Join(dir, "access.log.2.gz"), filepath.Join(dir, "access.log.1"), filepath.Join(dir, "access.log")}
	args := append([]string{"replay", "--config", filepath.Join(dir, "spraywatch.yml"), "--output", "json",
		"--since", "2026-11-27T02:00:00Z", "--until", "2026-11-27T03:30:00Z"}, files...)
	code, out, stderr := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var compromises []map[string]any
	kinds := map[string]int{}
	for _, inc := range decodeIncidents(t, out) {
		kinds[inc["kind"].(string)]++
		if inc["kind"] == "compromise" {
			compromises = append(compromises, inc)
		}
	}
	if kinds["spray"] != 1 || kinds["brute_force"] != 1 || kinds["credential_stuffing"] != 0 {
		t.Errorf("incidents in 02:00..03:30 = %v; want the spray and the brute force, not the 04:00 stuffing", kinds)
	}
	if len(compromises) != 1 {
		var summaries []any
		for _, c := range compromises {
			summaries = append(summaries, c["summary"])
		}
		t.Fatalf("%d compromise incidents, want 1 (client-0042 with the sprayed key): %v", len(compromises), summaries)
	}
	c := compromises[0]
	if got := c["compromised"].([]any); len(got) != 1 || got[0] != "client-0042" || c["severity"] != "critical" {
		t.Errorf("compromise = %v (%v), want critical client-0042", got, c["severity"])
	}
	if !strings.Contains(stderr, "before --since were read only to learn") {
		t.Errorf("summary does not say the history was read:\n%s", stderr)
	}
	if code, _, _ := runCLI(t, "replay", "--since", "2026-11-28", "--until", "2026-11-27", files[0]); code != exitUsage {
		t.Errorf("--since after --until: exit %d, want %d", code, exitUsage)
	}
}
