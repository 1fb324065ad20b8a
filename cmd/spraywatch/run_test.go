package main

// End-to-end tests of 'spraywatch run': real files written by a writer
// (a goroutine, or nginx), every rotation style, restarts in the middle, and
// kill -9. Each writes a known spray (150 failed attempts from one address
// with one key, each on its own identity) and checks that the incident
// reports exactly 150 attempts and 150 identities, and that the stored
// counts add up to exactly the lines written: no line lost or read twice.
// Deadlines here only bound polling for the daemon to catch up.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest/loggen"
)

const rtConfig = `database: state/spraywatch.db
fingerprint_secret_file: state/fingerprint.key
start_at: beginning
poll_interval: 20ms
rotate_wait: %s
flush_interval: 50ms
sources:
  - name: api
    format: nginx
    paths: [%s]
    log_format: '%s'
    credential: {field: api_key_prefix, kind: prefix}
    identity: {path: ["%s"]}
    timezone: UTC
`

// rtEnv is one test's directory, config and expectations.
type rtEnv struct {
	t       *testing.T
	dir     string
	config  string
	base    time.Time
	written int // lines written so far
	spray   int // spray lines written so far
	sprayIP string
}

func newRTEnv(t *testing.T, pattern string, rotateWait string) *rtEnv {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "spraywatch.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(rtConfig, rotateWait, pattern, loggen.LogFormat, loggen.IdentityPath)), 0o644); err != nil {
		t.Fatal(err)
	}
	return &rtEnv{t: t, dir: dir, config: cfg, base: time.Now().UTC().Add(-20 * time.Minute).Truncate(time.Second), sprayIP: "203.0.113.66"}
}

func (e *rtEnv) path(p string) string { return filepath.Join(e.dir, p) }

// sprayLine is spray attempt i: one address, one key, identity i.
func (e *rtEnv) sprayLine(i int) string {
	t := e.base.Add(time.Duration(i) * 2 * time.Second)
	return fmt.Sprintf(`203.0.113.66 - - [%s] "POST /api/v1/clients/victim-%03d/token HTTP/1.1" 401 32 "-" "spray/1.0" key=sk_live_dead rt=0.004`,
		t.Format("02/Jan/2006:15:04:05 -0700"), i)
}

// benignLine is a success of a benign client.
func (e *rtEnv) benignLine(i int) string {
	t := e.base.Add(time.Duration(i%600) * time.Second)
	return fmt.Sprintf(`198.18.%d.%d - - [%s] "GET /api/v1/clients/client-%04d/resource HTTP/1.1" 200 512 "-" "client/1.0" key=sk_live_%04x rt=0.020`,
		i%200, i%250+1, t.Format("02/Jan/2006:15:04:05 -0700"), i%1000, i%1000)
}

// write writes n spray lines (and a benign line after each) to f.
func (e *rtEnv) write(f *os.File, n int) {
	e.t.Helper()
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(e.sprayLine(e.spray))
		b.WriteByte('\n')
		b.WriteString(e.benignLine(e.written))
		b.WriteByte('\n')
		e.spray++
		e.written += 2
	}
	if _, err := f.WriteString(b.String()); err != nil {
		e.t.Fatal(err)
	}
}

func (e *rtEnv) create(p string) *os.File {
	e.t.Helper()
	f, err := os.OpenFile(e.path(p), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { f.Close() })
	return f
}

// rtDaemon is 'spraywatch run' in this process.
type rtDaemon struct {
	cancel context.CancelFunc
	done   chan int
	stderr *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (e *rtEnv) start() *rtDaemon {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &rtDaemon{cancel: cancel, done: make(chan int, 1), stderr: &syncBuffer{}}
	go func() {
		d.done <- run(ctx, []string{"run", "--config", e.config, "--log-level", "debug"}, &syncBuffer{}, d.stderr)
	}()
	return d
}

func (e *rtEnv) stop(d *rtDaemon) {
	e.t.Helper()
	d.cancel()
	select {
	case code := <-d.done:
		if code != 0 {
			e.t.Fatalf("run exited %d:\n%s", code, d.stderr.String())
		}
	case <-time.After(30 * time.Second):
		e.t.Fatalf("run did not stop:\n%s", d.stderr.String())
	}
}

// counted returns the stored attempts: the sum of every line counted.
func (e *rtEnv) counted() int {
	e.t.Helper()
	s, err := detect.Open(e.path("state/spraywatch.db"), detect.StoreOptions{ReadOnly: true})
	if err != nil {
		return 0
	}
	defer s.Close()
	var n int
	if err := s.DB().QueryRow(`SELECT COALESCE(SUM(count), 0) FROM attempts`).Scan(&n); err != nil {
		return 0
	}
	return n
}

// waitCounted polls until n lines are stored.
func (e *rtEnv) waitCounted(d *rtDaemon, n int) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if e.counted() >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	log := "(stopped)"
	if d != nil {
		log = d.stderr.String()
	}
	e.t.Fatalf("counted %d lines, want %d; daemon log:\n%s", e.counted(), n, log)
}

