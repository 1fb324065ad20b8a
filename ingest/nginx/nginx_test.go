package nginx_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/ingest/nginx"
)

// standardVars are the variables nginx documents for access logs, plus common ones.
var standardVars = []string{"remote_addr", "remote_user", "time_local", "time_iso8601", "msec", "request", "request_method",
	"request_uri", "uri", "args", "query_string", "status", "body_bytes_sent", "bytes_sent", "request_time", "upstream_response_time",
	"upstream_addr", "http_referer", "http_user_agent", "http_x_api_key", "http_x_forwarded_for", "upstream_http_x_auth_result",
	"cookie_session", "arg_client_id", "server_protocol", "host", "scheme", "api_key_prefix"}

func TestCompile(t *testing.T) {
	every := ""
	for _, v := range standardVars {
		every += " " + v + "=$" + v
	}
	tests := []struct {
		name, layout string
		fields       []string
		escape       nginx.Escape
		err          string // substring of the error; "" for none
	}{
		{"combined by name", "combined", []string{"remote_addr", "remote_user", "time_local", "request", "status", "body_bytes_sent", "http_referer", "http_user_agent"}, nginx.EscapeDefault, ""},
		{"empty is combined", "", []string{"remote_addr", "remote_user", "time_local", "request", "status", "body_bytes_sent", "http_referer", "http_user_agent"}, nginx.EscapeDefault, ""},
		{"every standard variable", strings.TrimSpace(every), standardVars, nginx.EscapeDefault, ""},
		{"braces", `${remote_addr}x${status}`, []string{"remote_addr", "status"}, nginx.EscapeDefault, ""},
		{"pasted multi-line directive", "log_format spray '$remote_addr - [$time_local] '\n        '\"$request\" $status';",
			[]string{"remote_addr", "time_local", "request", "status"}, nginx.EscapeDefault, ""},
		{"escape=json", `log_format j escape=json '{"ip":"$remote_addr","s":$status}';`, []string{"remote_addr", "status"}, nginx.EscapeJSON, ""},
		{"escape=none", `log_format j escape=none '$remote_addr $status';`, []string{"remote_addr", "status"}, nginx.EscapeNone, ""},
		{"quoted pieces without the directive", `'$remote_addr ' "$status"`, []string{"remote_addr", "status"}, nginx.EscapeDefault, ""},
		{"adjacent variables name both", `$host$request_uri $status`, nil, 0, "$request_uri directly follows $host"},
		{"bad variable", `$remote_addr ${bad-name} $status`, nil, 0, "bad variable at \"${bad-name}"},
		{"dollar alone", `$remote_addr $ $status`, nil, 0, "bad variable"},
		{"unknown escape", `log_format j escape=xml '$status';`, nil, 0, "unknown escape=xml"},
		{"unterminated", `log_format j '$status`, nil, 0, "unterminated"},
		{"no variables", `'just text'`, nil, 0, "has no variables"},
		{"no name", `log_format`, nil, 0, "no name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := nginx.Compile(tt.layout)
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
			if f.Escape() != tt.escape {
				t.Errorf("Escape() = %v, want %v", f.Escape(), tt.escape)
			}
		})
	}
}

