package gunicorn_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spraywatch/spraywatch/ingest/gunicorn"
	"github.com/spraywatch/spraywatch/ingest/pyformat"
)

func TestCompile(t *testing.T) {
	tests := []struct {
		name, layout string
		fields       []string
		err          string
	}{
		{"default", "", []string{"h", "l", "u", "t", "r", "s", "b", "f", "a"}, ""},
		{"every atom", `%(h)s %(l)s %(u)s %(t)s "%(r)s" %(m)s %(U)s %(q)s %(H)s %(s)s %(B)s %(b)s "%(f)s" "%(a)s" %(T)s %(M)s %(D)s %(L)s %(p)s %({x-api-key}i)s %({server}o)s %({REMOTE_USER}e)s`,
			[]string{"h", "l", "u", "t", "r", "m", "U", "q", "H", "s", "B", "b", "f", "a", "T", "M", "D", "L", "p", "{x-api-key}i", "{server}o", "{REMOTE_USER}e"}, ""},
		{"conf.py setting", `access_log_format = '%(h)s "%(r)s" %(s)s key="%({x-api-key}i)s"'  # raw keys!`, []string{"h", "r", "s", "{x-api-key}i"}, ""},
		{"command-line flag", `--access-logformat "%(h)s %(s)s"`, []string{"h", "s"}, ""},
		{"width and percent", `%(h)-15s 100%% %(s)3d`, []string{"h", "s"}, ""},
		{"unknown atom named", `%(h)s %(x)s %(s)s`, nil, "%(x)s: unknown atom"},
		{"upper-case header", `%(h)s %({X-Api-Key}i)s`, nil, "{x-api-key}i"},
		{"adjacent atoms", `%(h)s%(s)s`, nil, "%(s)s directly follows %(h)s"},
		{"path then query suggests the request line", `%(h)s "%(m)s %(U)s%(q)s" %(s)s`, nil, `log "%(r)s" for the path and query, or put a "?" between them: %(U)s?%(q)s`},
		{"positional form", `%s %(s)s`, nil, "only the mapping form"},
		{"no conversion", `%(h)y x`, nil, "no conversion"},
		{"unterminated", `%(h`, nil, "unterminated"},
		{"unterminated quote", `access_log_format = '%(h)s`, nil, "unterminated"},
		{"bare, starting with a quoted atom", `"%({x-forwarded-for}i)s" %(l)s %(t)s "%(r)s" %(s)s`, []string{"{x-forwarded-for}i", "l", "t", "r", "s"}, ""},
		{"setting with text after its string", `access_log_format = "%(h)s" %(s)s`, nil, "after the quoted format"},
		{"bare, quoted atom then no space", `"%(h)s"x %(s)s`, nil, "after the quoted format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := gunicorn.Compile(tt.layout)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Compile(%q) error = %v, want it to contain %q", tt.layout, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Compile(%q): %v", tt.layout, err)
			}
			if !slices.Equal(f.Fields(), tt.fields) {
				t.Errorf("Fields() = %v, want %v", f.Fields(), tt.fields)
			}
		})
	}
}