// check asserts the spray incident and the exact line count.
func (e *rtEnv) check() {
	e.t.Helper()
	if got := e.counted(); got != e.written {
		e.t.Errorf("stored counts add up to %d lines, want exactly %d written (lost or read twice)", got, e.written)
	}
	s, err := detect.Open(e.path("state/spraywatch.db"), detect.StoreOptions{ReadOnly: true})
	if err != nil {
		e.t.Fatal(err)
	}
	defer s.Close()
	incs, err := s.Incidents(context.Background(), detect.IncidentFilter{Kind: detect.KindSpray})
	if err != nil {
		e.t.Fatal(err)
	}
	if len(incs) != 1 {
		e.t.Fatalf("got %d spray incidents, want 1: %+v", len(incs), incs)
	}
	inc := incs[0]
	if inc.Attempts != int64(e.spray) || inc.Identities != e.spray {
		e.t.Errorf("spray incident has %d attempts and %d identities, want %d and %d", inc.Attempts, inc.Identities, e.spray, e.spray)
	}
	idents, err := s.IncidentIdentities(context.Background(), inc.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(idents) != e.spray {
		e.t.Errorf("incident_identities holds %d identities, want %d", len(idents), e.spray)
	}
	if len(inc.IPs) != 1 || inc.IPs[0] != e.sprayIP {
		e.t.Errorf("incident addresses = %v, want [%s]", inc.IPs, e.sprayIP)
	}
}

// The writer keeps its descriptor after the rename and writes late lines to
// the old file (nginx before USR1); the daemon restarts while the rotated
// file still gets lines.
func TestRunRenameRotationLateWrites(t *testing.T) {
	e := newRTEnv(t, "logs/access.log", "3s")
	w := e.create("logs/access.log")
	e.write(w, 30)
	d := e.start()
	e.waitCounted(d, e.written)
	e.write(w, 20)
	if err := os.Rename(e.path("logs/access.log"), e.path("logs/access.log.1")); err != nil {
		t.Fatal(err)
	}
	e.create("logs/access.log.tmp").Close()
	if err := os.Rename(e.path("logs/access.log.tmp"), e.path("logs/access.log")); err != nil {
		t.Fatal(err)
	}
	e.write(w, 20) // late writes to the old descriptor
	e.waitCounted(d, e.written)
	e.stop(d)
	e.write(w, 20) // more late writes while the daemon is down
	d = e.start()
	e.write(w, 10)
	e.waitCounted(d, e.written)
	w = e.create("logs/access.log") // the writer reopens
	e.write(w, 50)
	e.waitCounted(d, e.written)
	e.stop(d)
	e.check()
}

// copy copies src to dst as logrotate's copytruncate does.
func (e *rtEnv) copyFile(src, dst string) {
	e.t.Helper()
	b, err := os.ReadFile(e.path(src))
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(e.path(dst), b, 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *rtEnv) rename(from, to string) {
	e.t.Helper()
	if err := os.Rename(e.path(from), e.path(to)); err != nil {
		e.t.Fatal(err)
	}
}

// copytruncate while running and while stopped; the writer appends with
// O_APPEND, so it goes on at the new end.
func TestRunCopyTruncate(t *testing.T) {
	e := newRTEnv(t, "logs/access.log", "3s")
	w := e.create("logs/access.log")
	e.write(w, 30)
	d := e.start()
	e.waitCounted(d, e.written)
	e.write(w, 20)
	e.copyFile("logs/access.log", "logs/access.log.1")
	if err := os.Truncate(e.path("logs/access.log"), 0); err != nil {
		t.Fatal(err)
	}
	e.write(w, 20)
	e.waitCounted(d, e.written)
	e.write(w, 15)
	e.stop(d)
	e.write(w, 15) // unread when the copy is taken, while stopped
	e.rename("logs/access.log.1", "logs/access.log.2")
	e.copyFile("logs/access.log", "logs/access.log.1")
	if err := os.Truncate(e.path("logs/access.log"), 0); err != nil {
		t.Fatal(err)
	}
	e.write(w, 10)
	d = e.start()
	e.write(w, 40)
	e.waitCounted(d, e.written)
	e.stop(d)
	e.check()
}

// The path is a symlink swapped to a new target; the writer finishes with
// the old target.
func TestRunSymlinkSwap(t *testing.T) {
	e := newRTEnv(t, "logs/access.log", "3s")
	a := e.create("logs/a.log")
	if err := os.Symlink("a.log", e.path("logs/access.log")); err != nil {
		t.Fatal(err)
	}
	e.write(a, 30)
	d := e.start()
	e.waitCounted(d, e.written)
	e.write(a, 20)
	b := e.create("logs/b.log")
	if err := os.Symlink("b.log", e.path("logs/access.log.new")); err != nil {
		t.Fatal(err)
	}
	e.rename("logs/access.log.new", "logs/access.log")
	e.write(a, 20) // late lines to the old target
	e.waitCounted(d, e.written)
	e.stop(d)
	e.write(a, 10) // and while stopped
	e.write(b, 10)
	d = e.start()
	e.write(b, 60)
	e.waitCounted(d, e.written)
	e.stop(d)
	e.check()
}

// The file is deleted while the writer still holds it, then recreated.
func TestRunDeleteRecreate(t *testing.T) {
	e := newRTEnv(t, "logs/access.log", "3s")
	w := e.create("logs/access.log")
	e.write(w, 30)
	d := e.start()
	e.waitCounted(d, e.written)
	if err := os.Remove(e.path("logs/access.log")); err != nil {
		t.Fatal(err)
	}
	e.write(w, 20) // to the deleted file, read through the held descriptor
	e.waitCounted(d, e.written)
	w2 := e.create("logs/access.log")
	e.write(w2, 30)
	e.waitCounted(d, e.written)
	e.stop(d)
	e.write(w2, 20)
	d = e.start()
	e.write(w2, 50)
	e.waitCounted(d, e.written)
	e.stop(d)
	e.check()
}

// Files matching the glob appear after start, one while stopped.
func TestRunGlobNewFiles(t *testing.T) {
	e := newRTEnv(t, "logs/*.log", "3s")
	d := e.start()
	time.Sleep(100 * time.Millisecond) // the daemon is up and has globbed nothing
	w1 := e.create("logs/app1.log")
	e.write(w1, 40)
	e.waitCounted(d, e.written)
	e.stop(d)
	e.write(w1, 20)
	w2 := e.create("logs/app2.log")
	e.write(w2, 20)
	d = e.start()
	e.waitCounted(d, e.written)
	e.write(w1, 20)
	e.write(w2, 50)
	e.waitCounted(d, e.written)
	e.stop(d)
	e.check()
}

// While the daemon is down the log is rotated to .1, which is compressed to
// .1.gz before the daemon starts again.
func TestRunCompressedWhileDown(t *testing.T) {
	e := newRTEnv(t, "logs/access.log", "3s")
	w := e.create("logs/access.log")
	e.write(w, 40)
	d := e.start()
	e.waitCounted(d, e.written)
	e.write(w, 20)
	e.waitCounted(d, e.written)
	e.stop(d)
	e.write(w, 20) // unread
	w.Close()
	e.rename("logs/access.log", "logs/access.log.1")
	raw, err := os.ReadFile(e.path("logs/access.log.1"))
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	if err := os.WriteFile(e.path("logs/access.log.1.gz"), gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(e.path("logs/access.log.1")); err != nil {
		t.Fatal(err)
	}
	w = e.create("logs/access.log")
	e.write(w, 20)
	d = e.start()
	e.write(w, 50)
	e.waitCounted(d, e.written)
	e.stop(d)
	e.check()
}

// rtMainEnv makes the test binary run spraywatch's main instead of the
// tests, so that a test can start the daemon as a process and kill it.
const rtMainEnv = "SPRAYWATCH_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(rtMainEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func (e *rtEnv) startProcess() *exec.Cmd {
	e.t.Helper()
	cmd := exec.Command(os.Args[0], "run", "--config", e.config, "--log-level", "info")
	cmd.Env = append(os.Environ(), rtMainEnv+"=1")
	cmd.Stderr = &syncBuffer{}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cmd.Process.Kill() })
	return cmd
}

