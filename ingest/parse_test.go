package ingest_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spraywatch/spraywatch/ingest"
)

// reasons are every error Parse may return: each is a counted skip or
// filter reason.
var reasons = []error{ingest.ErrNoMatch, ingest.ErrBadTime, ingest.ErrBadIP, ingest.ErrBadStatus, ingest.ErrNotObject,
	ingest.ErrBadJSON, ingest.ErrEmpty, ingest.ErrNotAuthRoute, ingest.ErrNotRequest, ingest.ErrNoise, ingest.ErrJoined}

func known(err error) bool {
	for _, r := range reasons {
		if errors.Is(err, r) {
			return true
		}
	}
	return false
}

func goldenInput(t testing.TB, name string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
}

// FuzzParse runs arbitrary lines through every golden case's parser, end
// to end: no panic, a known reason for every rejection, and events that
// are safe to store.
func FuzzParse(f *testing.F) {
	for i, tc := range goldenCases {
		for _, l := range goldenInput(f, tc.log) {
			f.Add(uint8(i), l)
		}
		dir := strings.Split(tc.log, "/")[0]
		files, _ := filepath.Glob(filepath.Join("..", "testdata", "fuzz", dir, "*.log"))
		for _, file := range files {
			data, _ := os.ReadFile(file)
			for _, l := range bytes.Split(data, []byte("\n")) {
				f.Add(uint8(i), l)
			}
		}
	}
	parsers := make([]*ingest.Parser, len(goldenCases))
	for i, tc := range goldenCases {
		parsers[i] = goldenParser(f, tc.opts)
	}
	f.Fuzz(func(t *testing.T, which uint8, line []byte) {
		p := parsers[int(which)%len(parsers)]
		var ev ingest.Event
		err := p.Parse(line, &ev)
		if err != nil {
			if !known(err) {
				t.Fatalf("Parse returned %v, which is no skip reason", err)
			}
			return
		}
		if !ev.IP.IsValid() {
			t.Errorf("event without a valid address")
		}
		if y := ev.Time.Year(); y < 1990 || y > 2200 {
			t.Errorf("event time %v out of range", ev.Time)
		}
		if !utf8.ValidString(ev.Identity) {
			t.Errorf("identity %q is not valid UTF-8", ev.Identity)
		}
		if !utf8.ValidString(ev.Credential) {
			t.Errorf("credential label %q is not valid UTF-8", ev.Credential)
		}
		if i := strings.IndexFunc(ev.Identity+ev.Credential, unicode.IsControl); i >= 0 {
			t.Errorf("identity %q or credential %q holds a control character", ev.Identity, ev.Credential)
		}
		if ev.Status != 0 && (ev.Status < 100 || ev.Status > 599) {
			t.Errorf("status %d out of range", ev.Status)
		}
		if ev.Latency < 0 {
			t.Errorf("negative latency %v", ev.Latency)
		}
		if ev.RawCredential && utf8.RuneCountInString(ev.Credential) > 6+1+ingest.FingerprintLen {
			t.Errorf("whole-key label %q is longer than a fingerprint label", ev.Credential)
		}
	})
}

// FuzzParseTime: any bytes, no panic, and accepted times are plausible.
func FuzzParseTime(f *testing.F) {
	for _, l := range goldenInput(f, "fuzz/time/hostile.log") {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tm, err := ingest.ParseTime(b, time.UTC)
		if err != nil {
			if !errors.Is(err, ingest.ErrBadTime) {
				t.Fatalf("ParseTime error %v, want ErrBadTime", err)
			}
			return
		}
		if y := tm.Year(); y < 1990 || y > 2200 {
			t.Fatalf("ParseTime(%q) = %v, out of range", b, tm)
		}
	})
}