func TestSplit(t *testing.T) {
	tests := []struct {
		name, layout, line string
		want               []string
		err                error
	}{
		{"default escaping", `$remote_addr "$request" "$http_user_agent"`, `1.2.3.4 "GET /a\x22b HTTP/1.1" "say \x22hi\x22 \xE2\x82\xAC \x5C"`,
			[]string{"1.2.3.4", `GET /a"b HTTP/1.1`, `say "hi" € \`}, nil},
		{"json escaping", `log_format j escape=json '{"ip":"$remote_addr","ua":"$http_user_agent"}';`, `{"ip":"1.2.3.4","ua":"a \"q\" \\ \u0007 \n"}`,
			[]string{"1.2.3.4", "a \"q\" \\ \a \n"}, nil},
		{"no escaping", `log_format j escape=none '$remote_addr "$http_user_agent"';`, `1.2.3.4 "raw \x22 stays"`,
			[]string{"1.2.3.4", `raw \x22 stays`}, nil},
		{"dash kept", `$remote_addr $remote_user`, `1.2.3.4 -`, []string{"1.2.3.4", "-"}, nil},
		{"truncated", `$remote_addr [$time_local] $status`, `1.2.3.4 [28/Nov/2026:16:03:41`, nil, nginx.ErrMismatch},
		{"trailing text", `$remote_addr [$time_local]`, `1.2.3.4 [x] more`, nil, nginx.ErrMismatch},
		{"wrong literal", `$remote_addr - $status`, `1.2.3.4 + 401`, nil, nginx.ErrMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := nginx.Compile(tt.layout)
			if err != nil {
				t.Fatal(err)
			}
			vals := make([][]byte, len(f.Fields()))
			err = f.Split([]byte(tt.line), vals)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Split error = %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			for i, w := range tt.want {
				if string(vals[i]) != w {
					t.Errorf("%s = %q, want %q", f.Fields()[i], vals[i], w)
				}
			}
		})
	}
}

// seedLines returns the lines of the files matching pattern, from the
// repository's testdata.
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
	nginx.Combined,
	`$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" key=$api_key_prefix rt=$request_time`,
	`log_format j escape=json '{"ip":"$remote_addr","t":"$time_iso8601","req":"$request","s":$status,"key":"$http_x_api_key"}';`,
	`log_format n escape=none '$msec $remote_addr "$request_method $request_uri" $status';`,
	`$http_x_forwarded_for - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $upstream_response_time`,
}

// FuzzSplit splits arbitrary lines with real layouts: no panic, the same
// result as the reference algorithm, and values stay inside the line.
func FuzzSplit(f *testing.F) {
	for _, l := range seedLines(f, "nginx/*.log", "fuzz/nginx/*.log") {
		for i := range fuzzLayouts {
			f.Add(uint8(i), l)
		}
	}
	formats := make([]*nginx.Format, len(fuzzLayouts))
	for i, l := range fuzzLayouts {
		var err error
		if formats[i], err = nginx.Compile(l); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, line []byte) {
		fm := formats[int(which)%len(formats)]
		if ok, diff := sameSplit(fm, line); !ok {
			t.Fatalf("%s", diff)
		}
		vals := make([][]byte, len(fm.Fields()))
		n := len(line)
		if err := fm.Split(line, vals); err != nil {
			if !errors.Is(err, nginx.ErrMismatch) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		for i, v := range vals {
			if len(v) > n {
				t.Fatalf("%s longer than the line", fm.Fields()[i])
			}
		}
	})
}

// FuzzCompile compiles arbitrary layouts (they come from users' configs)
// and splits a line with them as the reference algorithm does.
func FuzzCompile(f *testing.F) {
	for _, l := range fuzzLayouts {
		f.Add(l, "1.2.3.4 - - [28/Nov/2026:16:03:41 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"-\"")
	}
	f.Add("log_format x escape=json '$a' \"$b\" ;", "a")
	f.Add("${", "")
	f.Fuzz(func(t *testing.T, layout, line string) {
		fm, err := nginx.Compile(layout)
		if err != nil {
			return
		}
		if ok, diff := sameSplit(fm, []byte(line)); !ok {
			t.Fatalf("%s", diff)
		}
	})
}

// splitPieces are layout literals and value fragments the random split test
// draws from: the characters that end values, quotes, brackets and escapes.
var (
	splitLiterals = []string{" ", " - ", " [", `] "`, `" `, `" "`, ` key=`, ` rt=`, `"`, `,`, `":"`, `{"ip":"`, `"}`, `","s":`, `ab`, `a`, `[[`, `==`, `-`}
	splitValues   = []string{"1.2.3.4", "-", "a", "ab", "b", " ", `"`, `\"`, `\\`, `\x22`, `\x5C`, `\u0007`, `\n`, "[", "]", "=", ",", "key=", "rt=", `" "`, "é", "\xff", ":", ", ", ",", "10.0.0.2", ", ::1", "a,"}
)

// randomLayout returns a log_format of up to 8 variables (names may repeat)
// with random literals between them, with a random escape=.
func randomLayout(r *rand.Rand) string {
	names := []string{"remote_addr", "status", "request", "http_user_agent", "api_key_prefix", "time_local", "http_x_forwarded_for", "upstream_addr"}
	var b strings.Builder
	if r.IntN(2) == 0 {
		b.WriteString(splitLiterals[r.IntN(len(splitLiterals))])
	}
	for i, n := 0, 1+r.IntN(8); i < n; i++ {
		if i > 0 {
			b.WriteString(splitLiterals[r.IntN(len(splitLiterals))])
			if r.IntN(4) == 0 {
				b.WriteString(splitLiterals[r.IntN(len(splitLiterals))])
			}
		}
		b.WriteString("${" + names[r.IntN(len(names))] + "}")
	}
	if r.IntN(2) == 0 {
		b.WriteString(splitLiterals[r.IntN(len(splitLiterals))])
	}
	switch r.IntN(3) {
	case 1:
		return "log_format x escape=json '" + b.String() + "';"
	case 2:
		return "log_format x escape=none '" + b.String() + "';"
	}
	return "log_format x '" + b.String() + "';"
}

// randomLine fills the layout's variables with random fragments, then
// perhaps damages the line, so that both matching and mismatching lines,
// values holding the literal that ends them, and escapes are tried.
func randomLine(r *rand.Rand, layout string) []byte {
	body := layout[strings.IndexByte(layout, '\'')+1 : len(layout)-2]
	var b []byte
	for i := 0; i < len(body); i++ {
		if body[i] != '$' {
			b = append(b, body[i])
			continue
		}
		i += strings.IndexByte(body[i:], '}')
		for k, n := 0, r.IntN(4); k < n; k++ {
			b = append(b, splitValues[r.IntN(len(splitValues))]...)
		}
	}
	for k, n := 0, r.IntN(3); k < n && len(b) > 0; k++ {
		at := r.IntN(len(b))
		switch r.IntN(3) {
		case 0:
			b = append(b[:at], b[at+1:]...)
		case 1:
			b = slices.Insert(b, at, []byte(splitValues[r.IntN(len(splitValues))])...)
		default:
			b = b[:at]
		}
	}
	return b
}

// TestSplitMatchesReference splits random lines with random layouts and
// holds Split to the plain reference algorithm: the same error, the same
// values. Replay a failure with NGINX_SPLIT_SEED=<seed>.
func TestSplitMatchesReference(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("NGINX_SPLIT_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	matched := 0
	for range 3000 {
		layout := randomLayout(r)
		f, err := nginx.Compile(layout)
		if err != nil {
			t.Fatalf("seed %d: Compile(%q): %v", seed, layout, err)
		}
		for range 20 {
			line := randomLine(r, layout)
			if ok, diff := sameSplit(f, line); !ok {
				t.Fatalf("seed %d: layout %q, line %q: %s", seed, layout, line, diff)
			} else if diff == "" {
				matched++
			}
		}
	}
	if matched < 1000 {
		t.Errorf("only %d of 60000 random lines matched their layout: the test tries too few values", matched)
	}
}

// sameSplit splits copies of line with Split and ReferenceSplit. It
// reports whether they agree, and when they do, "" for a line that matched
// and "mismatch" for one that did not.
func sameSplit(f *nginx.Format, line []byte) (bool, string) {
	got, want := make([][]byte, len(f.Fields())), make([][]byte, len(f.Fields()))
	gerr := f.Split(bytes.Clone(line), got)
	werr := f.ReferenceSplit(bytes.Clone(line), want)
	if !errors.Is(gerr, werr) && !(gerr != nil && werr != nil && gerr.Error() == werr.Error()) {
		return false, fmt.Sprintf("Split error %v, reference %v", gerr, werr)
	}
	if werr != nil {
		return true, "mismatch"
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			return false, fmt.Sprintf("%s = %q, reference %q", f.Fields()[i], got[i], want[i])
		}
	}
	return true, ""
}

// BenchmarkSplit splits lines of the project's reference format, with the
// shapes the demo writes and a flood line.
func BenchmarkSplit(b *testing.B) {
	f, err := nginx.Compile(fuzzLayouts[1])
	if err != nil {
		b.Fatal(err)
	}
	lines := [][]byte{
		[]byte(`198.18.23.153 - - [27/Nov/2026:00:00:00 +0000] "GET /api/v1/clients/client-5902/resource HTTP/1.1" 200 512 "-" "client/1.0" key=sk_live_170e rt=0.040`),
		[]byte(`10.201.7.33 - - [27/Nov/2026:00:00:00 +0000] "GET /api/v1/clients/client-f123456/resource HTTP/1.1" 401 32 "-" "client/1.0" key=sk_live_f123456 rt=0.004`),
		[]byte(`203.0.113.66 - - [27/Nov/2026:02:00:08 +0000] "POST /api/v1/clients/client-0042/token HTTP/1.1" 401 32 "https://example.com/login?next=/" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36" key=sk_live_dead rt=0.003`),
	}
	vals := make([][]byte, len(f.Fields()))
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = append(buf[:0], lines[i%len(lines)]...)
		if err := f.Split(buf, vals); err != nil {
			b.Fatal(err)
		}
	}
}