// kill -9 while lines pour in, then a restart: the last committed
// transaction holds counts and positions together, so nothing is lost or
// counted twice.
func TestRunKill9(t *testing.T) {
	e := newRTEnv(t, "logs/access.log", "3s")
	w := e.create("logs/access.log")
	p := e.startProcess()
	var b strings.Builder
	writeHeavy := func(chunks int) {
		for c := 0; c < chunks; c++ {
			b.Reset()
			for i := 0; i < 500; i++ {
				b.WriteString(e.benignLine(e.written))
				b.WriteByte('\n')
				e.written++
			}
			if _, err := w.WriteString(b.String()); err != nil {
				t.Fatal(err)
			}
			e.write(w, 3) // the spray, spread through the traffic
			time.Sleep(5 * time.Millisecond)
		}
	}
	writeHeavy(25)
	for e.counted() == 0 { // killed after at least one flush, mid-stream
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.Wait()
	killedAt, writtenAt := e.counted(), e.written
	writeHeavy(25)
	p = e.startProcess()
	e.waitCounted(nil, e.written)
	if err := p.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v\n%s", err, p.Stderr.(*syncBuffer).String())
	}
	t.Logf("killed with %d of %d lines counted; %d lines in all", killedAt, writtenAt, e.written)
	e.check()
}

