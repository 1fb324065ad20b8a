package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// check warns about secret files others can read, as run does, and names
// the key that points at each.
func TestCheckWarnsAboutOpenSecretFiles(t *testing.T) {
	dir := t.TempDir()
	logs, _ := filepath.Abs("../../testdata/config/logs/api.log")
	key := filepath.Join(dir, "fingerprint.key")
	token := filepath.Join(dir, "slack.token")
	os.WriteFile(key, []byte(strings.Repeat("k", 32)), 0o644)
	os.WriteFile(token, []byte("xoxb-"+strings.Repeat("1", 40)), 0o640)
	cfg := `fingerprint_secret_file: ` + key + `
database: ` + filepath.Join(dir, "sw.db") + `
sources:
  - name: api
    format: nginx
    paths: [` + logs + `]
    log_format: '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" key=$api_key_prefix rt=$request_time'
    credential: {field: api_key_prefix, kind: prefix}
    identity: {path: ["/api/v1/clients/{identity}/"]}
    timezone: UTC
alerts:
  - type: slack
    token_file: ` + token + `
    channel: "#security"
`
	file := filepath.Join(dir, "spraywatch.yml")
	os.WriteFile(file, []byte(cfg), 0o600)
	report, err := checkReport(t, file)
	if err != nil {
		t.Fatalf("check failed on a working config: %v\n%s", err, report)
	}
	for _, want := range []string{
		"warning: fingerprint_secret_file: " + key + " is readable by others; chmod 600 it",
		"warning: alerts[0].token_file: " + token + " is readable by others; chmod 600 it",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	os.Chmod(key, 0o600)
	os.Chmod(token, 0o600)
	if report, _ := checkReport(t, file); strings.Contains(report, "warning") {
		t.Errorf("warnings for files only their owner reads:\n%s", report)
	}
}

// A log check cannot open is an error that says what happened, once. As
// root (CI) the check runs as nobody, since root reads every file.
func TestCheckUnreadableLog(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "api.log")
	os.WriteFile(log, []byte("x\n"), 0o000)
	file := filepath.Join(dir, "spraywatch.yml")
	os.WriteFile(file, []byte("sources: [{name: api, format: nginx, paths: ["+log+"], identity: {remote_user: true}}]\n"), 0o644)
	var report string
	var err error
	if os.Geteuid() == 0 {
		const nobody = 65534
		for _, p := range []string{filepath.Dir(dir), dir} {
			os.Chmod(p, 0o755)
		}
		// The test binary may sit in a directory only root can enter.
		self, rerr := os.ReadFile(os.Args[0])
		if rerr != nil {
			t.Fatal(rerr)
		}
		bin := filepath.Join(dir, "spraywatch.test")
		if werr := os.WriteFile(bin, self, 0o755); werr != nil {
			t.Fatal(werr)
		}
		cmd := exec.Command(bin, "check", "--config", file)
		cmd.Env = append(os.Environ(), rtMainEnv+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		var out []byte
		out, err = cmd.CombinedOutput()
		report = string(out)
	} else {
		report, err = checkReport(t, file)
	}
	want := "error: cannot open " + log + ": permission denied (run check as the user spraywatch runs as)\n"
	if err == nil || !strings.Contains(report, want) || strings.Count(report, log) != 1 {
		t.Errorf("err %v; report lacks %q (once):\n%s", err, want, report)
	}
}

// check warns about what would stop run at start although the config is
// valid: a database under a path that is a file, a metrics address taken.
func TestCheckWarnsAboutState(t *testing.T) {
	dir := t.TempDir()
	logs, _ := filepath.Abs("../../testdata/config/logs/api.log")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	notDir := filepath.Join(dir, "file")
	os.WriteFile(notDir, nil, 0o600)
	file := filepath.Join(dir, "spraywatch.yml")
	os.WriteFile(file, []byte("database: "+notDir+"/sw.db\nfingerprint_secret_file: "+dir+"/fp.key\nmetrics_listen: "+l.Addr().String()+
		"\nsources: [{name: api, format: nginx, paths: ["+logs+"], credential: {field: api_key_prefix}, identity: {path: [\"/api/v1/clients/{identity}/\"]}, log_format: '"+
		`$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" key=$api_key_prefix rt=$request_time`+"'}]\n"), 0o600)
	report, _ := checkReport(t, file)
	for _, want := range []string{
		"warning: database: " + notDir + "/sw.db: " + notDir + " is not a directory, so run would stop at start",
		"warning: metrics_listen: " + l.Addr().String() + " cannot be listened on (bind: address already in use), so run would stop at start; is another spraywatch running?",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "fingerprint_secret_file") {
		t.Errorf("a secret that run can create is reported:\n%s", report)
	}
}

// A judge reads no logs: check --role judge validates the config without
// reading the sources' paths, which a judge host does not have.
func TestCheckJudgeReadsNoLogs(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "judge.yml")
	os.WriteFile(file, []byte("database: "+dir+"/sw.db\nsources: [{name: api, format: nginx, paths: [/nonexistent/api.log], log_format: combined, identity: {remote_user: true}}]\n"), 0o600)
	var out, errb bytes.Buffer
	g := &globals{stdout: &out, stderr: &errb, logLevel: "warn"}
	if err := runCheck(context.Background(), g, &checkFlags{config: file, role: roleJudge}, checkNow); err != nil || !strings.Contains(out.String(), "ok (judge") {
		t.Errorf("check --role judge: %v\n%s%s", err, out.String(), errb.String())
	}
	if report, err := checkReport(t, file); err == nil || !strings.Contains(report, "/nonexistent/api.log") {
		t.Errorf("check (all) of a missing log: %v\n%s", err, report)
	}
}

