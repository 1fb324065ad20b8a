package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigFiles loads every testdata/config/*.good.yml, which must pass,
// and every *.bad.yml, whose error must contain the text in its .want file.
func TestConfigFiles(t *testing.T) {
	files, err := filepath.Glob("../../testdata/config/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no config files: %v", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			_, err := LoadConfig(f)
			var report string
			if err == nil && strings.HasPrefix(name, "check-") {
				// A config that loads is checked against its sample logs.
				report, err = checkReport(t, f)
			}
			if strings.HasSuffix(name, ".good.yml") {
				if err != nil {
					t.Fatalf("%s\n%v", report, err)
				}
				return
			}
			want, rerr := os.ReadFile(strings.TrimSuffix(f, ".yml") + ".want")
			if rerr != nil {
				t.Fatalf("bad config without a .want file: %v", rerr)
			}
			if err == nil {
				t.Fatal("LoadConfig accepted a bad config")
			}
			if !errors.Is(err, errConfig) {
				t.Errorf("error is not a config error (exit code 2): %v", err)
			}
			msg := report + err.Error()
			for _, w := range strings.Split(strings.TrimSpace(string(want)), "\n") {
				if !strings.Contains(msg, w) {
					t.Errorf("error\n  %s\ndoes not contain\n  %s", msg, w)
				}
			}
			if data, _ := os.ReadFile(f); goTypeIn(err.Error(), data) != "" || strings.Contains(err.Error(), "config: yaml:") {
				t.Errorf("error names a Go type or the YAML library: %v", err)
			}
		})
	}
}

// checkNow is the clock check runs on in tests: the sample logs are from
// the last days of November 2026.
var checkNow = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// checkReport runs check on a config file and returns what it printed.
func checkReport(t *testing.T, file string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	g := &globals{stdout: &out, stderr: &errb, logLevel: "warn"}
	err := runCheck(context.Background(), g, &checkFlags{config: file}, checkNow)
	return out.String() + errb.String(), err
}

func TestExampleConfigIsValid(t *testing.T) {
	if _, err := LoadConfig("spraywatch.example.yml"); err != nil {
		t.Fatalf("the shipped example config does not load: %v", err)
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := ParseConfig([]byte("sources: [{name: a, format: nginx, identity: {remote_user: true}}]"), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Rules.Spray.MinIdentities; got != 10 {
		t.Errorf("spray.min_identities default = %d, want 10", got)
	}
	if c.Retention.Hours() != 720 {
		t.Errorf("retention default = %v, want 720h", c.Retention)
	}
	if len(c.Alerts) != 1 || c.Alerts[0].Type != "stdout" {
		t.Errorf("alerts default = %+v, want one stdout sink", c.Alerts)
	}
}

// FuzzParseConfig: any document gives a config or errors that name fields,
// never a Go type or the YAML library, and never a panic.
func FuzzParseConfig(f *testing.F) {
	files, _ := filepath.Glob("../../testdata/config/*.yml")
	found, _ := filepath.Glob("../../testdata/fuzz/config/*.yml") // inputs fuzzing found
	for _, file := range append(files, found...) {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := ParseConfig(data, "")
		if err == nil {
			return
		}
		if !errors.Is(err, errConfig) {
			t.Errorf("not a config error: %v", err)
		}
		if name := goTypeIn(err.Error(), data); name != "" || strings.Contains(err.Error(), "config: yaml:") {
			t.Errorf("error names a Go type (%q) or the YAML library: %v", name, err)
		}
	})
}

// goTypeIn returns a Go type name in msg that the input did not hold (a
// key may well be called rules.Abc; main.SourceConfig is ours).
func goTypeIn(msg string, input []byte) string {
	for _, name := range goTypeName.FindAllString(msg, -1) {
		if !bytes.Contains(input, []byte(name[strings.IndexByte(name, '.')+1:])) {
			return name
		}
	}
	return ""
}