func TestParseTime(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	if berlin == nil {
		berlin = time.FixedZone("CET", 3600)
	}
	want := time.Date(2026, 11, 28, 16, 3, 41, 0, time.UTC)
	tests := []struct {
		in   string
		loc  *time.Location
		want time.Time
		err  bool
	}{
		{"28/Nov/2026:16:03:41 +0000", time.UTC, want, false},
		{"[28/Nov/2026:17:03:41 +0100]", time.UTC, want, false},
		{"28/Nov/2026 17:03:41", berlin, want, false}, // werkzeug: no zone
		{"2026-11-28T16:03:41+00:00", time.UTC, want, false},
		{"2026-11-28T16:03:41Z", time.UTC, want, false},
		{"2026-11-28T16:03:41.250Z", time.UTC, want.Add(250 * time.Millisecond), false},
		{"2026-11-28 17:03:41,250", berlin, want.Add(250 * time.Millisecond), false}, // asctime
		{"1795881821", time.UTC, want, false},
		{"1795881821.250", time.UTC, want.Add(250 * time.Millisecond), false},
		{"1795881821250", time.UTC, want.Add(250 * time.Millisecond), false},
		{"1795881821250000", time.UTC, want.Add(250 * time.Millisecond), false},
		{"28/Nov/2026:16:03:41 +0000 x", time.UTC, time.Time{}, true},
		{"32/Foo/2026:16:03:41 +0000", time.UTC, time.Time{}, true},
		{"2026-13-28T16:03:41Z", time.UTC, time.Time{}, true},
		// Impossible fields are bad_time, not rolled over by time.Date.
		{"31/Nov/2026:25:61:61 +0000", time.UTC, time.Time{}, true},
		{"31/Nov/2026:16:03:41 +0000", time.UTC, time.Time{}, true},
		{"29/Feb/2026:16:03:41 +0000", time.UTC, time.Time{}, true},
		{"00/Nov/2026:16:03:41 +0000", time.UTC, time.Time{}, true},
		{"28/Nov/2026:24:00:00 +0000", time.UTC, time.Time{}, true},
		{"28/Nov/2026:16:60:00 +0000", time.UTC, time.Time{}, true},
		{"28/Nov/2026 16:03:61", time.UTC, time.Time{}, true},
		{"2026-11-31T16:03:41Z", time.UTC, time.Time{}, true},
		{"2026-02-29 16:03:41,000", time.UTC, time.Time{}, true},
		{"2026-11-28T25:03:41Z", time.UTC, time.Time{}, true},
		{"2026-11-00T16:03:41Z", time.UTC, time.Time{}, true},
		{"29/Feb/2028:16:03:41 +0000", time.UTC, time.Date(2028, 2, 29, 16, 3, 41, 0, time.UTC), false},
		{"2026-11-30T23:59:59Z", time.UTC, time.Date(2026, 11, 30, 23, 59, 59, 0, time.UTC), false},
		{"9964345826", time.UTC, time.Time{}, true}, // year 2285
		{"yesterday", time.UTC, time.Time{}, true},
		{"", time.UTC, time.Time{}, true},
	}
	for _, tt := range tests {
		got, err := ingest.ParseTime([]byte(tt.in), tt.loc)
		if (err != nil) != tt.err {
			t.Errorf("ParseTime(%q) error = %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if !tt.err && !got.Equal(tt.want) {
			t.Errorf("ParseTime(%q) = %v, want %v", tt.in, got.UTC(), tt.want)
		}
	}
}

// TestHostileInput feeds every format every kind of bad input a log can hold:
// each line is skipped with a counted reason, nothing panics.
func TestHostileInput(t *testing.T) {
	huge := bytes.Repeat([]byte("A"), 1<<20)
	lines := map[string][]byte{
		"1 MB":          append([]byte(`127.0.3.7 - - [28/Nov/2026:16:03:41 +0000] "GET /`), huge...),
		"NUL bytes":     []byte("\x00\x00\x00 - - [\x00] \"\x00\" \x00"),
		"invalid UTF-8": []byte("\xff\xfe\xfd - - [28/Nov/2026:16:03:41 +0000] \"GET /\xc3\x28 HTTP/1.1\" 401 0 \"-\" \"\xff\""),
		"JSON array":    []byte(`[1,2,3]`),
		"JSON string":   []byte(`"x"`),
		"truncated":     []byte(`127.0.3.7 - - [28/Nov/2026:16:03:41 +0000] "GET /api/v1/cli`),
		"only spaces":   []byte("   \t "),
	}
	for _, tc := range goldenCases {
		p := goldenParser(t, tc.opts)
		for name, line := range lines {
			var ev ingest.Event
			err := p.Parse(append([]byte(nil), line...), &ev)
			if err == nil {
				t.Errorf("%s: %s line parsed: %+v", tc.name, name, ev)
				continue
			}
			if !known(err) {
				t.Errorf("%s: %s line: %v is no skip reason", tc.name, name, err)
			}
		}
	}
}

// TestReadHostile reads a real file through the reader: over-long lines,
// out-of-order and future times are counted.
func TestReadHostile(t *testing.T) {
	dir := t.TempDir()
	var b bytes.Buffer
	line := func(ts, id string) {
		b.WriteString(`127.0.3.7 - - [` + ts + `] "GET /api/v1/clients/` + id + `/resource HTTP/1.1" 401 0 "-" "-"` + "\n")
	}
	line("28/Nov/2026:16:03:41 +0000", "a")
	b.Write(bytes.Repeat([]byte("x"), 2<<20))
	b.WriteString("\n")
	line("28/Nov/2026:16:10:00 +0000", "b")
	line("28/Nov/2026:16:00:00 +0000", "c") // ten minutes back
	line("28/Nov/2027:16:00:00 +0000", "d") // a year ahead
	b.WriteString("\x00\xff\n")
	path := filepath.Join(dir, "access.log")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	p := goldenParser(t, goldenCases[0].opts)
	var got []string
	stats, err := ingest.Read(context.Background(), []ingest.Stream{{Parser: p, Paths: []string{path}}},
		ingest.ReadOptions{NotAfter: time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)},
		func(ev *ingest.Event) error { got = append(got, ev.Identity); return nil })
	if err != nil {
		t.Fatal(err)
	}
	s := stats[0]
	if s.Lines != 6 || s.Skipped["line_too_long"] != 1 || s.Skipped["future_time"] != 1 || s.Skipped["layout_mismatch"] != 1 || s.OutOfOrder != 1 {
		t.Errorf("stats = lines %d, skipped %v, out of order %d; want 6 lines, one each of line_too_long, future_time, layout_mismatch, 1 out of order",
			s.Lines, s.Skipped, s.OutOfOrder)
	}
	if strings.Join(got, ",") != "a,b,c" {
		t.Errorf("events %v, want a,b,c", got)
	}
	if sample := s.Samples["line_too_long"]; !strings.HasPrefix(sample, "xxxxxxxx") || len(sample) > 400 {
		t.Errorf("line_too_long sample %q, want the line's first bytes", sample)
	}
	if sample := s.Samples["layout_mismatch"]; strings.ContainsAny(sample, "\x00") {
		t.Errorf("sample %q holds a NUL byte", sample)
	}
}