func TestField(t *testing.T) {
	for in, want := range map[string]string{"%({X-Api-Key}i)s": "{x-api-key}i", "{X-Api-Key}i": "{x-api-key}i", "h": "h", "{REMOTE_USER}e": "{REMOTE_USER}e"} {
		if got := gunicorn.Field(in); got != want {
			t.Errorf("Field(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSplit(t *testing.T) {
	f, err := gunicorn.Compile("")
	if err != nil {
		t.Fatal(err)
	}
	line := `127.0.0.1 - - [28/Nov/2026:16:03:41 +0000] "GET /x?y=1 HTTP/1.0" 404 27 "https://r.example/" "Mozilla/5.0 "quoted" agent"`
	vals := make([][]byte, len(f.Fields()))
	if err := f.Split([]byte(line), vals); err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1", "-", "-", "[28/Nov/2026:16:03:41 +0000]", "GET /x?y=1 HTTP/1.0", "404", "27", "https://r.example/", `Mozilla/5.0 "quoted" agent`}
	for i, w := range want {
		if string(vals[i]) != w {
			t.Errorf("%s = %q, want %q", f.Fields()[i], vals[i], w)
		}
	}
	if err := f.Split([]byte(line[:60]), vals); !errors.Is(err, pyformat.ErrMismatch) {
		t.Errorf("truncated line: error %v, want %v", err, pyformat.ErrMismatch)
	}
}

// An unquoted X-Forwarded-For holding a list is read whole; a line that
// does not split with the list read whole is split at the first space.
func TestSplitList(t *testing.T) {
	f, err := gunicorn.Compile(`%({x-forwarded-for}i)s %(l)s %(u)s %(t)s "%(r)s" %(s)s`)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		line string
		xff  string // "" for a mismatch
		u    string
	}{
		{`1.2.3.4 - - [t] "GET / HTTP/1.1" 401`, "1.2.3.4", "-"},
		{`1.2.3.4, 203.0.113.50 - - [t] "GET / HTTP/1.1" 401`, "1.2.3.4, 203.0.113.50", "-"},
		{`a, b,  c, 203.0.113.50 - bob [t] "GET / HTTP/1.1" 401`, "a, b,  c, 203.0.113.50", "bob"},
		{`1.2.3.4,203.0.113.50 - - [t] "GET / HTTP/1.1" 401`, "1.2.3.4,203.0.113.50", "-"},
		{`x, - - [t] "GET / HTTP/1.1" 401`, "x,", "-"}, // the list read whole does not split: the first space ends it
		{`1.2.3.4, 5.6.7.8 - [t] "GET / HTTP/1.1" 401`, "1.2.3.4,", "-"},
	}
	for _, tt := range tests {
		vals := make([][]byte, len(f.Fields()))
		err := f.Split([]byte(tt.line), vals)
		if tt.xff == "" {
			if err == nil {
				t.Errorf("Split(%q) = %q, want a mismatch", tt.line, vals[0])
			}
			continue
		}
		if err != nil || string(vals[0]) != tt.xff || string(vals[2]) != tt.u {
			t.Errorf("Split(%q) = %q, u %q, %v; want %q, u %q", tt.line, vals[0], vals[2], err, tt.xff, tt.u)
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

var fuzzLayouts = []string{
	gunicorn.Default,
	`%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" key="%({x-api-key}i)s" rt=%(L)s %(p)s`,
	`%({x-forwarded-for}i)s %(t)s "%(m)s %(U)s?%(q)s" %(s)s %(D)s`,
	`%({x-forwarded-for}i)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" key="%({x-api-key}i)s"`,
}

// FuzzSplit splits arbitrary lines with real access_log_formats.
func FuzzSplit(f *testing.F) {
	for _, l := range seedLines(f, "gunicorn/*.log", "fuzz/gunicorn/*.log") {
		for i := range fuzzLayouts {
			f.Add(uint8(i), l)
		}
	}
	formats := make([]*gunicorn.Format, len(fuzzLayouts))
	for i, l := range fuzzLayouts {
		var err error
		if formats[i], err = gunicorn.Compile(l); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, line []byte) {
		fm := formats[int(which)%len(formats)]
		vals := make([][]byte, len(fm.Fields()))
		if err := fm.Split(line, vals); err != nil && !errors.Is(err, pyformat.ErrMismatch) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// FuzzCompile compiles arbitrary access_log_formats from users' configs.
func FuzzCompile(f *testing.F) {
	for _, l := range fuzzLayouts {
		f.Add(l)
	}
	f.Add(`access_log_format = "%(h)s \" %(s)s"`)
	f.Add(`%((h))s %(`)
	f.Fuzz(func(t *testing.T, layout string) {
		fm, err := gunicorn.Compile(layout)
		if err != nil {
			return
		}
		vals := make([][]byte, len(fm.Fields()))
		_ = fm.Split([]byte(layout), vals)
	})
}