// A source whose paths name only rotated or compressed files, or a
// directory, is one run would never read: check says so (and still checks
// the rotated files, which a replay reads).
func TestCheckWarnsAboutPathsRunDoesNotFollow(t *testing.T) {
	dir := t.TempDir()
	line := `203.0.113.7 - - [30/Nov/2026:10:00:00 +0000] "GET /api/v1/clients/c1/ HTTP/1.1" 401 12 "-" "curl/8"` + "\n"
	os.WriteFile(filepath.Join(dir, "access.log.1"), []byte(line), 0o644)
	for _, c := range []struct{ path, want string }{
		{filepath.Join(dir, "access.log.*"), "matches only rotated or compressed files (1, such as access.log.1)"},
		{dir, "is a directory: name its files"},
	} {
		file := filepath.Join(dir, "spraywatch.yml")
		os.WriteFile(file, []byte("sources: [{name: api, format: nginx, paths: ["+c.path+"], identity: {remote_user: true}}]\n"), 0o644)
		report, _ := checkReport(t, file)
		if !strings.Contains(report, "warning: paths[0]: "+c.path+" "+c.want) {
			t.Errorf("paths %s: report lacks %q:\n%s", c.path, c.want, report)
		}
	}
}

// proxyLog writes n failed requests and n successes in format: werkzeug's
// and the app's lines for flask, the combined layout for nginx, the
// README's layout with X-Forwarded-For for gunicorn. failIP and okIP give
// each line's address.
func proxyLog(t *testing.T, dir, format string, n int, failIP, okIP func(i int) string) string {
	t.Helper()
	var b strings.Builder
	for i := range n {
		for k, ip := range []string{failIP(i), okIP(i)} {
			status, sec := []int{401, 200}[k], (2*i+k)%60
			id := fmt.Sprintf("client-%03d", i%200)
			switch format {
			case "flask":
				if status == 401 {
					fmt.Fprintf(&b, "[2026-11-28 16:%02d:%02d,000] WARNING in app: auth failure client_id=%s key_prefix=sk_live_%04d ip=%s status=401\n", i/30%60, sec, id, i, ip)
				}
				fmt.Fprintf(&b, "127.0.0.1 - - [28/Nov/2026 16:%02d:%02d] \"GET /api/v1/clients/%s/resource HTTP/1.1\" %d -\n", i/30%60, sec, id, status)
			case "nginx":
				fmt.Fprintf(&b, "%s - - [28/Nov/2026:16:%02d:%02d +0000] \"GET /api/v1/clients/%s/resource HTTP/1.1\" %d 25 \"-\" \"c/1\" key=sk_live_%04d\n", ip, i/30%60, sec, id, status, i)
			case "gunicorn":
				fmt.Fprintf(&b, "%s - - [28/Nov/2026:16:%02d:%02d +0000] \"GET /api/v1/clients/%s/resource HTTP/1.1\" %d 25 \"-\" \"c/1\" key=\"sk_live_%04d\"\n", ip, i/30%60, sec, id, status, i)
			}
		}
	}
	log := filepath.Join(dir, format+".log")
	if err := os.WriteFile(log, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return log
}

// check warns when a proxy's address stands for the clients', and says how
// a forwarded-for address field is read.
func TestCheckProxyWarnings(t *testing.T) {
	client := func(i int) string { return fmt.Sprintf("198.51.%d.%d", i%7, 1+i%200) }
	lb := func(int) string { return "10.0.0.2" }
	loop := func(int) string { return "127.0.0.1" }
	const nginxLayout = `'$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" key=$api_key_prefix'`
	const gunicornLayout = `'%({x-forwarded-for}i)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" key="%({x-api-key}i)s"'`
	tests := []struct {
		name, format, extra string
		failIP, okIP        func(int) string
		want, not           []string
	}{
		{"nginx behind a load balancer", "nginx", "log_format: " + nginxLayout + "\n    credential: {field: api_key_prefix, kind: prefix}", lb, lb,
			[]string{"warning: 200 of 200 events come from 10.0.0.2: every attack looks like one address", "real_ip_header"}, nil},
		{"nginx with its clients' addresses", "nginx", "log_format: " + nginxLayout + "\n    credential: {field: api_key_prefix, kind: prefix}", client, client,
			nil, []string{"come from", "client writes"}},
		{"only successes through a proxy", "nginx", "log_format: " + nginxLayout + "\n    credential: {field: api_key_prefix, kind: prefix}", client, loop,
			[]string{"warning: all 100 successes come from 127.0.0.1 while failures come from 100 other addresses: a compromise"}, nil},
		{"werkzeug behind nginx without ProxyFix", "flask", "timezone: UTC", client, client,
			[]string{"warning: all 100 successes come from 127.0.0.1", "ProxyFix", "warning: no werkzeug access line joined an app line (100 app lines, 200 access lines)"}, nil},
		{"X-Forwarded-For without trusted_proxies", "gunicorn", "log_format: " + gunicornLayout + "\n    fields: {ip: \"{x-forwarded-for}i\"}\n    credential: {field: \"{x-api-key}i\"}", client, client,
			[]string{`warning: fields.ip: "{x-forwarded-for}i" is a header the client writes: the rightmost entry that is not a trusted proxy is the client`, "trusted_proxies is not set"}, nil},
		{"X-Forwarded-For with trusted_proxies", "gunicorn", "log_format: " + gunicornLayout + "\n    fields: {ip: \"{x-forwarded-for}i\"}\n    credential: {field: \"{x-api-key}i\"}\n    trusted_proxies: [10.0.0.0/8, 203.0.113.7]", client, client,
			[]string{`note: fields.ip: "{x-forwarded-for}i" is a header the client writes`, "trusted: 10.0.0.0/8, 203.0.113.7"}, []string{"warning: fields.ip"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			log := proxyLog(t, dir, tt.format, 100, tt.failIP, tt.okIP)
			cfg := "database: " + filepath.Join(dir, "sw.db") + "\nsources:\n  - name: api\n    format: " + tt.format + "\n    paths: [" + log + "]\n    identity: {path: [\"/api/v1/clients/{identity}/\"]}\n    " + tt.extra + "\n"
			file := filepath.Join(dir, "spraywatch.yml")
			os.WriteFile(file, []byte(cfg), 0o600)
			report, err := checkReport(t, file)
			if err != nil {
				t.Fatalf("check: %v\n%s", err, report)
			}
			for _, w := range tt.want {
				if !strings.Contains(report, w) {
					t.Errorf("report lacks %q:\n%s", w, report)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(report, w) {
					t.Errorf("report has %q:\n%s", w, report)
				}
			}
		})
	}
}

// trusted_proxies: unset keeps the defaults (nil), [] trusts none, and an
// address is a one-address prefix.
func TestTrustedProxiesOption(t *testing.T) {
	for yml, want := range map[string]string{"": "nil", "trusted_proxies: []": "[]", "trusted_proxies: [10.0.0.1, 198.51.100.0/24, '2001:db8::/32']": "[10.0.0.1/32 198.51.100.0/24 2001:db8::/32]"} {
		cfg, err := ParseConfig([]byte("sources: [{name: a, format: nginx, identity: {remote_user: true}, fields: {ip: http_x_forwarded_for}, log_format: '$remote_addr $http_x_forwarded_for [$time_local] \"$request\" $status'}]\n"), "")
		if yml != "" {
			cfg, err = ParseConfig([]byte("sources: [{name: a, format: nginx, identity: {remote_user: true}, "+strings.Replace(yml, ": ", ": ", 1)+"}]\n"), "")
		}
		if err != nil {
			t.Fatalf("%s: %v", yml, err)
		}
		o, err := cfg.Sources[0].options(nil)
		if err != nil {
			t.Fatalf("%s: %v", yml, err)
		}
		got := fmt.Sprint(o.TrustedProxies)
		if o.TrustedProxies == nil {
			got = "nil"
		}
		if got != want {
			t.Errorf("%q: TrustedProxies %s, want %s", yml, got, want)
		}
	}
}