// TestJoin checks that a request logged by the app and by werkzeug counts
// once, and that unrelated access lines are kept.
func TestJoin(t *testing.T) {
	p := goldenParser(t, ingest.Options{Format: ingest.FormatFlask, IdentityPaths: []string{identityPath}})
	tests := []struct {
		line string
		want error
	}{
		{"[2026-11-28 16:03:41,900] WARNING in app: auth failure client_id=c1 key_prefix=sk_live_0000 ip=127.0.3.7 status=401", nil},
		{"[2026-11-28 16:03:41,950] WARNING in app: auth failure client_id=c2 key_prefix=sk_live_0000 ip=127.0.3.7 status=401", nil},
		// Threaded server: the second request's access line comes first.
		{`127.0.3.7 - - [28/Nov/2026 16:03:42] "GET /api/v1/clients/c2/resource HTTP/1.1" 401 -`, ingest.ErrJoined},
		{`127.0.3.7 - - [28/Nov/2026 16:03:42] "GET /api/v1/clients/c1/resource HTTP/1.1" 401 -`, ingest.ErrJoined},
		// A second access line for c1 has no app line left to join.
		{`127.0.3.7 - - [28/Nov/2026 16:03:42] "GET /api/v1/clients/c1/resource HTTP/1.1" 401 -`, nil},
		// Another address, or a status the app did not log, stays.
		{"[2026-11-28 16:03:43,000] WARNING in app: auth failure client_id=c3 key_prefix=sk_live_0000 ip=127.0.3.7 status=401", nil},
		{`127.0.3.8 - - [28/Nov/2026 16:03:43] "GET /api/v1/clients/c3/resource HTTP/1.1" 401 -`, nil},
		{`127.0.3.7 - - [28/Nov/2026 16:03:43] "GET /api/v1/clients/c3/resource HTTP/1.1" 500 -`, nil},
		// Too late for the join window.
		{`127.0.3.7 - - [28/Nov/2026 16:03:50] "GET /api/v1/clients/c3/resource HTTP/1.1" 401 -`, nil},
	}
	for i, tt := range tests {
		var ev ingest.Event
		if err := p.Parse([]byte(tt.line), &ev); !errors.Is(err, tt.want) {
			t.Errorf("line %d: Parse = %v, want %v", i+1, err, tt.want)
		}
	}
}