const rtNginxConf = `daemon off;
master_process on;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 64; }
http {
    client_body_temp_path %[1]s/tmp/client;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    map $http_x_api_key $api_key_prefix {
        default "-";
        "~^(?<p>.{12})" $p;
    }
    log_format spray '%[2]s';
    access_log %[1]s/logs/access.log spray;
    server {
        listen 127.0.0.1:%[3]d;
        location /api/v1/clients/ { return 401; }
        location / { return 200; }
    }
}
`

// rtNginx finds nginx, or skips (fails under CI=true).
func rtNginx(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("nginx is missing (Debian: apt-get install nginx)")
	}
	t.Skip("nginx is missing (Debian: apt-get install nginx)")
	return ""
}

// rtNginxServer is a real nginx logging to logs/access.log of an rtEnv.
type rtNginxServer struct {
	e         *rtEnv
	bin, conf string
	url       string
	client    *http.Client
}

// startNginx runs nginx on a free loopback port; requests come from
// 127.0.0.66.
func startNginx(t *testing.T, e *rtEnv) *rtNginxServer {
	t.Helper()
	n := &rtNginxServer{e: e, bin: rtNginx(t)}
	e.sprayIP = "127.0.0.66"
	// nginx's workers (nobody) reopen the logs themselves on USR1.
	for _, d := range []string{filepath.Dir(e.dir), e.dir, e.path("logs")} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	n.conf = e.path("nginx.conf")
	if err := os.WriteFile(n.conf, []byte(fmt.Sprintf(rtNginxConf, e.dir, loggen.LogFormat, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(e.path("tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	srv := exec.Command(n.bin, "-p", e.dir, "-c", n.conf, "-e", e.path("error.log"))
	var srvOut syncBuffer
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Process.Signal(syscall.SIGQUIT)
		srv.Wait()
	})
	n.client = &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.ParseIP(e.sprayIP)}}).DialContext, DisableKeepAlives: true}}
	n.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := n.client.Get(n.url + "/up")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not come up: %v\n%s", err, srvOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	os.Truncate(e.path("logs/access.log"), 0) // forget the readiness probes
	return n
}

// spray sends n attempts, each on a new identity.
func (n *rtNginxServer) spray(t *testing.T, count int) {
	t.Helper()
	for i := 0; i < count; i++ {
		req, _ := http.NewRequest("POST", fmt.Sprintf("%s/api/v1/clients/victim-%03d/token", n.url, n.e.spray), nil)
		req.Header.Set("X-API-Key", "sk_live_deadbeef0123456789")
		resp, err := n.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("nginx answered %d, want 401", resp.StatusCode)
		}
		n.e.spray++
		n.e.written++
	}
}

// signalArgs are the arguments of 'nginx -s reopen' for this server.
func (n *rtNginxServer) signalArgs() []string {
	return []string{"-p", n.e.dir, "-c", n.conf, "-e", n.e.path("error.log"), "-s", "reopen"}
}

