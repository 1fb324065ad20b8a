package flask_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spraywatch/spraywatch/ingest/flask"
	"github.com/spraywatch/spraywatch/ingest/pyformat"
)

func TestAccess(t *testing.T) {
	tests := []struct {
		line string
		want []string
		err  error
	}{
		{`127.0.3.7 - - [28/Nov/2026 16:03:41] "GET /api/v1/clients/x/resource HTTP/1.1" 401 -`,
			[]string{"127.0.3.7", "28/Nov/2026 16:03:41", "GET /api/v1/clients/x/resource HTTP/1.1", "401", "-"}, nil},
		{`INFO:werkzeug:::1 - - [28/Nov/2026 16:03:41] "GET /a"b HTTP/1.1" 200 12`,
			[]string{"::1", "28/Nov/2026 16:03:41", `GET /a"b HTTP/1.1`, "200", "12"}, nil},
		{`127.0.3.7 - - [28/Nov/2026 16:03:41] "GET /`, nil, flask.ErrMismatch},
		{`127.0.3.7 - - [28/Nov/2026 16:03:41]`, nil, flask.ErrMismatch},
		{`[2026-11-28 16:03:41,123] WARNING in app: auth failure`, nil, flask.ErrMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			var a flask.Access
			vals := make([][]byte, len(a.Fields()))
			err := a.Split([]byte(tt.line), vals)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Split error = %v, want %v", err, tt.err)
			}
			for i, w := range tt.want {
				if string(vals[i]) != w {
					t.Errorf("%s = %q, want %q", a.Fields()[i], vals[i], w)
				}
			}
		})
	}
}

func TestStripANSI(t *testing.T) {
	for in, want := range map[string]string{
		"\x1b[31m\x1b[1mGET / HTTP/1.1\x1b[0m": "GET / HTTP/1.1",
		"plain":                                "plain",
		"\x1b[33mPress CTRL+C to quit\x1b[0m":  "Press CTRL+C to quit",
		"cut \x1b[3":                           "cut ",
		"\x1b":                                 "\x1b",
	} {
		if got := string(flask.StripANSI([]byte(in))); got != want {
			t.Errorf("StripANSI(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsNoise(t *testing.T) {
	for line, want := range map[string]bool{
		" * Running on http://127.0.0.1:5000":   true,
		"Press CTRL+C to quit":                  true,
		"WARNING: This is a development server": true,
		"Traceback (most recent call last):":    true,
		`  File "app.py", line 3, in x`:         true,
		`127.0.0.1 - - [28/Nov/2026 16:03:50] code 400, message Bad request version ('\x16\x03')`: true,
		`127.0.0.1 - - [28/Nov/2026 16:03:50] "GET /code 400 HTTP/1.1" 200 -`:                     false,
		`[2026-11-28 16:03:41,123] WARNING in app: auth failure`:                                  false,
		`[2026-11-28 16:03:41 +0000] [4711] [INFO] Booting worker with pid: 4711`:                 true,
		`[2026-11-28 16:03:41 +0000] [x] [INFO] not gunicorn`:                                     false,
	} {
		if got := flask.IsNoise([]byte(line)); got != want {
			t.Errorf("IsNoise(%q) = %v, want %v", line, got, want)
		}
	}
}

func TestCompileLogging(t *testing.T) {
	f, err := flask.CompileLogging("")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"asctime", "levelname", "module", "message"}; !slices.Equal(f.Fields(), want) {
		t.Errorf("default Fields() = %v, want %v", f.Fields(), want)
	}
	vals := make([][]byte, 4)
	line := "[2026-11-28 16:03:41,123] WARNING in app: auth failure client_id=x key_prefix=sk_live_0000 ip=127.0.3.7 status=401"
	if err := f.Split([]byte(line), vals); err != nil {
		t.Fatal(err)
	}
	if string(vals[3]) != "auth failure client_id=x key_prefix=sk_live_0000 ip=127.0.3.7 status=401" {
		t.Errorf("message = %q", vals[3])
	}
	for _, bad := range []string{"%(asctime)s%(message)s", "%(bad-name)s", "%(x", "no keys"} {
		if _, err := flask.CompileLogging(bad); err == nil || !strings.Contains(err.Error(), "app_log_format") {
			t.Errorf("CompileLogging(%q) error = %v, want an app_log_format error", bad, err)
		}
	}
}

func TestCompileRegex(t *testing.T) {
	r, err := flask.CompileRegex(`ip=(?P<ip>\S+)(?: user=(?P<identity>\S+))?`)
	if err != nil {
		t.Fatal(err)
	}
	vals := make([][]byte, len(r.Fields()))
	if err := r.Split([]byte("x ip=1.2.3.4"), vals); err != nil {
		t.Fatal(err)
	}
	if string(vals[0]) != "1.2.3.4" || vals[1] != nil {
		t.Errorf("vals = %q, want [1.2.3.4 <nil>]", vals)
	}
	for _, bad := range []string{`(`, `no groups (\d+)`} {
		if _, err := flask.CompileRegex(bad); !errors.Is(err, flask.ErrRegex) {
			t.Errorf("CompileRegex(%q) error = %v, want ErrRegex", bad, err)
		}
	}
}

func seedLines(t testing.TB, patterns ...string) [][]byte {
	var out [][]byte
	for _, p := range patterns {
		files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", p))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, bytes.Split(data, []byte("\n"))...)
		}
	}
	return out
}

// FuzzAccess runs a line through what ingest does to flask lines: strip
// colours, check for noise, split as access line and as app line.
func FuzzAccess(f *testing.F) {
	for _, l := range seedLines(f, "flask/*.log", "fuzz/flask/*.log") {
		f.Add(l)
	}
	lf, err := flask.CompileLogging("")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		n := len(line)
		line = flask.StripANSI(line)
		if len(line) > n {
			t.Fatalf("StripANSI grew the line")
		}
		_ = flask.IsNoise(line)
		var a flask.Access
		vals := make([][]byte, len(a.Fields()))
		if err := a.Split(line, vals); err != nil && !errors.Is(err, flask.ErrMismatch) {
			t.Fatalf("access: unexpected error %v", err)
		}
		vals = make([][]byte, len(lf.Fields()))
		if err := lf.Split(line, vals); err != nil && !errors.Is(err, pyformat.ErrMismatch) {
			t.Fatalf("logging: unexpected error %v", err)
		}
	})
}

// FuzzLogging compiles arbitrary logging formats from users' configs.
func FuzzLogging(f *testing.F) {
	f.Add(flask.DefaultLogFormat, "[2026-11-28 16:03:41,123] WARNING in app: x")
	f.Add("%(asctime)s %(levelname)-8s %(name)s: %(message)s", "2026-11-28 16:03:41,123 INFO     a: b")
	f.Fuzz(func(t *testing.T, format, line string) {
		lf, err := flask.CompileLogging(format)
		if err != nil {
			return
		}
		vals := make([][]byte, len(lf.Fields()))
		_ = lf.Split([]byte(line), vals)
	})
}