// BenchmarkParse measures each format's parser on the events of its golden
// input: ns/op and allocs/op are per line.
func BenchmarkParse(b *testing.B) {
	for _, tc := range goldenCases {
		b.Run(strings.ReplaceAll(tc.name, "/", "-"), func(b *testing.B) {
			p := goldenParser(b, tc.opts)
			var lines [][]byte
			for _, l := range goldenInput(b, tc.log) {
				var ev ingest.Event
				if err := p.Parse(append([]byte(nil), l...), &ev); err == nil || errors.Is(err, ingest.ErrJoined) {
					lines = append(lines, l)
				}
			}
			if len(lines) == 0 {
				b.Fatal("no parsable lines")
			}
			buf := make([]byte, 0, 4096)
			var ev ingest.Event
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				buf = append(buf[:0], lines[i%len(lines)]...)
				_ = p.Parse(buf, &ev)
			}
		})
	}
}

// TestHeaderCredentialIsWholeKey: a logged request header holds the key as
// sent, so even a short one is fingerprinted, never kept as a label.
func TestHeaderCredentialIsWholeKey(t *testing.T) {
	tests := []struct {
		opts ingest.Options
		line string
	}{
		{ingest.Options{Format: ingest.FormatNginx, Layout: `$remote_addr [$time_local] "$request" $status key=$http_x_api_key`,
			Fields: map[ingest.Role]string{ingest.RoleCredential: "$http_x_api_key"}, IdentityPaths: []string{identityPath}},
			`127.0.3.7 [28/Nov/2026:16:03:41 +0000] "GET /api/v1/clients/c1/resource HTTP/1.1" 401 key=abc123short`},
		// nginx escape=json with the header logged and no credential field set:
		// found by its name, a whole key however short.
		{ingest.Options{Format: ingest.FormatJSON, IdentityPaths: []string{identityPath}},
			`{"remote_addr":"127.0.3.7","time_iso8601":"2026-11-28T16:03:41+00:00","request":"GET /api/v1/clients/c1/resource HTTP/1.1","status":"401","http_x_api_key":"abc123short"}`},
		{ingest.Options{Format: ingest.FormatJSON, IdentityPaths: []string{identityPath}},
			`{"ip":"127.0.3.7","time":"2026-11-28T16:03:41Z","method":"GET","path":"/api/v1/clients/c1/resource","status":401,"api_key":"abc123short"}`},
		{ingest.Options{Format: ingest.FormatGunicorn, Layout: `%(h)s %(t)s "%(r)s" %(s)s key=%({x-api-key}i)s`,
			Fields: map[ingest.Role]string{ingest.RoleCredential: "%({X-API-Key}i)s"}, IdentityPaths: []string{identityPath}},
			`127.0.3.7 [28/Nov/2026:16:03:41 +0000] "GET /api/v1/clients/c1/resource HTTP/1.1" 401 key=abc123short`},
	}
	for _, tt := range tests {
		p := goldenParser(t, tt.opts)
		var ev ingest.Event
		if err := p.Parse([]byte(tt.line), &ev); err != nil {
			t.Fatalf("%s: %v", tt.opts.Format, err)
		}
		if !ev.RawCredential || strings.Contains(ev.Credential, "abc123short") {
			t.Errorf("%s: credential %q (raw %v), want a fingerprint label", tt.opts.Format, ev.Credential, ev.RawCredential)
		}
	}
}

