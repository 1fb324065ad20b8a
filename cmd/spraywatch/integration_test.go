package main

// The real-server test: nginx proxying to gunicorn serving the Flask app in
// testdata/integration, and the same app under the werkzeug development
// server. Real HTTP traffic from distinct loopback addresses (benign
// clients, a spray, a brute force and a stuffing run) makes the servers
// write their logs; those logs are then parsed and replayed through the
// real pipeline in every format, and the incidents and the parse summaries
// are checked. Traffic never leaves 127.0.0.0/8.
//
// With CI=true a missing nginx, gunicorn or Flask fails the test; elsewhere
// it is skipped.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// integNginxConf is the nginx.conf the test writes. The spray log_format is
// pasted as a multi-line directive, as users paste it into the config.
const integNginxConf = `daemon off;
master_process on;
worker_processes 1;
%[1]s
pid %[2]s/nginx.pid;
error_log %[2]s/error.log info;
events { worker_connections 256; }
http {
    client_body_temp_path %[2]s/tmp/client;
    proxy_temp_path %[2]s/tmp/proxy;
    fastcgi_temp_path %[2]s/tmp/fastcgi;
    uwsgi_temp_path %[2]s/tmp/uwsgi;
    scgi_temp_path %[2]s/tmp/scgi;

    map $http_x_api_key $api_key_prefix {
        default        "-";
        "~^(?<p>.{12})" $p;
    }

` + integSprayFormat + `
    log_format jsonl escape=json '{"time_iso8601":"$time_iso8601","remote_addr":"$remote_addr",'
                                 '"request":"$request","status":$status,"request_time":$request_time,'
                                 '"api_key_prefix":"$api_key_prefix","user_agent":"$http_user_agent"}';
    log_format vars '$msec $remote_addr "$request_method $request_uri" host=$host $uri?$args '
                    '$status $body_bytes_sent rt=$request_time ut=$upstream_response_time '
                    'key="$http_x_api_key" sess=$cookie_session client=$arg_client auth=$upstream_http_x_auth_result';

    access_log %[2]s/access.log spray;
    access_log %[2]s/access.json jsonl;
    access_log %[2]s/vars.log vars;
    access_log %[2]s/combined.log combined;

    server {
        listen 127.0.0.1:%[3]d;
        location / {
            proxy_pass http://127.0.0.1:%[4]d;
            proxy_set_header X-Forwarded-For $remote_addr;
        }
    }
}
`

const integSprayFormat = `    log_format spray '$remote_addr - $remote_user [$time_local] '
                     '"$request" $status $body_bytes_sent "$http_referer" '
                     '"$http_user_agent" key=$api_key_prefix rt=$request_time';
`

// integGunicornFormat logs the raw X-API-Key header, which spraywatch must
// fingerprint at once and report as raw_credentials_in_logs.
const integGunicornFormat = `%({x-forwarded-for}i)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" key="%({x-api-key}i)s" rt=%(L)s`

// integConfig is the spraywatch config: one source per log the servers
// wrote, in every format.
const integConfig = `database: case.db
fingerprint_secret_file: fingerprint.key
sources:
  - name: nginx-spray
    format: nginx
    paths: [access.log]
    log_format: |
%[1]s
    credential: {field: api_key_prefix, kind: prefix}
    identity: {path: ["/api/v1/clients/{identity}/"]}
  - name: nginx-json
    format: json
    paths: [access.json]
    credential: {field: api_key_prefix, kind: prefix}
    identity: {path: ["/api/v1/clients/{identity}/"]}
  - name: nginx-vars
    format: nginx
    paths: [vars.log]
    log_format: '%[2]s'
    fields: {time: msec, path: uri, query: args, outcome: upstream_http_x_auth_result, latency: upstream_response_time}
    credential: {field: http_x_api_key, kind: key}
    identity: {field: arg_client, path: ["/api/v1/clients/{identity}/"]}
  - name: nginx-combined
    format: combined
    paths: [combined.log]
    identity: {path: ["/api/v1/clients/{identity}/"]}
  - name: gunicorn
    format: gunicorn
    paths: [gunicorn.log]
    log_format: '%[3]s'
    fields: {ip: "{x-forwarded-for}i"}
    credential: {field: "%%({x-api-key}i)s", kind: key}
    identity: {path: ["/api/v1/clients/{identity}/"]}
  - name: app-json
    format: json
    paths: [app.json]
    credential: {field: key_prefix, kind: prefix}
  - name: flask
    format: flask
    paths: [flask.log]
    timezone: UTC
    identity: {path: ["/api/v1/clients/{identity}/"]}
  - name: flask-gunicorn
    format: flask
    paths: [gunicorn-error.log]
  - name: flask-regex
    format: flask
    paths: [flask.log]
    timezone: UTC
    app_regex: '^\[(?P<time>[^\]]+)\] (?P<level>[A-Z]+) in app: (?P<event>[a-z ]+) client_id=(?P<identity>\S+) key_prefix=(?P<credential>\S+) ip=(?P<ip>\S+) status=(?P<status>\d+)$'
    identity: {path: ["/api/v1/clients/{identity}/"]}
`

