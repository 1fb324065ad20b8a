package ingest_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/ingest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const identityPath = "/api/v1/clients/{identity}/"

// sprayDirective is the project's reference log_format, pasted as nginx.conf has it.
const sprayDirective = `log_format spray '$remote_addr - $remote_user [$time_local] '
                     '"$request" $status $body_bytes_sent "$http_referer" '
                     '"$http_user_agent" key=$api_key_prefix rt=$request_time';`

const escapeJSONDirective = `log_format j escape=json
    '{"ip":"$remote_addr","t":"$time_iso8601",'
    '"req":"$request","s":$status,"key":"$http_x_api_key","ua":"$http_user_agent"}';`

const varsLayout = `$msec $remote_addr "$request_method $request_uri" $uri?$args $status $body_bytes_sent rt=$request_time ut=$upstream_response_time sess=$cookie_session client=$arg_client auth=$upstream_http_x_auth_result`

const gunicornRawKey = `%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" key="%({x-api-key}i)s" rt=%(L)s %(p)s`

// gunicornXFF is the README's gunicorn layout: X-Forwarded-For unquoted,
// so that a list in it has spaces.
const gunicornXFF = `%({x-forwarded-for}i)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" key="%({x-api-key}i)s"`

// nginxXFF logs X-Forwarded-For unquoted after the peer's address, and
// the upstream times (a list when nginx retried).
const nginxXFF = `$remote_addr - $http_x_forwarded_for - [$time_local] "$request" $status $body_bytes_sent rt=$request_time ut=$upstream_response_time`

const flaskRegex = `^\[(?P<time>[^\]]+)\] (?P<level>[A-Z]+) in app: (?P<event>[a-z ]+) client_id=(?P<identity>\S+) key_prefix=(?P<credential>\S+)(?: ip=(?P<ip>\S+))? status=(?P<status>\d+)$`

// goldenCases drive the golden tests, the fuzz targets and the benchmarks:
// testdata/<format>/<file>.log in, testdata/<format>/<name>.golden.jsonl out.
var goldenCases = []struct {
	name string // golden file, under testdata
	log  string // input, under testdata
	opts ingest.Options
}{
	{"nginx/combined", "nginx/combined.log", ingest.Options{Format: ingest.FormatNginx, IdentityPaths: []string{identityPath}}},
	{"nginx/spray", "nginx/spray.log", ingest.Options{Format: ingest.FormatNginx, Layout: sprayDirective,
		Fields: map[ingest.Role]string{ingest.RoleCredential: "api_key_prefix"}, CredentialKind: ingest.CredentialPrefix, IdentityPaths: []string{identityPath}}},
	{"nginx/escape_json", "nginx/escape_json.log", ingest.Options{Format: ingest.FormatNginx, Layout: escapeJSONDirective,
		Fields: map[ingest.Role]string{ingest.RoleCredential: "http_x_api_key"}, IdentityPaths: []string{identityPath}}},
	{"nginx/vars", "nginx/vars.log", ingest.Options{Format: ingest.FormatNginx, Layout: varsLayout,
		Fields: map[ingest.Role]string{ingest.RoleTime: "msec", ingest.RolePath: "uri", ingest.RoleQuery: "args", ingest.RoleIdentity: "arg_client",
			ingest.RoleOutcome: "upstream_http_x_auth_result", ingest.RoleLatency: "upstream_response_time"}, IdentityPaths: []string{identityPath}}},
	{"combined/apache", "combined/apache.log", ingest.Options{Format: ingest.FormatCombined, IdentityPaths: []string{identityPath}}},
	{"gunicorn/default", "gunicorn/default.log", ingest.Options{Format: ingest.FormatGunicorn, IdentityPaths: []string{identityPath}}},
	{"gunicorn/raw_key", "gunicorn/raw_key.log", ingest.Options{Format: ingest.FormatGunicorn, Layout: "access_log_format = '" + gunicornRawKey + "'",
		Fields: map[ingest.Role]string{ingest.RoleCredential: "%({X-Api-Key}i)s"}, CredentialKind: ingest.CredentialKey, IdentityPaths: []string{identityPath}}},
	// Forwarded-for lists, read from the right past trusted proxies.
	{"gunicorn/xff", "gunicorn/xff.log", ingest.Options{Format: ingest.FormatGunicorn, Layout: gunicornXFF,
		Fields: map[ingest.Role]string{ingest.RoleIP: "{x-forwarded-for}i", ingest.RoleCredential: "{x-api-key}i"}, IdentityPaths: []string{identityPath}}},
	{"nginx/xff", "nginx/xff.log", ingest.Options{Format: ingest.FormatNginx, Layout: nginxXFF,
		Fields: map[ingest.Role]string{ingest.RoleIP: "http_x_forwarded_for", ingest.RoleLatency: "upstream_response_time"}, IdentityPaths: []string{identityPath}}},
	{"json/app", "json/app.log", ingest.Options{Format: ingest.FormatJSON, Fields: map[ingest.Role]string{ingest.RoleCredential: "key_prefix"}}},
	{"flask/dev_server", "flask/dev_server.log", ingest.Options{Format: ingest.FormatFlask, IdentityPaths: []string{identityPath}}},
	{"flask/dev_server.regex", "flask/dev_server.log", ingest.Options{Format: ingest.FormatFlask, AppRegex: flaskRegex, IdentityPaths: []string{identityPath}}},
	// werkzeug's access lines alone (its logger sent to a file): no line
	// can hold a key, so a 401 is a failure with the key unknown, never a
	// request without one.
	{"flask/access_only", "flask/access_only.log", ingest.Options{Format: ingest.FormatFlask, IdentityPaths: []string{identityPath}}},
	// An app line whose key is "-" is a request without a key; the access
	// line of a request the app did not log is a failure, key unknown.
	{"flask/no_key", "flask/no_key.log", ingest.Options{Format: ingest.FormatFlask, IdentityPaths: []string{identityPath}}},
}

