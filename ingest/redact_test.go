package ingest_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/spraywatch/spraywatch/ingest"
)

// TestRedact: what explain evidence, skip samples and parse output show of
// a line. Secrets after a marker word (key, token, password, auth, ...),
// long mixed tokens, JWTs and Slack webhook URLs are masked; ordinary
// request lines stay readable.
func TestRedact(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		hidden []string // must not appear in the output
		kept   []string // must appear in the output
		want   string   // when set, the whole output
	}{
		{name: "quoted long key", in: `auth failed key="abcdefghijklmnopqrstuvwxyzABCDEF" client=c1`,
			hidden: []string{"ghijklmnopqrstuvwxyz", "uvwxyzABCDEF"}, kept: []string{`key="`, `" client=c1`}},
		{name: "quoted short key", in: `auth failed key="k3y-Abc123def456" client=c1`,
			hidden: []string{"Abc123def456", "123def"}, kept: []string{" client=c1"}},
		{name: "basic auth", in: `auth="Basic dXNlcjpodW50ZXIy" status=401`,
			hidden: []string{"dXNlcjpodW50ZXIy", "odW50ZXIy"}, kept: []string{"Basic ", " status=401"}},
		{name: "password in query", in: `"GET /login?user=bob&password=Winter2024! HTTP/1.1" 401`,
			hidden: []string{"Winter2024", "2024!"}, kept: []string{"/login?user=bob&password=", " HTTP/1.1\" 401"}},
		{name: "aws secret", in: `aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY region=eu-west-1`,
			hidden: []string{"tnFEMI", "K7MDENG", "bPxRfiCYEXAMPLEKEY"}, kept: []string{" region=eu-west-1"}},
		{name: "jwt after bearer", in: `Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJib2IifQ.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk 401`,
			hidden: []string{"eyJzdWIiOiJib2IifQ", "dBjftJeZ4CVP", "IsInR5cCI6"}, kept: []string{"Bearer ", " 401"}},
		{name: "bare jwt", in: `body had eyJhbGciOiJub25lIn0.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJl ok`,
			hidden: []string{"eyJzdWIiOiJib2IifQ", "c2lnbmF0dXJl", "iOiJub25lIn0"}, kept: []string{" ok"}},
		{name: "x-api-key header letters only", in: `{"x-api-key": "sk_live_abcdefghijklmnopqrstuvwx", "status": 401}`,
			hidden: []string{"ve_abcdefghij", "klmnopqrstuvwx"}, kept: []string{`{"x-api-key": "`, `", "status": 401}`}},
		{name: "json api_key", in: `{"api_key": "k3y-Abc123def456", "client_id": "client-0042"}`,
			hidden: []string{"Abc123def456"}, kept: []string{`"client_id": "client-0042"}`}},
		{name: "slack webhook", in: `post https://hooks.slack.com/services/T0123ABCD/B0456EFGH/abcdefghijklmnopqrstuvwx failed`,
			hidden: []string{"T0123", "B0456EFGH", "abcdefghijklmnop"}, kept: []string{"https://hooks.slack.com/services/", " failed"}},
		{name: "case-insensitive marker", in: `API_KEY=abc123xyz X-Api-Key: zz99short Token:t0k3nvalue`,
			hidden: []string{"abc123xyz", "zz99short", "t0k3nvalue"}},
		{name: "signature with escapes", in: `GET /dl?X-Amz-Signature=abc%2Bdef%3D&x=1`,
			hidden: []string{"abc%2Bdef%3D", "def%3D"}, kept: []string{"X-Amz-Signature=", "&x=1"}},
		{name: "long mixed token", in: `client=Xy7Kp2Qw9Rt4Lm8Nv3Bz path=/a`,
			hidden: []string{"Qw9Rt4Lm8Nv3Bz"}, kept: []string{"client=", " path=/a"}},
		{name: "mixed tokens segment by segment", in: `/v1/aB3dE5fG7hJ9kL1mN3pQ5r/files/zY8xW6vU4tS2rQ0pO8nM6l.json`,
			hidden: []string{"fG7hJ9kL1mN3pQ5r", "vU4tS2rQ0pO8nM6l"}, kept: []string{"/v1/", "/files/", ".json"}},
		{name: "nul and escapes", in: "id=c\x001 \x1b[31mred", want: "id=c\uFFFD1 \uFFFD[31mred"},

		{name: "readable request", in: `127.0.3.7 - - [28/Nov/2026:16:03:41 +0000] "GET /api/v1/clients/client-0042/resource HTTP/1.1" 401 32 "-" "client/1.0" key=- rt=0.001`,
			want: `127.0.3.7 - - [28/Nov/2026:16:03:41 +0000] "GET /api/v1/clients/client-0042/resource HTTP/1.1" 401 32 "-" "client/1.0" key=- rt=0.001`},
		{name: "readable token route", in: `"POST /oauth/token HTTP/1.1" 401 "-" "Mozilla/5.0 (X11; Linux x86_64)"`,
			want: `"POST /oauth/token HTTP/1.1" 401 "-" "Mozilla/5.0 (X11; Linux x86_64)"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ingest.Redact([]byte(tt.in), 0)
			if tt.want != "" && got != tt.want {
				t.Errorf("Redact(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
			for _, h := range tt.hidden {
				if strings.Contains(got, h) {
					t.Errorf("Redact(%q) = %q, which shows %q", tt.in, got, h)
				}
			}
			for _, k := range tt.kept {
				if !strings.Contains(got, k) {
					t.Errorf("Redact(%q) = %q, which lost %q", tt.in, got, k)
				}
			}
			if tt.want == "" && !strings.Contains(got, "[redacted]") {
				t.Errorf("Redact(%q) = %q, want something redacted", tt.in, got)
			}
		})
	}
}

// FuzzRedact: any bytes, no panic, and the output is valid UTF-8 without
// control characters other than tab.
func FuzzRedact(f *testing.F) {
	for _, s := range []string{`key="abc"`, `Authorization: Bearer `, `auth=Basic `, "hooks.slack.com/services/", "eyJ.", "pwd=\x00\xff", `x-api-key:`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		got := ingest.Redact(line, 400)
		if !utf8.ValidString(got) {
			t.Fatalf("Redact(%q) = %q, not valid UTF-8", line, got)
		}
		for _, r := range got {
			if r < 0x20 && r != '\t' || r == 0x7f {
				t.Fatalf("Redact(%q) = %q holds control character %U", line, got, r)
			}
		}
	})
}