// TestNumericOverflow: a status or latency too long to be one is rejected,
// not wrapped around (18446744073709552017 wraps to 401 in an int).
func TestNumericOverflow(t *testing.T) {
	p := goldenParser(t, ingest.Options{Format: ingest.FormatNginx, Layout: `$remote_addr [$time_local] "$request" $status rt=$request_time`,
		IdentityPaths: []string{identityPath}})
	const head = `127.0.3.7 [28/Nov/2026:16:03:41 +0000] "GET /api/v1/clients/c1/resource HTTP/1.1" `
	for _, status := range []string{"18446744073709552017", "0401", "99999999999999999999999"} {
		var ev ingest.Event
		if err := p.Parse([]byte(head+status+" rt=0.001"), &ev); !errors.Is(err, ingest.ErrBadStatus) {
			t.Errorf("status %s: Parse = %v (status %d), want bad_status", status, err, ev.Status)
		}
	}
	for _, rt := range []string{"18446744073709552017.5", "999999999999999999", "9223372037"} {
		var ev ingest.Event
		if err := p.Parse([]byte(head+"401 rt="+rt), &ev); err != nil {
			t.Fatalf("rt=%s: %v", rt, err)
		}
		if ev.HasLatency {
			t.Errorf("rt=%s: latency %v, want none", rt, ev.Latency)
		}
	}
}

// TestControlCharactersReplaced: NUL and other control characters in an
// identity or a credential label are replaced by U+FFFD (the line is kept:
// skipping it would let a client hide attempts behind a NUL), and a
// fingerprint label never cuts a character in half.
func TestControlCharactersReplaced(t *testing.T) {
	p := goldenParser(t, ingest.Options{Format: ingest.FormatJSON, Fields: map[ingest.Role]string{ingest.RoleCredential: "key_prefix"}})
	tests := []struct {
		line           string
		identity, cred string
	}{
		{`{"time":"2026-11-28T16:03:41Z","ip":"127.0.3.7","client_id":"c\u0000\ufffd1","status":401,"key_prefix":"sk\u001b[2Jx"}`, "c\uFFFD\uFFFD1", "sk\uFFFD[2Jx"},
		{`{"time":"2026-11-28T16:03:41Z","ip":"127.0.3.7","client_id":"c\u0085\t2","status":401,"key_prefix":"ok"}`, "c\uFFFD\uFFFD2", "ok"},
	}
	for _, tt := range tests {
		var ev ingest.Event
		if err := p.Parse([]byte(tt.line), &ev); err != nil {
			t.Fatalf("%s: %v", tt.line, err)
		}
		if ev.Identity != tt.identity || ev.Credential != tt.cred {
			t.Errorf("identity %q, credential %q; want %q, %q", ev.Identity, ev.Credential, tt.identity, tt.cred)
		}
	}
	// An escaped NUL in the path of an nginx line.
	np := goldenParser(t, goldenCases[0].opts)
	var ev ingest.Event
	if err := np.Parse([]byte(`127.0.3.7 - - [28/Nov/2026:16:03:41 +0000] "GET /api/v1/clients/c%001/resource HTTP/1.1" 401 0 "-" "-"`), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Identity != "c\uFFFD1" {
		t.Errorf("identity %q, want %q", ev.Identity, "c\uFFFD1")
	}
	// A whole key whose sixth byte is inside a character.
	kp := goldenParser(t, ingest.Options{Format: ingest.FormatJSON, Fields: map[ingest.Role]string{ingest.RoleCredential: "api_key"}})
	line := `{"time":"2026-11-28T16:03:41Z","ip":"127.0.3.7","client_id":"c1","status":401,"api_key":"abc\u0000eéééééééééééééééé"}`
	if err := kp.Parse([]byte(line), &ev); err != nil {
		t.Fatal(err)
	}
	if !ev.RawCredential || !utf8.ValidString(ev.Credential) || !strings.HasPrefix(ev.Credential, "abc\uFFFDe…") {
		t.Errorf("credential %q (raw %v), want a valid label shown as abc\uFFFDe…", ev.Credential, ev.RawCredential)
	}
}
