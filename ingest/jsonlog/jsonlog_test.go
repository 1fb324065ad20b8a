package jsonlog_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/spraywatch/spraywatch/ingest/jsonlog"
)

func TestSplit(t *testing.T) {
	f := jsonlog.New([]string{"ip", "status", "request.headers.x-client-id", "msg", "n", "obj"})
	tests := []struct {
		line string
		want []string // per path; "<nil>" for nil
		err  error
	}{
		{`{"ip":"1.2.3.4","status":401,"request":{"headers":{"x-client-id":"c1"}},"msg":"a \"q\" \u00e9 \ud83d\ude00","n":null,"obj":{"a":[1,{"b":2}]}}`,
			[]string{"1.2.3.4", "401", "c1", "a \"q\" é 😀", "<nil>", `{"a":[1,{"b":2}]}`}, nil},
		{`  {"status":"401"}  `, []string{"<nil>", "401", "<nil>", "<nil>", "<nil>", "<nil>"}, nil},
		{`[1,2]`, nil, jsonlog.ErrNotObject},
		{`"x"`, nil, jsonlog.ErrNotObject},
		{``, nil, jsonlog.ErrNotObject},
		{`{"ip":"1.2.3.4"`, nil, jsonlog.ErrSyntax},
		{`{"ip":"1.2.3.4"} x`, nil, jsonlog.ErrSyntax},
		{`{"ip":"\x"}`, nil, jsonlog.ErrSyntax},
		{`{"ip":nope}`, nil, jsonlog.ErrSyntax},
		{`{"ip":"\u12"}`, nil, jsonlog.ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			vals := make([][]byte, len(f.Fields()))
			err := f.Split([]byte(tt.line), vals)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Split error = %v, want %v", err, tt.err)
			}
			for i, w := range tt.want {
				got := string(vals[i])
				if vals[i] == nil {
					got = "<nil>"
				}
				if got != w {
					t.Errorf("%s = %q, want %q", f.Fields()[i], got, w)
				}
			}
		})
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

// FuzzSplit: arbitrary bytes never panic, and any error is one of the two
// sentinels.
func FuzzSplit(f *testing.F) {
	for _, l := range seedLines(f, "json/*.log", "nginx/escape_json.log", "fuzz/json/*.log") {
		f.Add(l)
	}
	fm := jsonlog.New([]string{"time", "ip", "status", "client_id", "message", "a.b.c", "request.headers.x-api-key"})
	f.Fuzz(func(t *testing.T, line []byte) {
		vals := make([][]byte, len(fm.Fields()))
		err := fm.Split(line, vals)
		if err != nil && !errors.Is(err, jsonlog.ErrNotObject) && !errors.Is(err, jsonlog.ErrSyntax) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}
