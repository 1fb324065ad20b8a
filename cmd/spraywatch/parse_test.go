package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseCommand(t *testing.T) {
	dir := t.TempDir()
	abs := func(p string) string {
		a, err := filepath.Abs(filepath.Join("..", "..", "testdata", p))
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	schemeOnly := filepath.Join(dir, "scheme.log")
	var b strings.Builder
	for i := 0; i < 3; i++ {
		b.WriteString(`127.0.3.7 - - [28/Nov/2026:16:03:41 +0000] "GET /api/v1/clients/c` + string(rune('0'+i)) + `/resource HTTP/1.1" 401 32 "-" "client/1.0" key=sk_live_ rt=0.001` + "\n")
	}
	if err := os.WriteFile(schemeOnly, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := `database: case.db
fingerprint_secret_file: fingerprint.key
sources:
  - name: spray
    format: nginx
    paths: [` + abs("nginx/spray.log") + `]
    log_format: '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" key=$api_key_prefix rt=$request_time'
    credential: {field: api_key_prefix, kind: prefix}
    identity: {path: ["/api/v1/clients/{identity}/"]}
  - name: gunicorn
    format: gunicorn
    paths: [` + abs("gunicorn/raw_key.log") + `]
    log_format: '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" key="%({x-api-key}i)s" rt=%(L)s %(p)s'
    credential: {field: "{x-api-key}i", kind: key}
    identity: {path: ["/api/v1/clients/{identity}/"]}
  - name: flask
    format: flask
    paths: [` + abs("flask/dev_server.log") + `]
    timezone: UTC
    identity: {path: ["/api/v1/clients/{identity}/"]}
  - name: apache
    format: combined
    paths: [` + abs("combined/apache.log") + `]
    identity: {path: ["/api/v1/clients/{identity}/"]}
`
	cfgPath := filepath.Join(dir, "spraywatch.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		events int
		stderr []string // substrings of the summary
		never  []string // must appear nowhere
	}{
		{"nginx by path match", []string{abs("nginx/spray.log")}, 9,
			[]string{"source spray (format nginx): 10 lines, 9 matched, 0 filtered, 1 skipped", "skipped  layout_mismatch    1  e.g. 192.0.2.12 - - [28/Nov/2026:16:03:44 +0000]",
				"fields never filled: user", "warning: 1 of 6 credentials are only a bare scheme prefix"}, nil},
		{"scheme prefix only", []string{"--source", "spray", schemeOnly}, 3,
			[]string{"warning: the credential is only ever a bare scheme prefix such as sk_live_ (3 events)"}, nil},
		{"raw keys", []string{"--source", "gunicorn", abs("gunicorn/raw_key.log")}, 5,
			[]string{"warning: 4 lines held whole API keys"}, []string{"51HxYzAbCdEfGhIjKlMnOpQr", "16C7e42F292c6912E7710c838347Ae178B4a"}},
		{"flask joins", []string{"--source", "flask", abs("flask/dev_server.log")}, 7,
			[]string{"filtered joined", "filtered not_an_event", "skipped  bad_ip", "skipped  bad_json", "skipped  layout_mismatch"}, nil},
		{"combined has no credential", []string{"--source", "apache", abs("combined/apache.log")}, 4,
			[]string{"note: no credential in this format"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			args := append([]string{"parse", "--config", cfgPath}, tt.args...)
			if code := run(context.Background(), args, &out, &errb); code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			n := 0
			sc := bufio.NewScanner(&out)
			for sc.Scan() {
				var ev map[string]any
				if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
					t.Fatalf("event line %q: %v", sc.Text(), err)
				}
				n++
			}
			if n != tt.events {
				t.Errorf("%d events, want %d", n, tt.events)
			}
			for _, s := range tt.stderr {
				if !strings.Contains(errb.String(), s) {
					t.Errorf("summary lacks %q:\n%s", s, errb.String())
				}
			}
			for _, s := range tt.never {
				if strings.Contains(out.String()+errb.String(), s) {
					t.Errorf("output holds %q", s)
				}
			}
		})
	}
	var errb bytes.Buffer
	if code := run(context.Background(), []string{"parse", "--config", cfgPath, filepath.Join(dir, "other.log")}, &bytes.Buffer{}, &errb); code != exitUsage {
		t.Errorf("a file no source matches: exit %d, want %d (%s)", code, exitUsage, errb.String())
	}
}