func goldenParser(t testing.TB, o ingest.Options) *ingest.Parser {
	t.Helper()
	o.Name = "golden"
	o.Location = time.UTC
	o.Secret = []byte("golden-secret-not-for-production")
	o.Statuses = ingest.DefaultStatuses()
	p, err := ingest.NewParser(o)
	if err != nil {
		t.Fatalf("NewParser: %v", err)
	}
	return p
}

// goldenLine is one input line's result.
type goldenLine struct {
	Line          int    `json:"line"`
	Skip          string `json:"skip,omitempty"`
	Filtered      string `json:"filtered,omitempty"`
	Time          string `json:"time,omitempty"`
	IP            string `json:"ip,omitempty"`
	Identity      string `json:"identity,omitempty"`
	Credential    string `json:"credential,omitempty"`
	RawCredential bool   `json:"raw_credential,omitempty"`
	Outcome       string `json:"outcome,omitempty"`
	Status        int    `json:"status,omitempty"`
	Method        string `json:"method,omitempty"`
	Route         string `json:"route,omitempty"`
	LatencyUS     *int64 `json:"latency_us,omitempty"`
}

func parseAll(p *ingest.Parser, data []byte) []goldenLine {
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	out := make([]goldenLine, 0, len(lines))
	for i, line := range lines {
		var ev ingest.Event
		err := p.Parse(append([]byte(nil), line...), &ev)
		g := goldenLine{Line: i + 1}
		switch {
		case ingest.IsFiltered(err):
			g.Filtered = err.Error()
		case err != nil:
			g.Skip = err.Error()
		default:
			g.Time = ev.Time.UTC().Format(time.RFC3339Nano)
			g.IP, g.Identity, g.Credential, g.RawCredential = ev.IP.String(), ev.Identity, ev.Credential, ev.RawCredential
			g.Outcome, g.Status, g.Method, g.Route = ev.Outcome.String(), ev.Status, ev.Method, ev.Route
			if ev.HasLatency {
				us := ev.Latency.Microseconds()
				g.LatencyUS = &us
			}
		}
		out = append(out, g)
	}
	return out
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("..", "testdata", tc.log))
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			enc := json.NewEncoder(&got)
			enc.SetEscapeHTML(false)
			for _, g := range parseAll(goldenParser(t, tc.opts), data) {
				if err := enc.Encode(g); err != nil {
					t.Fatal(err)
				}
			}
			golden := filepath.Join("..", "testdata", tc.name+".golden.jsonl")
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./ingest -run TestGolden -update)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				gl, wl := bytes.Split(got.Bytes(), []byte("\n")), bytes.Split(want, []byte("\n"))
				for i := 0; i < max(len(gl), len(wl)); i++ {
					var g, w []byte
					if i < len(gl) {
						g = gl[i]
					}
					if i < len(wl) {
						w = wl[i]
					}
					if !bytes.Equal(g, w) {
						t.Errorf("%s line %d:\n got %s\nwant %s", golden, i+1, g, w)
					}
				}
			}
		})
	}
}