// integVarsFormat is the "vars" log_format as one string.
const integVarsFormat = `$msec $remote_addr "$request_method $request_uri" host=$host $uri?$args $status $body_bytes_sent rt=$request_time ut=$upstream_response_time key="$http_x_api_key" sess=$cookie_session client=$arg_client auth=$upstream_http_x_auth_result`

// integNeeds finds the servers, or skips (fails under CI) when one is
// missing.
func integNeeds(t *testing.T) (nginx, gunicorn, python string) {
	t.Helper()
	missing := func(what string) {
		msg := fmt.Sprintf("real-server test needs %s (Debian: apt-get install nginx gunicorn python3-flask)", what)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("real-server test skipped in -short mode")
	}
	var err error
	if nginx, err = exec.LookPath("nginx"); err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			missing("nginx")
		}
		nginx = "/usr/sbin/nginx"
	}
	if gunicorn, err = exec.LookPath("gunicorn"); err != nil {
		missing("gunicorn")
	}
	// gunicorn runs the Debian python3; the dev server should too.
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(py, "-c", "import flask").Run() == nil {
			python = py
			break
		}
	}
	if python == "" {
		missing("python3 with Flask")
	}
	return nginx, gunicorn, python
}

func integFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// integStart starts cmd, stops it at cleanup, and waits until port
// accepts connections. The channel reports the process's exit.
func integStart(t *testing.T, name string, cmd *exec.Cmd, port int, logs ...string) chan error {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); close(done) }()
	t.Cleanup(func() { integStop(name, cmd, done) })
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return done
		}
		select {
		case err := <-done:
			t.Fatalf("%s exited before listening: %v\n%s", name, err, integTails(logs))
		case <-time.After(100 * time.Millisecond):
		}
		if i > 300 {
			t.Fatalf("%s did not listen on 127.0.0.1:%d within 30s\n%s", name, port, integTails(logs))
		}
	}
}

