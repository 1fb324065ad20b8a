package pyformat_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/spraywatch/spraywatch/ingest/pyformat"
)

func TestSplit(t *testing.T) {
	tests := []struct {
		format, line string
		want         []string
		err          error
	}{
		{`%(a)s "%(b)s"`, `x "say "hi""`, []string{"x", `say "hi"`}, nil},  // the closing text is matched at the end
		{`%(a)-8s|%(b)5d|`, `ab      |  401|`, []string{"ab", "401"}, nil}, // width padding is trimmed
		{`100%% %(a)s`, `100% x`, []string{"x"}, nil},                      // %% is a literal
		{`[%(a)s] %(b)s`, `[x] y z`, []string{"x", "y z"}, nil},            // the last key runs to the end
		{`[%(a)s] %(b)s.`, `[x] y`, nil, pyformat.ErrMismatch},             // missing closing text
		{`%(a)s-%(a)s`, `1-2`, []string{"2"}, nil},                         // a repeated key keeps the last value
		{`<%(a)s>`, `(x)`, nil, pyformat.ErrMismatch},                      // wrong opening text
	}
	for _, tt := range tests {
		f, err := pyformat.Compile(tt.format, nil)
		if err != nil {
			t.Fatalf("Compile(%q): %v", tt.format, err)
		}
		vals := make([][]byte, len(f.Fields()))
		err = f.Split([]byte(tt.line), vals)
		if !errors.Is(err, tt.err) {
			t.Errorf("%q on %q: error %v, want %v", tt.format, tt.line, err, tt.err)
			continue
		}
		for i, w := range tt.want {
			if string(vals[i]) != w {
				t.Errorf("%q on %q: %s = %q, want %q", tt.format, tt.line, f.Fields()[i], vals[i], w)
			}
		}
	}
}

func TestCompileErrors(t *testing.T) {
	reject := func(key string) error {
		if key == "bad" {
			return errors.New("not allowed")
		}
		return nil
	}
	for format, want := range map[string]string{
		`%(a)s%(b)s`: "%(b)s directly follows %(a)s",
		`%(bad)s`:    "%(bad)s: not allowed",
		`%d`:         "only the mapping form",
		`%()s`:       "empty key",
		`%(a)`:       "no conversion",
		`plain`:      "no %(name)s keys",
	} {
		_, err := pyformat.Compile(format, reject)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Compile(%q) error = %v, want it to contain %q", format, err, want)
		}
	}
}
