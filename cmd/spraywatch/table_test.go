package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest/loggen"
)

// Every line of the incident table fits the width it is given, whatever
// the names and numbers; the key facts are never cut, only the summary, and
// that at a word.
func TestTableFitsWidth(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	words := []string{"203.0.113.66", "sprayed", "1", "credential(s)", "sk_live_dead", "across", "150", "identities", "(150 attempts)", "route", "/api/v1/clients/{identity}/", "tells", "whether"}
	kinds := incidentKinds
	for round := 0; round < 300; round++ {
		var incs []*detect.Incident
		for i := range 1 + rng.IntN(6) {
			first := time.Date(2026, 11, 27, rng.IntN(24), rng.IntN(60), 0, 0, time.UTC)
			var sum []string
			for range rng.IntN(40) {
				sum = append(sum, words[rng.IntN(len(words))])
			}
			incs = append(incs, &detect.Incident{ID: int64(rng.IntN(100000) + i), Kind: kinds[rng.IntN(len(kinds))], Severity: "critical",
				Source: strings.Repeat("s", 1+rng.IntN(30)), FirstSeen: first, LastSeen: first.Add(time.Duration(rng.IntN(72)) * time.Hour),
				IPs: make([]string, rng.IntN(3000)), Identities: rng.IntN(100000), Attempts: int64(rng.IntN(1000000)), Summary: strings.Join(sum, " ")})
		}
		width := 40 + rng.IntN(200)
		var out bytes.Buffer
		if err := writeTable(&out, incs, width); err != nil {
			t.Fatal(err)
		}
		text := out.String()
		for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
			if n := utf8.RuneCountInString(l); n > width {
				t.Fatalf("seed %d round %d: a line of %d runes at width %d:\n%s", seed, round, n, width, text)
			}
		}
		for _, inc := range incs {
			for _, fact := range []string{fmt.Sprint(inc.ID), inc.Kind, inc.Source, fmt.Sprint(inc.Attempts), stamp(inc.FirstSeen)} {
				if !strings.Contains(text, fact) {
					t.Fatalf("seed %d round %d: fact %q cut at width %d:\n%s", seed, round, fact, width, text)
				}
			}
			if cut := strings.Contains(text, "…"); cut && strings.Contains(text, " …") {
				t.Fatalf("seed %d round %d: summary cut before a space:\n%s", seed, round, text)
			}
		}
	}
}

func TestCutAtWord(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"203.0.113.66 sprayed 1 credential(s) sk_live_dead", 30, "203.0.113.66 sprayed 1…"},
		{"supercalifragilistic", 8, "superca…"},
		{"a, b, c, d", 6, "a, b…"},
	}
	for _, tt := range tests {
		if got := cutAtWord(tt.in, tt.n); got != tt.want || utf8.RuneCountInString(got) > tt.n {
			t.Errorf("cutAtWord(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

// On an 80-column terminal, alerts prints no line wider than 80 columns.
func TestAlertsTableOn80Columns(t *testing.T) {
	start := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	dir, _ := writeCase(t, loggen.Options{Start: start, Duration: 6 * time.Hour, Clients: 50, Lines: 3000, Seed: 5, Spray: true, BruteForce: true, Stuffing: true})
	db := filepath.Join(dir, "case.db")
	if code, _, stderr := runCLI(t, "replay", "--config", filepath.Join(dir, "spraywatch.yml"), "--db", db); code != 0 {
		t.Fatalf("replay: exit %d: %s", code, stderr)
	}
	for _, cols := range []uint16{80, 200} {
		tty, err := integPTY()
		if err != nil {
			t.Skipf("no pseudo-terminal here: %v", err)
		}
		ws := struct{ rows, cols, x, y uint16 }{24, cols, 0, 0}
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, tty.slave.Fd(), syscall.TIOCSWINSZ, uintptr(unsafe.Pointer(&ws))); e != 0 {
			t.Fatalf("set the terminal's size: %v", e)
		}
		read := make(chan string, 1)
		go func() {
			b, _ := io.ReadAll(tty.master) // ends when the slave side closes
			read <- string(b)
		}()
		var errb bytes.Buffer
		code := run(context.Background(), []string{"alerts", "--db", db}, tty.slave, &errb)
		tty.slave.Close()
		got := strings.ReplaceAll(<-read, "\r", "")
		tty.master.Close()
		if code != 0 {
			t.Fatalf("alerts: exit %d: %s", code, errb.String())
		}
		if !strings.Contains(got, "spray") || !strings.Contains(got, "brute_force") {
			t.Fatalf("no incidents on the terminal:\n%s", got)
		}
		for _, l := range strings.Split(got, "\n") {
			if n := utf8.RuneCountInString(l); n > int(cols) {
				t.Errorf("%d-column terminal: a line of %d columns:\n%s", cols, n, l)
			}
		}
		if cols == 200 && !strings.Contains(got, "SUMMARY") {
			t.Errorf("a 200-column terminal gets no one-line table:\n%s", got)
		}
		t.Logf("%d columns:\n%s", cols, got)
	}
}