// integStop asks the server's process group to quit, then kills it.
func integStop(name string, cmd *exec.Cmd, done <-chan error) {
	if cmd.Process == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	sig := syscall.SIGTERM
	if name == "nginx" {
		sig = syscall.SIGQUIT // graceful: finish and flush
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// integTTY is a pseudo-terminal pair.
type integTTY struct{ master, slave *os.File }

// integPTY opens a pseudo-terminal (Linux /dev/ptmx).
func integPTY() (*integTTY, error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		m.Close()
		return nil, fmt.Errorf("unlock pty: %w", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		m.Close()
		return nil, fmt.Errorf("pty number: %w", e)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, err
	}
	return &integTTY{master: m, slave: s}, nil
}

func integTails(paths []string) string {
	var b strings.Builder
	for _, p := range paths {
		data, _ := os.ReadFile(p)
		if len(data) > 2000 {
			data = data[len(data)-2000:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", p, data)
	}
	return b.String()
}

// integClient sends requests from one loopback source address.
type integClient struct {
	addr string
	http *http.Client
}

func newIntegClient(addr string) *integClient {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(addr)}, Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(a)
			if err != nil || !net.ParseIP(host).IsLoopback() {
				return nil, fmt.Errorf("integration traffic only goes to loopback, not %s", a)
			}
			return d.DialContext(ctx, network, a)
		},
		DisableKeepAlives: true,
	}
	return &integClient{addr: addr, http: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// get requests the client resource of id with key and returns the status.
func (c *integClient) get(t *testing.T, base, id, key string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/api/v1/clients/%s/resource?client=%s", base, id, id), nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	req.Header.Set("User-Agent", "integ/1.0 (\"quoted\")")
	req.AddCookie(&http.Cookie{Name: "session", Value: "s-" + strings.ReplaceAll(c.addr, ".", "-")})
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatalf("GET from %s: %v", c.addr, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func (c *integClient) health(t *testing.T, base string) {
	t.Helper()
	resp, err := c.http.Get(base + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz from %s: %v", c.addr, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// integKey is the key app.py issues a client.
func integKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "sk_live_" + hex.EncodeToString(sum[:])[:24]
}

// integTraffic is what sendTraffic sent, for the assertions.
type integTraffic struct {
	api int // requests to the client resource
}

// sendTraffic plays benign clients, a spray, a brute force and a stuffing
// run against base, checking the answers. unknown404 says whether the app
// answers 404 for unknown client ids.
func sendTraffic(t *testing.T, base string, unknown404 bool) integTraffic {
	t.Helper()
	var n integTraffic
	expect := func(c *integClient, id, key string, want int) {
		t.Helper()
		n.api++
		if got := c.get(t, base, id, key); got != want {
			t.Fatalf("GET %s as %s from %s: status %d, want %d", id, key[:min(len(key), 12)], c.addr, got, want)
		}
	}
	// Benign: 20 clients, each from its own address, each with its key.
	for round := 0; round < 3; round++ {
		for i := 0; i < 20; i++ {
			id := fmt.Sprintf("client-%03d", i)
			c := newIntegClient(fmt.Sprintf("127.0.1.%d", i+1))
			expect(c, id, integKey(id), http.StatusOK)
			if round == 0 {
				c.health(t, base)
			}
		}
	}
	// Logs keep whole seconds: let the attacks start in a later second
	// than the benign traffic, as they would, so that a client's own
	// success is not mistaken for one inside the attack.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1100 * time.Millisecond)))
	unknown := http.StatusUnauthorized
	if unknown404 {
		unknown = http.StatusNotFound
	}
	// Spray: one address, one guessed key, 25 real client ids and 5 that
	// do not exist.
	spray := newIntegClient("127.0.3.7")
	for i := 0; i < 25; i++ {
		expect(spray, fmt.Sprintf("client-%03d", i), "sk_live_0000deadbeef0000cafe", http.StatusUnauthorized)
	}
	for i := 0; i < 5; i++ {
		expect(spray, fmt.Sprintf("ghost-%02d", i), "sk_live_0000deadbeef0000cafe", unknown)
	}
	// Brute force: one address, one client id, 15 keys.
	brute := newIntegClient("127.0.4.9")
	for i := 0; i < 15; i++ {
		expect(brute, "client-007", fmt.Sprintf("sk_live_%04dguess%015d", i, i), http.StatusUnauthorized)
	}
	// Stuffing: one address, 20 client ids, a different (leaked, stale)
	// key for each.
	stuff := newIntegClient("127.0.5.11")
	for i := 25; i < 45; i++ {
		expect(stuff, fmt.Sprintf("client-%03d", i), fmt.Sprintf("sk_live_%04dleak%016d", i, i*7), http.StatusUnauthorized)
	}
	return n
}

func TestRealServers(t *testing.T) {
	nginxBin, gunicornBin, python := integNeeds(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil { // nginx workers may run as nobody
		t.Fatal(err)
	}
	for _, d := range []string{"tmp/client", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	appDir, err := filepath.Abs("../../testdata/integration")
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "TZ=UTC", "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1")

	// gunicorn, in the mode that answers 404 for unknown client ids, with
	// nginx in front of it.
	gport, nport, fport := integFreePort(t), integFreePort(t), integFreePort(t)
	gunicornErr := filepath.Join(dir, "gunicorn-error.log")
	g := exec.Command(gunicornBin, "--bind", fmt.Sprintf("127.0.0.1:%d", gport), "--workers", "1", "--threads", "4",
		"--chdir", appDir, "--access-logfile", filepath.Join(dir, "gunicorn.log"), "--access-logformat", integGunicornFormat,
		"--error-logfile", gunicornErr, "app:app")
	g.Env = append(env, "SPRAY_UNKNOWN_404=1", "SPRAY_JSON_LOG="+filepath.Join(dir, "app.json"))
	gu := integStart(t, "gunicorn", g, gport, gunicornErr)

	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(integNginxConf, user, dir, nport, gport)), 0o644); err != nil {
		t.Fatal(err)
	}
	nginxErr := filepath.Join(dir, "error.log")
	n := exec.Command(nginxBin, "-p", dir, "-c", conf, "-e", nginxErr)
	ng := integStart(t, "nginx", n, nport, nginxErr)

	// The werkzeug development server, answering 401 for unknown ids too.
	// It runs on a pseudo-terminal, as in a developer's shell, so that its
	// access lines carry ANSI colours; its output (access lines and the
	// app's lines, interleaved) is the flask log.
	flaskPath := filepath.Join(dir, "flask.log")
	flaskLog, err := os.Create(flaskPath)
	if err != nil {
		t.Fatal(err)
	}
	defer flaskLog.Close()
	f := exec.Command(python, filepath.Join(appDir, "app.py"), fmt.Sprint(fport))
	f.Env, f.Stdout, f.Stderr = env, flaskLog, flaskLog
	copied := make(chan struct{})
	tty, ttyErr := integPTY()
	if ttyErr != nil {
		t.Logf("no pseudo-terminal (%v): the flask log will have no ANSI colours", ttyErr)
		close(copied)
	} else {
		f.Stdout, f.Stderr = tty.slave, tty.slave
		go func() {
			defer close(copied)
			io.Copy(flaskLog, tty.master) // ends with EIO once the server has exited
		}()
	}
	wz := integStart(t, "werkzeug", f, fport, flaskPath)
	if ttyErr == nil {
		tty.slave.Close()
		defer tty.master.Close()
	}

	viaNginx := sendTraffic(t, fmt.Sprintf("http://127.0.0.1:%d", nport), true)
	direct := sendTraffic(t, fmt.Sprintf("http://127.0.0.1:%d", fport), false)

	// Stop the servers so every line is on disk.
	integStop("nginx", n, ng)
	integStop("gunicorn", g, gu)
	integStop("werkzeug", f, wz)
	<-copied
	if raw, err := os.ReadFile(flaskPath); err == nil && ttyErr == nil {
		t.Logf("flask log: %d lines, %d ANSI escapes, %d CRLF", bytes.Count(raw, []byte("\n")), bytes.Count(raw, []byte("\x1b[")), bytes.Count(raw, []byte("\r\n")))
		if !bytes.Contains(raw, []byte("\x1b[")) {
			t.Errorf("werkzeug on a terminal wrote no ANSI colour codes: the stripping is not exercised")
		}
	}

	cfgPath := filepath.Join(dir, "spraywatch.yml")
	cfgText := fmt.Sprintf(integConfig, integIndent(integSprayFormat, "      "), integVarsFormat, integGunicornFormat)
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}

	common := map[string]int{"spray": 1, "brute_force": 1, "credential_stuffing": 1}
	with := func(extra map[string]int) map[string]int {
		out := map[string]int{}
		for k, v := range common {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	oracle := map[string]int{"enumeration_oracle": 1}
	tests := []struct {
		source string
		// lines is how many lines hold a request the test sent (events
		// plus joined lines), health checks left out.
		lines    int
		joined   int
		noise    bool
		wantIncs map[string]int
	}{
		{"nginx-spray", viaNginx.api, 0, false, with(oracle)},
		{"nginx-json", viaNginx.api, 0, false, with(oracle)},
		{"nginx-vars", viaNginx.api, 0, false, with(map[string]int{"enumeration_oracle": 1, "raw_credentials_in_logs": 1})},
		// No credential: both the spray and the stuffing run are sprays of
		// identities from one address, with credentials unknown.
		{"nginx-combined", viaNginx.api, 0, false, map[string]int{"spray": 2, "enumeration_oracle": 1}},
		{"gunicorn", viaNginx.api, 0, false, with(map[string]int{"enumeration_oracle": 1, "raw_credentials_in_logs": 1})},
		{"app-json", viaNginx.api, 0, false, with(oracle)},
		{"flask", 2 * direct.api, direct.api, true, common},
		{"flask-regex", 2 * direct.api, direct.api, true, common},
		// The app's own lines in gunicorn's error log, among gunicorn's.
		{"flask-gunicorn", viaNginx.api, 0, true, with(oracle)},
	}
	for _, tt := range tests {
		t.Run(tt.source, func(t *testing.T) {
			src, err := pickSource(cfg, tt.source, "")
			if err != nil {
				t.Fatal(err)
			}
			file := src.Paths[0]
			var events bytes.Buffer
			rep, err := parseLog(context.Background(), cfg, src, file, &events, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			var summary bytes.Buffer
			writeParseSummary(&summary, src, rep)
			t.Logf("parse summary:\n%s", summary.String())
			s := rep.Stats
			if skipped := s.Lines - s.Parsed; skipped != 0 {
				t.Errorf("%d lines skipped, want 0: %v", skipped, s.Samples)
			}
			matched := s.Parsed - s.Filtered
			if got := matched + s.FilteredBy["joined"]; got != int64(tt.lines) {
				t.Errorf("matched %d + joined %d = %d request lines, want %d", matched, s.FilteredBy["joined"], got, tt.lines)
			}
			if got := s.FilteredBy["joined"]; got != int64(tt.joined) {
				t.Errorf("joined %d access lines to app lines, want %d", got, tt.joined)
			}
			if tt.noise && s.FilteredBy["not_an_event"] == 0 {
				t.Errorf("the dev server's banner was not recognised as not_an_event")
			}
			if strings.Contains(events.String(), "sk_live_0000deadbeef0000cafe") || strings.Contains(events.String(), integKey("client-001")) {
				t.Errorf("a whole key reached parse's output")
			}
			if len(rep.Unfilled) > 0 {
				t.Logf("fields never filled: %v", rep.Unfilled)
			}
			got, ips := integReplay(t, cfgPath, tt.source, file)
			if fmt.Sprint(got) != fmt.Sprint(tt.wantIncs) {
				t.Errorf("incidents by kind = %v, want %v", got, tt.wantIncs)
			}
			wantIPs := map[string][]string{"spray": {"127.0.3.7"}, "brute_force": {"127.0.4.9"}, "credential_stuffing": {"127.0.5.11"}}
			if tt.source == "nginx-combined" {
				wantIPs = map[string][]string{"spray": {"127.0.3.7", "127.0.5.11"}}
			}
			// The brute force's identity was also sprayed once, so its
			// incident holds the spraying address too: check inclusion.
			for kind, want := range wantIPs {
				for _, ip := range want {
					if !slices.Contains(ips[kind], ip) {
						t.Errorf("%s incidents came from %v, want %s among them", kind, ips[kind], ip)
					}
				}
			}
		})
	}
}

// integReplay runs 'spraywatch replay' on one source's file and counts the
// incidents by kind, with the addresses of each kind's incidents.
func integReplay(t *testing.T, cfgPath, source, file string) (map[string]int, map[string][]string) {
	t.Helper()
	var out, errb bytes.Buffer
	db := filepath.Join(t.TempDir(), "case.db")
	code := run(context.Background(), []string{"replay", "--config", cfgPath, "--source", source, "--db", db, "-o", "json", "--no-progress", file}, &out, &errb)
	if code != 0 {
		t.Fatalf("replay exit %d: %s", code, errb.String())
	}
	t.Logf("replay: %s", strings.TrimSpace(errb.String()))
	kinds, ips := map[string]int{}, map[string][]string{}
	sc := bufio.NewScanner(&out)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var inc struct {
			Kind string   `json:"kind"`
			IPs  []string `json:"ips"`
		}
		if err := json.Unmarshal(sc.Bytes(), &inc); err != nil {
			t.Fatalf("replay output %q: %v", sc.Text(), err)
		}
		kinds[inc.Kind]++
		ips[inc.Kind] = append(ips[inc.Kind], inc.IPs...)
	}
	for _, v := range ips {
		sort.Strings(v)
	}
	return kinds, ips
}

func integIndent(s, pre string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = pre + strings.TrimLeft(l, " ")
	}
	return strings.Join(lines, "\n")
}