// Real nginx: the log is moved away with mv, nginx goes on writing to the
// moved file until 'nginx -s reopen' (USR1), and the daemon restarts in
// between.
func TestRunNginxReopen(t *testing.T) {
	e := newRTEnv(t, "logs/access.log", "5s")
	n := startNginx(t, e)
	n.spray(t, 50)
	d := e.start()
	e.waitCounted(d, e.written)
	e.rename("logs/access.log", "logs/access.log.1") // logrotate's mv
	n.spray(t, 40)                                   // nginx still writes to the moved file
	e.waitCounted(d, e.written)
	e.stop(d)
	n.spray(t, 20) // and while the daemon is down
	d = e.start()
	e.waitCounted(d, e.written)
	if out, err := exec.Command(n.bin, n.signalArgs()...).CombinedOutput(); err != nil { // logrotate's postrotate: USR1
		t.Fatalf("nginx -s reopen: %v: %s", err, out)
	}
	// The master creates the new log, then its worker reopens it, a
	// little later: until a request lands in the new log, requests go on
	// to the moved one (late lines the daemon must count too).
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if fi, err := os.Stat(e.path("logs/access.log")); err == nil {
			if fi.Size() > 0 {
				break
			}
			n.spray(t, 1)
		}
		if time.Now().After(deadline) {
			t.Fatal("nginx did not reopen its log")
		}
	}
	n.spray(t, 40)
	e.waitCounted(d, e.written)
	e.stop(d)
	if fi, err := os.Stat(e.path("logs/access.log")); err != nil || fi.Size() == 0 {
		t.Errorf("nginx did not write to the reopened log: %v", err)
	}
	e.check()
}

// rtLogrotateConf is Debian's /etc/logrotate.d/nginx, pointed at the test;
// the new log belongs to nginx's worker user (nobody here, www-data on
// Debian), or the workers cannot reopen it and go on writing to the
// rotated file.
const rtLogrotateConf = `%[1]s/logs/access.log {
	daily
	missingok
	rotate 14
	compress
	delaycompress
	notifempty
	create 0640 nobody nogroup
	sharedscripts
	postrotate
		%[2]s %[3]s
	endscript
}
`

// Real logrotate with Debian's nginx policy (create, compress,
// delaycompress, postrotate USR1) rotating a real nginx's log three times,
// with the daemon restarted and killed -9 in between.
func TestRunNginxLogrotate(t *testing.T) {
	logrotate, err := exec.LookPath("logrotate")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("logrotate is missing (Debian: apt-get install logrotate)")
		}
		t.Skip("logrotate is missing (Debian: apt-get install logrotate)")
	}
	e := newRTEnv(t, "logs/access.log", "5s")
	n := startNginx(t, e)
	conf := e.path("logrotate.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(rtLogrotateConf, e.dir, n.bin, strings.Join(n.signalArgs(), " "))), 0o644); err != nil {
		t.Fatal(err)
	}
	rotate := func() {
		t.Helper()
		out, err := exec.Command(logrotate, "-f", "-s", e.path("logrotate.state"), conf).CombinedOutput()
		if err != nil {
			t.Fatalf("logrotate: %v: %s", err, out)
		}
	}
	n.spray(t, 30)
	d := e.start()
	e.waitCounted(d, e.written)
	n.spray(t, 20)
	rotate()
	n.spray(t, 20)
	e.waitCounted(d, e.written)
	e.stop(d)
	n.spray(t, 20) // unread when the log is rotated again: .1 goes to .2.gz
	rotate()
	n.spray(t, 20)
	p := e.startProcess()
	e.waitCounted(nil, e.written-5)
	p.Process.Signal(syscall.SIGKILL)
	p.Wait()
	rotate()
	n.spray(t, 40)
	d = e.start()
	e.waitCounted(d, e.written)
	e.stop(d)
	if _, err := os.Stat(e.path("logs/access.log.2.gz")); err != nil {
		t.Errorf("logrotate did not compress: %v", err)
	}
	e.check()
}

func rtGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Live behaviour: the incident follows its crossing line at once; metrics
// and /healthz tell what is read; SIGHUP rejects a bad config and applies a
// good one without losing or rereading a line.
func TestRunLiveMetricsReload(t *testing.T) {
	e, metrics := rtHealthEnv(t)
	withMetrics, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(withMetrics), "sources:\n", "sources:\n  - name: other\n    format: nginx\n    paths: [logs/other.log]\n    log_format: combined\n    identity: {remote_user: true}\n", 1)
	if err := os.WriteFile(e.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	w := e.create("logs/access.log")
	e.write(w, 9)
	d := e.start()
	e.waitCounted(d, e.written)
	if code, body := rtGet(t, metrics+"/healthz"); code != 503 || !strings.Contains(body, "other.log") {
		t.Errorf("healthz with a missing file = %d %q, want 503 naming it", code, body)
	}
	// The tenth identity crosses the spray threshold.
	written := time.Now()
	e.write(w, 1)
	var raised time.Duration
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if rtSprayIncidents(t, e) > 0 {
			raised = time.Since(written)
			break
		}
	}
	if raised == 0 {
		t.Fatalf("no incident:\n%s", d.stderr.String())
	}
	t.Logf("spray incident stored %v after its crossing line was written", raised.Round(time.Millisecond))
	e.create("logs/other.log").Close()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if code, _ := rtGet(t, metrics+"/healthz"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			_, body := rtGet(t, metrics+"/healthz")
			t.Fatalf("healthz stays unhealthy after the file appeared: %s", body)
		}
	}
	_, body := rtGet(t, metrics+"/metrics")
	for _, want := range []string{`spraywatch_lines_read_total{source="api"} 20`, `spraywatch_incidents_raised_total{kind="spray"} 1`,
		`spraywatch_tracked_groups{grouping="ip"}`, `spraywatch_source_bytes_behind{source="api"} 0`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// A bad config is rejected; the daemon goes on with the old one.
	if err := os.WriteFile(e.config, []byte(cfg+"lateness: -1m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(d.stderr.String(), "config rejected on reload"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("bad config not rejected:\n%s", d.stderr.String())
		}
	}
	e.write(w, 40)
	e.waitCounted(d, e.written)
	// A good one is applied, keeping windows, incidents and positions.
	if err := os.WriteFile(e.config, []byte(cfg+"lateness: 1m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(d.stderr.String(), "config reloaded"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("good config not applied:\n%s", d.stderr.String())
		}
	}
	e.write(w, 100)
	e.waitCounted(d, e.written)
	_, body = rtGet(t, metrics+"/metrics")
	for _, want := range []string{`spraywatch_config_reloads_total{result="rejected"} 1`, `spraywatch_config_reloads_total{result="applied"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	e.stop(d)
	e.check()
}

func rtSprayIncidents(t *testing.T, e *rtEnv) int {
	s, err := detect.Open(e.path("state/spraywatch.db"), detect.StoreOptions{ReadOnly: true})
	if err != nil {
		return 0
	}
	defer s.Close()
	incs, err := s.Incidents(context.Background(), detect.IncidentFilter{Kind: detect.KindSpray})
	if err != nil {
		return 0
	}
	return len(incs)
}

// shift renames access.log.N to .N+1, oldest first, as logrotate does
// before rotating.
func (e *rtEnv) shift() {
	for n := 20; n >= 1; n-- {
		os.Rename(e.path(fmt.Sprintf("logs/access.log.%d", n)), e.path(fmt.Sprintf("logs/access.log.%d", n+1)))
		os.Rename(e.path(fmt.Sprintf("logs/access.log.%d.gz", n)), e.path(fmt.Sprintf("logs/access.log.%d.gz", n+1)))
	}
}

// compress gzips a rotated file and removes it, as logrotate's compress
// (with delaycompress, one rotation later) does.
func (e *rtEnv) compress(p string) {
	e.t.Helper()
	raw, err := os.ReadFile(e.path(p))
	if err != nil {
		return
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	if err := os.WriteFile(e.path(p+".gz"), gz.Bytes(), 0o644); err != nil {
		e.t.Error(err)
	}
	os.Remove(e.path(p))
}

// Lines pour in and the log rotates as logrotate does it (numbered shift,
// delayed gzip of .2; rename with late lines to the old descriptor, then
// reopen; or copytruncate) while the daemon is killed with -9 and restarted
// several times: killed while it reads what was just written, at a
// different moment each time, and kept down across one rotation of each
// style. Where in the sequence each kill falls is fixed by the round, not
// by how fast the machine is, so the same sequence is tested on a loaded
// machine as on an idle one. (Several rotations while the daemon is down,
// in every order, are the follower's model test's to search.)
func TestRunRotationStormWithKills(t *testing.T) {
	e := newRTEnv(t, "logs/access.log", "2s")
	w := e.create("logs/access.log")
	// Every process's log and what the test did, for a failure to show.
	var story strings.Builder
	var procs []*exec.Cmd
	start := func() *exec.Cmd {
		p := e.startProcess()
		procs = append(procs, p)
		fmt.Fprintf(&story, "process %d starts (%d lines written, %d counted)\n", len(procs), e.written, e.counted())
		return p
	}
	defer func() {
		if !t.Failed() {
			return
		}
		for i, p := range procs {
			t.Logf("process %d log (file events, warnings, errors):", i+1)
			for _, l := range strings.Split(p.Stderr.(*syncBuffer).String(), "\n") {
				if (strings.Contains(l, "path=") || strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR")) && !strings.Contains(l, "level=DEBUG") {
					t.Log(l)
				}
			}
		}
		t.Logf("what the test did:\n%s", story.String())
	}()
	p := start()
	// started is what had been counted when the daemon came up: it is
	// killed only once it has committed more, so that every restart
	// resumes from a saved position (a first start leaves rotated files
	// to replay, by design).
	started := 0
	running := func(p *exec.Cmd) {
		for deadline := time.Now().Add(30 * time.Second); !strings.Contains(p.Stderr.(*syncBuffer).String(), "spraywatch running") && time.Now().Before(deadline); {
			time.Sleep(2 * time.Millisecond)
		}
		started = e.counted()
	}
	running(p)
	kills, down := 0, false
	var b strings.Builder
	for round := 0; round < 30; round++ {
		b.Reset()
		for i := 0; i < 300; i++ {
			b.WriteString(e.benignLine(e.written))
			b.WriteByte('\n')
			e.written++
		}
		if _, err := w.WriteString(b.String()); err != nil {
			t.Fatal(err)
		}
		e.write(w, 5)
		if round%6 == 1 || round%6 == 4 {
			// Killed while it reads the lines just written; down across
			// the next rotation (a rename, or a copytruncate) for the
			// first two kills of each style, restarted at once after
			// the others.
			for deadline := time.Now().Add(30 * time.Second); e.counted() == started && time.Now().Before(deadline); {
				time.Sleep(2 * time.Millisecond)
			}
			time.Sleep(time.Duration(kills%4) * 7 * time.Millisecond)
			p.Process.Signal(syscall.SIGKILL)
			p.Wait()
			kills++
			fmt.Fprintf(&story, "round %d: kill -9 (%d lines written, %d counted)\n", round, e.written, e.counted())
			if kills <= 4 {
				down = true
			} else {
				p = start()
				running(p)
			}
		}
		time.Sleep(25 * time.Millisecond)
		switch round % 6 {
		case 2, 5:
			fmt.Fprintf(&story, "round %d: rotate (%s; %d lines written, %d counted)\n", round, map[bool]string{true: "rename", false: "copytruncate"}[round%6 == 2], e.written, e.counted())
		}
		switch round % 6 {
		case 2: // rename + create; late lines; the writer reopens later
			e.shift()
			e.compress("logs/access.log.2")
			os.Rename(e.path("logs/access.log"), e.path("logs/access.log.1"))
			e.write(w, 2)
			time.Sleep(15 * time.Millisecond)
			w.Close()
			f, err := os.OpenFile(e.path("logs/access.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			w = f
		case 5: // copytruncate, done while the writer pauses
			e.shift()
			e.copyFile("logs/access.log", "logs/access.log.1")
			os.Truncate(e.path("logs/access.log"), 0)
		}
		if down && (round%6 == 2 || round%6 == 5) {
			// Back up after the rotation it missed.
			p, down = start(), false
			running(p)
		}
	}
	w.Close()
	if down {
		p = start()
		running(p)
	}
	for deadline := time.Now().Add(30 * time.Second); e.counted() < e.written && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	p.Process.Signal(syscall.SIGTERM)
	if err := p.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v\n%s", err, p.Stderr.(*syncBuffer).String())
	}
	if got := e.counted(); got != e.written {
		t.Fatalf("counted %d lines, want %d", got, e.written)
	}
	t.Logf("%d lines written across rotations and %d kills", e.written, kills)
	e.check()
}

// As systemd runs it: Type=notify messages on NOTIFY_SOCKET (READY,
// WATCHDOG pings, RELOADING on SIGHUP, STOPPING on SIGTERM), as an
// unprivileged user (nobody, when the test runs as root) that cannot read
// one of the logs: that is logged and retried while everything else is
// read, and read once permission is granted.
func TestRunSystemdNotifyAndPermissions(t *testing.T) {
	e := newRTEnv(t, "logs/access.log", "3s")
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	withLocked := strings.Replace(string(cfg), "sources:\n", "sources:\n  - name: locked\n    format: nginx\n    paths: [logs/locked.log]\n    log_format: combined\n    identity: {remote_user: true}\n", 1)
	if err := os.WriteFile(e.config, []byte(withLocked), 0o644); err != nil {
		t.Fatal(err)
	}
	locked := e.create("logs/locked.log")
	fmt.Fprintf(locked, "198.51.100.9 - alice [%s] \"GET / HTTP/1.1\" 200 5 \"-\" \"curl\"\n", e.base.Format("02/Jan/2006:15:04:05 -0700"))
	e.written++
	if err := os.Chmod(e.path("logs/locked.log"), 0); err != nil {
		t.Fatal(err)
	}
	w := e.create("logs/access.log")
	e.write(w, 50)

	bin := e.path("spraywatch.test")
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	sockPath := e.path("notify.sock")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := sock.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	cmd := exec.Command(bin, "run", "--config", e.config)
	cmd.Env = append(os.Environ(), rtMainEnv+"=1", "NOTIFY_SOCKET="+sockPath, "WATCHDOG_USEC=300000")
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if os.Getuid() == 0 {
		const nobody = 65534
		for _, p := range []string{filepath.Dir(e.dir), e.dir, e.path("logs")} {
			os.Chmod(p, 0o755)
		}
		os.MkdirAll(e.path("state"), 0o700)
		os.Chown(e.path("state"), nobody, nobody)
		os.Chmod(sockPath, 0o777)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	expect := func(want string) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case m := <-msgs:
				if strings.Contains(m, want) {
					return
				}
			case <-deadline:
				t.Fatalf("no %q from the daemon; log:\n%s", want, stderr.String())
			}
		}
	}
	expect("READY=1")
	expect("WATCHDOG=1")
	e.waitCounted(nil, e.written-1)
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(stderr.String(), "permission denied"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("unreadable file not reported:\n%s", stderr.String())
		}
	}
	if err := os.Chmod(e.path("logs/locked.log"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.waitCounted(nil, e.written)
	cmd.Process.Signal(syscall.SIGHUP)
	expect("RELOADING=1")
	expect("READY=1")
	e.write(w, 100)
	e.waitCounted(nil, e.written)
	cmd.Process.Signal(syscall.SIGTERM)
	expect("STOPPING=1")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v\n%s", err, stderr.String())
	}
	e.check()
}

// run judges on event time exactly as replay does: the same log gives the
// same incidents either way.
func TestRunMatchesReplay(t *testing.T) {
	e := newRTEnv(t, "logs/access.log", "3s")
	f := e.create("logs/access.log")
	if _, err := loggen.Write(f, loggen.Options{Start: e.base.Add(-6 * time.Hour), Duration: 6 * time.Hour, Clients: 300, Lines: 30_000, Seed: 7,
		Spray: true, BruteForce: true, Stuffing: true, Compromise: true, NAT: true, Stale: true}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(e.path("logs/access.log"))
	if err != nil {
		t.Fatal(err)
	}
	e.written = bytes.Count(raw, []byte("\n"))
	d := e.start()
	e.waitCounted(d, e.written)
	e.stop(d)
	s, err := detect.Open(e.path("state/spraywatch.db"), detect.StoreOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	live, err := s.Incidents(context.Background(), detect.IncidentFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut syncBuffer
	if code := run(context.Background(), []string{"replay", "--config", e.config, "--db", e.path("replay.db"), "--no-progress",
		"--output", "json", e.path("logs/access.log")}, &out, &errOut); code != 0 {
		t.Fatalf("replay exited %d: %s", code, errOut.String())
	}
	shape := func(kind string, attempts int64, identities int) string {
		return fmt.Sprintf("%s/%d/%d", kind, attempts, identities)
	}
	var got, want []string
	for _, inc := range live {
		got = append(got, shape(inc.Kind, inc.Attempts, inc.Identities))
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var inc detect.Incident
		if err := json.Unmarshal([]byte(line), &inc); err != nil {
			t.Fatalf("replay output %q: %v", line, err)
		}
		want = append(want, shape(inc.Kind, inc.Attempts, inc.Identities))
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("run found %v\nreplay found %v", got, want)
	}
	if len(got) < 4 {
		t.Errorf("only %v: the log hides a spray, a brute force, a stuffing run and a compromise", got)
	}
}
