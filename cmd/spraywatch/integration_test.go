package main

// The real-server test: nginx proxying to gunicorn serving the Flask app in
// testdata/integration, and the same app under the werkzeug development
// server. One traffic mix from distinct loopback addresses (benign clients,
// an office behind one address, a rotated key still sent, and a spray that
// gets in, a brute force, a credential-stuffing run and an enumeration
// oracle) is sent to both, request by request, and the servers write it in
// every format: nginx through a key-prefix map and with escape=json,
// gunicorn with whole keys, combined, the app's own lines (Flask's format,
// JSON) and werkzeug's access lines. Each log is parsed and replayed alone
// through the real pipeline, and must raise the same incidents (kind and
// addresses) as every other log that holds the same facts, and no others.
// Traffic never leaves 127.0.0.0/8.
//
// With CI=true a missing nginx, gunicorn or Flask fails the test; elsewhere
// it is skipped. SPRAYWATCH_INTEG_KEEP=DIR copies the logs and the config
// to DIR, to replay them by hand.

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

` + integSprayFormat + integJSONFormat + `
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

// integJSONFormat is nginx's escape=json log, read both as format json and
// as format nginx with the directive pasted.
const integJSONFormat = `    log_format jsonl escape=json '{"time_iso8601":"$time_iso8601","remote_addr":"$remote_addr",'
                                 '"request":"$request","status":$status,"request_time":$request_time,'
                                 '"api_key_prefix":"$api_key_prefix","user_agent":"$http_user_agent"}';
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
  - name: nginx-json-as-nginx
    format: nginx
    paths: [access.json]
    log_format: |
%[4]s
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
  - name: werkzeug
    format: flask
    paths: [werkzeug.log]
    timezone: UTC
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

// do sends r (a GET of the client resource, or a POST rotating its key) and
// returns the status.
func (c *integClient) do(t *testing.T, base string, r integRequest) int {
	t.Helper()
	method, url := http.MethodGet, fmt.Sprintf("%s/api/v1/clients/%s/resource?client=%s", base, r.id, r.id)
	if r.rotate {
		method, url = http.MethodPost, fmt.Sprintf("%s/api/v1/clients/%s/rotate?client=%s", base, r.id, r.id)
	}
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.key != "" {
		req.Header.Set("X-API-Key", r.key)
	}
	req.Header.Set("User-Agent", "integ/1.0 (\"quoted\")")
	req.AddCookie(&http.Cookie{Name: "session", Value: "s-" + strings.ReplaceAll(c.addr, ".", "-")})
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatalf("%s from %s: %v", method, c.addr, err)
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

// integExampleKey is client-049's key in app.py, copied from the
// documentation's example: the key the spray tries.
const integExampleKey = "sk_live_c0ffee00example00c0ffee"

// integKey is the key app.py issues a client.
func integKey(id string) string { return integKeyGen(id, 0) }

// integKeyGen is the key app.py issues a client after gen rotations.
func integKeyGen(id string, gen int) string {
	if gen == 0 && id == "client-049" {
		return integExampleKey
	}
	seed := id
	if gen > 0 {
		seed = fmt.Sprintf("%s#%d", id, gen)
	}
	return integKeyOf(seed)
}

// integKeyOf is a key-shaped string derived from seed: the attackers' guesses
// and leaked keys look like real keys, with prefixes of their own.
func integKeyOf(seed string) string {
	sum := sha256.Sum256([]byte(seed))
	return "sk_live_" + hex.EncodeToString(sum[:])[:24]
}

// integRequest is one request of the traffic mix.
type integRequest struct {
	from, id, key string
	rotate        bool // POST .../rotate (the key's next generation) instead of GET .../resource
	health        bool // GET /healthz
	want          int  // the status the app must answer
}

// integMix is the traffic every server is sent in three phases, each from
// a later second than the one before (logs keep whole seconds): benign
// history, the attacks interleaved with the benign clients carrying on, and
// the owners of the attacked identities coming back.
type integMix struct {
	history, attack, after []integRequest
}

func (m integMix) all() []integRequest {
	return slices.Concat(m.history, m.attack, m.after)
}

// api counts the requests to the client routes.
func (m integMix) api() int {
	n := 0
	for _, r := range m.all() {
		if !r.health {
			n++
		}
	}
	return n
}

// ownerAddrs lists the addresses that succeeded in the benign history.
func (m integMix) ownerAddrs() map[string]bool {
	out := map[string]bool{}
	for _, r := range m.history {
		if !r.health && r.want == http.StatusOK {
			out[r.from] = true
		}
	}
	return out
}

// keys lists every key the mix sends.
func (m integMix) keys() []string {
	var keys []string
	for _, r := range m.all() {
		if r.key != "" && !slices.Contains(keys, r.key) {
			keys = append(keys, r.key)
		}
	}
	return keys
}

// integInterleave takes one request from each queue in turn, as concurrent
// clients would arrive, but in an order every server sees alike.
func integInterleave(queues ...[]integRequest) []integRequest {
	var out []integRequest
	for more := true; more; {
		more = false
		for i := range queues {
			if len(queues[i]) > 0 {
				out = append(out, queues[i][0])
				queues[i] = queues[i][1:]
				more = true
			}
		}
	}
	return out
}

// The addresses of the mix. The attackers' addresses share no /24 with a
// benign client.
const (
	integNAT     = "127.0.2.1"  // an office: 15 clients behind one address
	integStale   = "127.0.1.45" // client-045, whose old key is still sent after a rotation
	integSprayer = "127.0.3.7"
	integBrute   = "127.0.4.9"
	integMonitor = "127.0.1.200" // health checks
)

// integStuffers is the credential-stuffing run: three addresses of one /24,
// each below the per-address thresholds, together above the /24 ones.
var integStuffers = []string{"127.0.5.11", "127.0.5.12", "127.0.5.13"}

// newIntegMix builds the traffic mix.
//
//   - benign: client-000..019, each from its own address with its own key,
//     before and after the attacks (the spray's victims' owners return);
//   - a NAT: client-020..034 behind one address, mostly succeeding; four of
//     them mistype their key once (two typos at the end, inside what a
//     12-character prefix shows as the right key; two in the prefix);
//   - a stale key: client-045 rotates its key; a forgotten job on the same
//     host keeps sending the old one while the new one works;
//   - client-040 works from its own address, and is brute forced;
//   - a spray from one address with client-049's documentation key across
//     client-000..024 and five ids that do not exist (404: the enumeration
//     oracle), ending in a success on client-049 with that key;
//   - a brute force: 15 keys against client-040 from one address;
//   - credential stuffing: 21 clients (ten of the office's, the rest
//     dormant), each with its own leaked (wrong) key, seven from each of
//     three addresses of one /24.
func newIntegMix() integMix {
	ok := func(from, id string, gen int) integRequest {
		return integRequest{from: from, id: id, key: integKeyGen(id, gen), want: http.StatusOK}
	}
	benign := func(i int) string { return fmt.Sprintf("127.0.1.%d", i+1) }
	id := func(i int) string { return fmt.Sprintf("client-%03d", i) }
	var m integMix
	// History: every active client succeeds twice; client-045 then
	// rotates its key.
	var owners, office []integRequest
	for round := 0; round < 2; round++ {
		for i := 0; i < 20; i++ {
			owners = append(owners, ok(benign(i), id(i), 0))
		}
		for i := 20; i < 35; i++ {
			office = append(office, ok(integNAT, id(i), 0))
		}
	}
	others := []integRequest{ok(benign(39), id(40), 0), ok(integStale, id(45), 0), ok(benign(39), id(40), 0), ok(integStale, id(45), 0),
		{from: integStale, id: id(45), key: integKeyGen(id(45), 0), rotate: true, want: http.StatusOK}, ok(integStale, id(45), 1)}
	health := []integRequest{{from: integMonitor, health: true}, {from: integMonitor, health: true}}
	m.history = integInterleave(owners, office, others, health)

	// Attacks, with the benign clients carrying on.
	var spray, brute, stuff []integRequest
	for i := 0; i < 25; i++ {
		spray = append(spray, integRequest{from: integSprayer, id: id(i), key: integExampleKey, want: http.StatusUnauthorized})
		if i%5 == 4 {
			spray = append(spray, integRequest{from: integSprayer, id: fmt.Sprintf("ghost-%02d", i/5), key: integExampleKey, want: http.StatusNotFound})
		}
	}
	spray = append(spray, integRequest{from: integSprayer, id: "client-049", key: integExampleKey, want: http.StatusOK})
	for i := 0; i < 15; i++ {
		brute = append(brute, integRequest{from: integBrute, id: id(40), key: integKeyOf(fmt.Sprintf("guess-%d", i)), want: http.StatusUnauthorized})
	}
	stuffed := []int{25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 41, 42, 43, 44, 46, 47}
	for j, i := range stuffed {
		stuff = append(stuff, integRequest{from: integStuffers[j%3], id: id(i), key: integKeyOf("leaked-" + id(i)), want: http.StatusUnauthorized})
	}
	owners, office, others = nil, nil, nil
	for round := 0; round < 2; round++ {
		for i := 0; i < 20; i++ {
			owners = append(owners, ok(benign(i), id(i), 0))
		}
		for i := 20; i < 35; i++ {
			office = append(office, ok(integNAT, id(i), 0))
		}
	}
	// Typos behind the NAT, each followed by the right key.
	typo := func(i int, key string) []integRequest {
		return []integRequest{{from: integNAT, id: id(i), key: key, want: http.StatusUnauthorized}, ok(integNAT, id(i), 0)}
	}
	k := integKey
	office = append(office, typo(21, k(id(21))[:len(k(id(21)))-1])...)                             // last character lost
	office = append(office, typo(24, k(id(24))+"x")...)                                            // one too many
	office = append(office, typo(27, "sk_live_"+k(id(27))[9:10]+k(id(27))[8:9]+k(id(27))[10:])...) // two swapped, in the prefix
	office = append(office, typo(30, strings.ToUpper(k(id(30))))...)                               // caps lock
	for i := 0; i < 6; i++ {
		others = append(others, integRequest{from: integStale, id: id(45), key: integKeyGen(id(45), 0), want: http.StatusUnauthorized}, ok(integStale, id(45), 1))
	}
	others = append(others, ok(benign(39), id(40), 0), ok(benign(39), id(40), 0))
	m.attack = integInterleave(spray, brute, stuff, owners, office, others, health)

	// After the attacks: every owner of an attacked identity works again
	// with its own key from its own address, and the forgotten job still
	// sends client-045's old key.
	owners, office = nil, nil
	for i := 0; i < 20; i++ {
		owners = append(owners, ok(benign(i), id(i), 0))
	}
	for i := 20; i < 35; i++ {
		office = append(office, ok(integNAT, id(i), 0))
	}
	others = []integRequest{ok(benign(39), id(40), 0), ok(integStale, id(45), 1),
		{from: integStale, id: id(45), key: integKeyGen(id(45), 0), want: http.StatusUnauthorized}}
	m.after = integInterleave(owners, office, others)
	return m
}

// integSend sends one request to every base in turn and checks the answers.
func integSend(t *testing.T, clients map[string]*integClient, bases []string, r integRequest) {
	t.Helper()
	c := clients[r.from]
	if c == nil {
		c = newIntegClient(r.from)
		clients[r.from] = c
	}
	for _, base := range bases {
		if r.health {
			c.health(t, base)
			continue
		}
		if got := c.do(t, base, r); got != r.want {
			t.Fatalf("%s %s as %s from %s: status %d, want %d", base, r.id, r.key[:min(len(r.key), 12)], r.from, got, r.want)
		}
	}
}

// sendMix sends the mix to every base, each phase from a later second than
// the one before: logs keep whole seconds, and a client's own success in
// the second an attack began cannot be told from one inside it.
func sendMix(t *testing.T, m integMix, bases ...string) {
	t.Helper()
	clients := map[string]*integClient{}
	for i, phase := range [][]integRequest{m.history, m.attack, m.after} {
		if i > 0 {
			time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1100 * time.Millisecond)))
		}
		for _, r := range phase {
			integSend(t, clients, bases, r)
		}
	}
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

	// The werkzeug development server, answering 404 for unknown ids too.
	// It runs on a pseudo-terminal, as in a developer's shell; its output
	// (access lines and the app's lines, interleaved) is the flask log.
	// werkzeug's logger also writes the access lines alone to a file.
	flaskPath, werkzeugPath := filepath.Join(dir, "flask.log"), filepath.Join(dir, "werkzeug.log")
	flaskLog, err := os.Create(flaskPath)
	if err != nil {
		t.Fatal(err)
	}
	defer flaskLog.Close()
	f := exec.Command(python, filepath.Join(appDir, "app.py"), fmt.Sprint(fport))
	f.Env, f.Stdout, f.Stderr = append(env, "SPRAY_UNKNOWN_404=1", "SPRAY_ACCESS_LOG="+werkzeugPath), flaskLog, flaskLog
	copied := make(chan struct{})
	tty, ttyErr := integPTY()
	if ttyErr != nil {
		t.Logf("no pseudo-terminal (%v): the flask log is a plain file", ttyErr)
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

	// One traffic mix, each request sent to nginx (and through it to
	// gunicorn) and to the dev server in turn.
	mix := newIntegMix()
	integCheckKeys(t, mix)
	began := time.Now()
	sendMix(t, mix, fmt.Sprintf("http://127.0.0.1:%d", nport), fmt.Sprintf("http://127.0.0.1:%d", fport))
	t.Logf("sent %d requests to each server in %v", len(mix.all()), time.Since(began).Round(time.Millisecond))
	api := mix.api()

	// Stop the servers so every line is on disk.
	integStop("nginx", n, ng)
	integStop("gunicorn", g, gu)
	integStop("werkzeug", f, wz)
	<-copied
	for _, p := range []string{flaskPath, werkzeugPath} {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d lines, %d ANSI escapes, %d CRLF", filepath.Base(p), bytes.Count(raw, []byte("\n")), bytes.Count(raw, []byte("\x1b[")), bytes.Count(raw, []byte("\r\n")))
		if !bytes.Contains(raw, []byte("\x1b[")) {
			t.Errorf("werkzeug wrote no ANSI colour codes to %s: the stripping is not exercised", p)
		}
	}

	cfgPath := filepath.Join(dir, "spraywatch.yml")
	cfgText := fmt.Sprintf(integConfig, integIndent(integSprayFormat, "      "), integVarsFormat, integGunicornFormat, integIndent(integJSONFormat, "      "))
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		source string
		// lines is how many lines hold a request the test sent (events
		// plus joined lines), health checks left out.
		lines  int
		joined int
		noise  bool
		want   []integIncident
	}{
		{"nginx-spray", api, 0, false, integWantKeyed},
		{"nginx-json", api, 0, false, integWantKeyed},
		{"nginx-json-as-nginx", api, 0, false, integWantKeyed},
		{"nginx-vars", api, 0, false, integWantWholeKeys},
		{"nginx-combined", api, 0, false, integWantNoCredential},
		{"gunicorn", api, 0, false, integWantWholeKeys},
		{"app-json", api, 0, false, integWantKeyed},
		{"flask", 2 * api, api, true, integWantKeyed},
		{"flask-regex", 2 * api, api, true, integWantKeyed},
		// The app's own lines in gunicorn's error log, among gunicorn's.
		{"flask-gunicorn", api, 0, true, integWantKeyed},
		{"werkzeug", api, 0, true, integWantNoCredential},
	}
	var table strings.Builder
	results := map[string][]integIncident{} // by source
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
				t.Errorf("the server's banner was not recognised as not_an_event")
			}
			for _, key := range mix.keys() {
				if strings.Contains(events.String(), key) {
					t.Fatalf("a whole key (%s…) reached parse's output", key[:12])
				}
			}
			if len(rep.Unfilled) > 0 {
				t.Logf("fields never filled: %v", rep.Unfilled)
			}
			got := integReplay(t, cfgPath, tt.source, file)
			fmt.Fprintf(&table, "%s:\n%s", tt.source, integTable(got))
			results[tt.source] = got
			t.Logf("incidents:\n%s", integTable(got))
			if diff := integDiff(got, tt.want); diff != "" {
				t.Errorf("incidents (kind, addresses) differ from the mix's attacks:\n%s", diff)
			}
			// Owners coming back after the attacks are never compromises,
			// whatever the log holds of their keys.
			owners := mix.ownerAddrs()
			for _, inc := range got {
				for _, ip := range strings.Split(inc.IPs, ",") {
					if inc.Kind == "compromise" && owners[ip] {
						t.Errorf("owner %s is in a compromise incident (%d identities)", ip, inc.Identities)
					}
				}
			}
		})
	}
	t.Logf("incidents per log:\n%s", table.String())
	// Every log counts an attack it reports alike: the severity,
	// identities and attempts of each incident agree with the first log's.
	ref := tests[0]
	for _, tt := range tests[1:] {
		if a, b := integCounts(results[ref.source], results[tt.source]), integCounts(results[tt.source], results[ref.source]); a != b {
			t.Errorf("%s and %s count the same traffic differently:\n%s:\n%s%s:\n%s", ref.source, tt.source, ref.source, a, tt.source, b)
		}
	}
}

// integIncident is what the format agreement compares: an incident's kind
// and addresses.
type integIncident struct {
	Kind string
	IPs  string // sorted, comma-separated
	// Severity, Identities and Attempts are compared between logs, not
	// with fixed numbers.
	Severity   string
	Identities int
	Attempts   int64
}

func (i integIncident) key() string { return i.Kind + " " + i.IPs }

// What each log of the mix must raise, and nothing else. Every log holds
// the address, the time, the path (or the app's client_id) and the status
// of every request; they differ in what they hold of the key.
var (
	// A key or a key prefix on every attempt (nginx through a map, nginx
	// escape=json, the app's own lines alone or joined to werkzeug's
	// access lines): every attack of the mix, each as its own kind, and
	// the status oracle. The office's typos, the stale key and the owners
	// coming back raise nothing.
	integWantKeyed = []integIncident{
		{Kind: "spray", IPs: integSprayer},
		{Kind: "compromise", IPs: integSprayer},
		{Kind: "brute_force", IPs: integBrute},
		{Kind: "credential_stuffing", IPs: strings.Join(integStuffers, ",")},
		{Kind: "enumeration_oracle"},
		// The test servers never answer 429: the route is audited once,
		// on the first attack that ends (the brute force).
		{Kind: "no_rate_limit", IPs: integBrute},
	}
	// Whole keys (gunicorn's {x-api-key}i, nginx's $http_x_api_key): the
	// same, and the finding that the log holds them, whose evidence is the
	// first line with a key: the mix's first request, client-000's.
	integWantWholeKeys = append(slices.Clone(integWantKeyed), integIncident{Kind: "raw_credentials_in_logs", IPs: "127.0.1.1"})
	// No credential (nginx combined, werkzeug's access lines): a spray is
	// still many failing identities from one address, and its success from
	// that address a compromise; the oracle needs only statuses. Brute
	// force is many failures on one identity from an address that tried it
	// again and again; the stuffing run, whose keys these logs do not show,
	// is many failing identities from one network, reported as a spray of
	// that network. The stale key, the typos and the owners coming back
	// raise nothing.
	integWantNoCredential = []integIncident{
		{Kind: "spray", IPs: integSprayer},
		{Kind: "compromise", IPs: integSprayer},
		{Kind: "brute_force", IPs: integBrute},
		{Kind: "spray", IPs: strings.Join(integStuffers, ",")},
		{Kind: "enumeration_oracle"},
		{Kind: "no_rate_limit", IPs: integBrute},
	}
)

// integDiff lists the incidents got has that want has not, and the other
// way round, by kind and addresses.
func integDiff(got, want []integIncident) string {
	left := map[string]int{}
	for _, x := range want {
		left[x.key()]++
	}
	var b strings.Builder
	for _, x := range got {
		if left[x.key()] == 0 {
			fmt.Fprintf(&b, "  unexpected: %s (severity %s, %d identities, %d attempts)\n", x.key(), x.Severity, x.Identities, x.Attempts)
			continue
		}
		left[x.key()]--
	}
	for _, x := range want {
		if left[x.key()] > 0 {
			fmt.Fprintf(&b, "  missing:    %s\n", x.key())
			left[x.key()]--
		}
	}
	return b.String()
}

// integCounts shows the kind, addresses, severity, identities and attempts of each
// incident of incs that other has too (by kind and addresses), skipping
// kind skip, for comparing two logs.
func integCounts(incs, other []integIncident) string {
	var b strings.Builder
	for _, i := range incs {
		if slices.ContainsFunc(other, func(o integIncident) bool { return o.key() == i.key() }) {
			fmt.Fprintf(&b, "  %s severity=%s identities=%d attempts=%d\n", i.key(), i.Severity, i.Identities, i.Attempts)
		}
	}
	return b.String()
}

func integTable(incs []integIncident) string {
	var b strings.Builder
	for _, i := range incs {
		fmt.Fprintf(&b, "  %-24s %-9s %-34s identities=%-3d attempts=%d\n", i.Kind, i.Severity, "["+i.IPs+"]", i.Identities, i.Attempts)
	}
	return b.String()
}

// integCheckKeys checks that the mix's keys differ in their 12-character
// prefixes, as random keys almost always do, except for typos at a key's
// end: otherwise a prefix log would merge what a whole-key log keeps apart.
func integCheckKeys(t *testing.T, m integMix) {
	t.Helper()
	seen := map[string]string{}
	for _, key := range m.keys() {
		p := key[:12]
		if other, ok := seen[p]; ok && !strings.HasPrefix(key, other[:len(other)-1]) && !strings.HasPrefix(other, key[:len(key)-1]) {
			t.Fatalf("keys %s… and %s… share a prefix: pick other seeds", key[:14], other[:14])
		}
		seen[p] = key
	}
}

// integReplay runs 'spraywatch replay' on one source's file and returns
// its incidents, sorted.
func integReplay(t *testing.T, cfgPath, source, file string) []integIncident {
	t.Helper()
	var out, errb bytes.Buffer
	db := filepath.Join(t.TempDir(), "case.db")
	code := run(context.Background(), []string{"replay", "--config", cfgPath, "--source", source, "--db", db, "-o", "json", "--no-progress", file}, &out, &errb)
	if code != 0 {
		t.Fatalf("replay exit %d: %s", code, errb.String())
	}
	t.Logf("replay: %s", strings.TrimSpace(errb.String()))
	var incs []integIncident
	sc := bufio.NewScanner(&out)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var inc struct {
			Kind       string   `json:"kind"`
			Severity   string   `json:"severity"`
			IPs        []string `json:"ips"`
			Identities int      `json:"identities"`
			Attempts   int64    `json:"attempts"`
		}
		if err := json.Unmarshal(sc.Bytes(), &inc); err != nil {
			t.Fatalf("replay output %q: %v", sc.Text(), err)
		}
		sort.Strings(inc.IPs)
		incs = append(incs, integIncident{Kind: inc.Kind, IPs: strings.Join(inc.IPs, ","), Severity: inc.Severity, Identities: inc.Identities, Attempts: inc.Attempts})
	}
	sort.Slice(incs, func(i, j int) bool { return incs[i].key() < incs[j].key() })
	return incs
}

func integIndent(s, pre string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = pre + strings.TrimLeft(l, " ")
	}
	return strings.Join(lines, "\n")
}
