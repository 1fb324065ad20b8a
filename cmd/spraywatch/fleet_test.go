package main

// End-to-end tests of a fleet on a real PostgreSQL: agents and judges are
// real spraywatch processes (this test binary re-run as main), each agent
// tailing its own log, the judges sharing the database. A spray spread
// over the nodes must be one incident; kill -9 of an agent or of the
// active judge, and the database going away, must neither lose nor repeat
// a line, an incident or an alert. Deadlines here bound polling, except
// the two the fleet must meet (an incident within 2 s of the line that
// crosses the threshold, a takeover within 10 s).

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/alert/slack"
	"github.com/spraywatch/spraywatch/alert/slack/slacktest"
	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/detect/postgres/pgtest"
	"github.com/spraywatch/spraywatch/ingest/loggen"
)

const fleetConfig = `database: %[1]s
database_password_file: %[2]s/pgpass
node: %[3]s
fingerprint_secret_file: %[2]s/fingerprint.key
start_at: beginning
poll_interval: 20ms
flush_interval: 100ms
node_timeout: 3s
lateness: 5s
metrics_listen: 127.0.0.1:%[4]d
log: {level: debug}
alerts:
  - type: file
    path: %[2]s/%[3]s.alerts.jsonl
    format: json
  - type: slack
    token_file: %[2]s/slack-token
    channel: C0FAKE
    api_url: %[7]s
    updates: thread
    rate: 100
    cooldown: 1ms
sources:
  - name: api
    format: nginx
    paths: [%[2]s/%[3]s.log]
    log_format: '%[5]s'
    credential: {field: api_key_prefix, kind: prefix}
    identity: {path: ["%[6]s"]}
    timezone: UTC
`

type fleet struct {
	t   *testing.T
	dir string
	srv *pgtest.Server // nil on a shared server
	url string
	// procURL is the database URL the processes use: url, or a proxy's.
	procURL string
	db      *sql.DB
	procs   map[string]*fleetProc
	logs    map[string]*os.File
	lines   map[string]int // lines written per node
	// slack is the fake Slack every judge's bot posts to, one reply in the
	// incident's thread per version.
	slack *slacktest.Server
}

type fleetProc struct {
	name, role, config string
	port               int
	cmd                *exec.Cmd
	stderr             *syncBuffer
}

// newFleet makes a database (on a server of its own when the test must stop
// it), the shared fingerprint secret and password file, and a config per
// process name.
func newFleet(t *testing.T, ownServer bool) *fleet {
	t.Helper()
	f := &fleet{t: t, dir: t.TempDir(), procs: map[string]*fleetProc{}, logs: map[string]*os.File{}, lines: map[string]int{}, slack: slacktest.New(t)}
	var pw string
	if ownServer {
		f.srv = pgtest.Start(t)
		f.url, pw = f.srv.CreateDatabase(t), pgtest.Password
	} else {
		f.url, pw = pgtest.Database(t)
	}
	writeFile(t, filepath.Join(f.dir, "pgpass"), pw+"\n", 0o600)
	writeFile(t, filepath.Join(f.dir, "fingerprint.key"), strings.Repeat("k", 32), 0o600)
	writeFile(t, filepath.Join(f.dir, "slack-token"), "xoxb-fake-fleet-token\n", 0o600)
	f.procURL = f.url
	u, _ := url.Parse(f.url)
	u.User = url.UserPassword(u.User.Username(), pw)
	db, err := sql.Open("pgx", u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f.db = db
	return f
}

// start starts a process: names web-N are agents, judge-N judges.
func (f *fleet) start(name string, env ...string) *fleetProc {
	f.t.Helper()
	p := f.procs[name]
	if p == nil {
		p = &fleetProc{name: name, role: roleAgent, port: integFreePort(f.t)}
		switch {
		case strings.HasPrefix(name, "judge"):
			p.role = roleJudge
		case strings.HasPrefix(name, "all"):
			p.role = roleAll
		}
		p.config = filepath.Join(f.dir, name+".yml")
		writeFile(f.t, p.config, fmt.Sprintf(fleetConfig, f.procURL, f.dir, name, p.port, loggen.LogFormat, loggen.IdentityPath, f.slack.APIURL()), 0o644)
		if p.role != roleJudge {
			f.logs[name] = f.open(name)
		}
		f.procs[name] = p
	}
	p.cmd = exec.Command(os.Args[0], "run", "--config", p.config, "--role", p.role)
	p.cmd.Env = append(append(os.Environ(), rtMainEnv+"=1"), env...)
	p.stderr = &syncBuffer{}
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	cmd := p.cmd
	f.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if f.t.Failed() {
			f.t.Logf("%s log:\n%s", name, lastLines(p.stderr.String(), 40))
		}
	})
	return p
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (f *fleet) open(node string) *os.File {
	w, err := os.OpenFile(filepath.Join(f.dir, node+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { w.Close() })
	return w
}

func (f *fleet) kill(name string) {
	f.t.Helper()
	p := f.procs[name]
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		f.t.Fatal(err)
	}
	p.cmd.Wait()
}

func (f *fleet) stop(name string) {
	f.t.Helper()
	p := f.procs[name]
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.cmd.Wait(); err != nil {
		f.t.Errorf("%s after SIGTERM: %v\n%s", name, err, lastLines(p.stderr.String(), 30))
	}
}

// write appends lines to a node's log.
func (f *fleet) write(node string, lines ...string) {
	f.t.Helper()
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if _, err := f.logs[node].WriteString(b.String()); err != nil {
		f.t.Fatal(err)
	}
	f.lines[node] += len(lines)
}

func fleetLine(at time.Time, ip, identity, key string, status int) string {
	return fmt.Sprintf(`%s - - [%s] "POST /api/v1/clients/%s/token HTTP/1.1" %d 32 "-" "t/1.0" key=%s rt=0.004`,
		ip, at.UTC().Format("02/Jan/2006:15:04:05 -0700"), identity, status, key)
}

// counted is the lines stored for a node.
func (f *fleet) counted(node string) int {
	var n int
	if err := f.db.QueryRow(`SELECT COALESCE(SUM(count), 0) FROM attempts WHERE node = $1`, node).Scan(&n); err != nil {
		return -1
	}
	return n
}

func (f *fleet) waitCounted(d time.Duration) {
	f.t.Helper()
	deadline := time.Now().Add(d)
	for {
		done := true
		for node, want := range f.lines {
			if f.counted(node) < want {
				done = false
			}
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			for node, want := range f.lines {
				f.t.Errorf("node %s: %d lines counted, want %d", node, f.counted(node), want)
			}
			f.t.FailNow()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (f *fleet) checkCounts() {
	f.t.Helper()
	for node, want := range f.lines {
		if got := f.counted(node); got != want {
			f.t.Errorf("node %s: stored counts add up to %d lines, want exactly %d written (lost or counted twice)", node, got, want)
		}
	}
}

func (f *fleet) incidents(kind string) []*detect.Incident {
	f.t.Helper()
	rows, err := f.db.Query(`SELECT body FROM incidents WHERE kind = $1 ORDER BY id`, kind)
	if err != nil {
		f.t.Fatal(err)
	}
	defer rows.Close()
	var out []*detect.Incident
	for rows.Next() {
		var body []byte
		rows.Scan(&body)
		inc := &detect.Incident{}
		if err := json.Unmarshal(body, inc); err != nil {
			f.t.Fatal(err)
		}
		out = append(out, inc)
	}
	return out
}

// alerts returns every alert the judges delivered, as "id/version", in
// the order of the files.
func (f *fleet) alerts(kind string) []string {
	var out []string
	for name, p := range f.procs {
		if p.role == roleJudge {
			out = append(out, f.alertsOf(name, kind)...)
		}
	}
	return out
}

// alertsOf returns what one judge's file sink wrote, in order.
func (f *fleet) alertsOf(name, kind string) []string {
	file, err := os.Open(filepath.Join(f.dir, name+".alerts.jsonl"))
	if err != nil {
		return nil
	}
	defer file.Close()
	var out []string
	sc := bufio.NewScanner(file)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var a struct {
			ID      int64  `json:"id"`
			Version int    `json:"version"`
			Kind    string `json:"kind"`
		}
		if json.Unmarshal(sc.Bytes(), &a) == nil && (kind == "" || a.Kind == kind) {
			out = append(out, fmt.Sprintf("%d/%d", a.ID, a.Version))
		}
	}
	return out
}

// checkNoAlertTwice fails on any alert delivered twice, except the one
// that a judge killed with kill -9 wrote last: delivery is at least once,
// and a judge that dies after its sink took a message but before it
// recorded that leaves the message pending for the next judge (a Slack bot
// then edits its message instead of posting again).
func (f *fleet) checkNoAlertTwice(killed ...string) {
	f.t.Helper()
	inFlight := map[string]bool{}
	for _, name := range killed {
		if list := f.alertsOf(name, ""); len(list) > 0 {
			inFlight[list[len(list)-1]] = true
		}
	}
	seen := map[string]bool{}
	for _, a := range f.alerts("") {
		if seen[a] && !inFlight[a] {
			f.t.Errorf("alert %s delivered twice", a)
		}
		if seen[a] && inFlight[a] {
			f.t.Logf("alert %s, in flight when its judge was killed, delivered again", a)
			delete(inFlight, a)
		}
		seen[a] = true
	}
}

// slackDuplicates returns, for every incident version the fake Slack's
// channel shows more than once (its thread replies included) and every
// incident posted more than once at the top, a line saying so; and what
// the channel shows, for the failure message.
func (f *fleet) slackDuplicates() (dups []string, shown string) {
	type key struct{ id, version int64 }
	seen, tops := map[key]int{}, map[int64]int{}
	var b strings.Builder
	for _, p := range f.slack.Channel() {
		var md struct {
			EventType    string         `json:"event_type"`
			EventPayload map[string]any `json:"event_payload"`
		}
		json.Unmarshal([]byte(p.Metadata), &md)
		id, _ := md.EventPayload["incident_id"].(float64)
		v, _ := md.EventPayload["version"].(float64)
		fmt.Fprintf(&b, "  ts %s thread %q %s %v/%v\n", p.TS, p.ThreadTS, md.EventType, id, v)
		if md.EventType != slack.EventIncident {
			continue
		}
		seen[key{int64(id), int64(v)}]++
		if p.ThreadTS == "" {
			tops[int64(id)]++
		}
	}
	for k, n := range seen {
		if n > 1 {
			dups = append(dups, fmt.Sprintf("incident %d version %d shown %d times", k.id, k.version, n))
		}
	}
	for id, n := range tops {
		if n > 1 {
			dups = append(dups, fmt.Sprintf("incident %d posted %d times at the top", id, n))
		}
	}
	return dups, b.String()
}

func (f *fleet) health(name string) (int, string) {
	return rtGet(f.t, fmt.Sprintf("http://127.0.0.1:%d/healthz", f.procs[name].port))
}

// activeJudge returns the judge holding the lease, by the database.
func (f *fleet) activeJudge() string {
	var holder string
	f.db.QueryRow(`SELECT holder FROM judge_lease`).Scan(&holder)
	for name, p := range f.procs {
		if p.role == roleJudge && p.cmd.Process != nil && strings.HasSuffix(holder, fmt.Sprintf("/%d", p.cmd.Process.Pid)) {
			return name
		}
	}
	return ""
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	waitShowing(t, d, what, cond, nil)
}

// waitShowing is waitUntil that, on timeout, prints what show returns: what
// the test saw instead.
func waitShowing(t *testing.T, d time.Duration, what string, cond func() bool, show func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			saw := ""
			if show != nil {
				saw = "; saw: " + show()
			}
			t.Fatalf("timed out waiting for %s%s", what, saw)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// state says what the fleet's database holds, for failure messages: lines
// counted per node against written, incidents, the outbox by state, and
// the judge lease.
func (f *fleet) state() string {
	var b strings.Builder
	for node, want := range f.lines {
		fmt.Fprintf(&b, "node %s counted %d of %d; ", node, f.counted(node), want)
	}
	for _, inc := range f.incidents("spray") {
		fmt.Fprintf(&b, "spray #%d v%d %d attempts %d identities; ", inc.ID, inc.Version, inc.Attempts, inc.Identities)
	}
	rows, err := f.db.Query(`SELECT destination, state, COUNT(*) FROM alert_outbox GROUP BY destination, state ORDER BY 1, 2`)
	if err == nil {
		for rows.Next() {
			var d, st string
			var n int
			rows.Scan(&d, &st, &n)
			fmt.Fprintf(&b, "outbox %s %s %d; ", d, st, n)
		}
		rows.Close()
	}
	var holder string
	var epoch int64
	f.db.QueryRow(`SELECT holder, epoch FROM judge_lease`).Scan(&holder, &epoch)
	fmt.Fprintf(&b, "lease %s epoch %d (active: %q)", holder, epoch, f.activeJudge())
	return b.String()
}

var nodes3 = []string{"web-1", "web-2", "web-3"}

// clockEveryNode writes one benign line to each of nodes3 and waits for
// them to be counted, so that every node has a clock.
func (f *fleet) clockEveryNode() {
	f.t.Helper()
	now := time.Now()
	for i, n := range nodes3 {
		f.write(n, fleetLine(now, fmt.Sprintf("198.18.0.%d", i+1), fmt.Sprintf("client-%d", i), "sk_live_c000", 200))
	}
	f.waitCounted(30 * time.Second)
}

// startThreeAndTwo starts an agent for each of nodes3 and two judges, and
// waits for one judge to be active.
func (f *fleet) startThreeAndTwo() {
	for _, n := range nodes3 {
		f.start(n)
	}
	f.start("judge-1")
	f.start("judge-2")
	waitUntil(f.t, 30*time.Second, "an active judge", func() bool { return f.activeJudge() != "" })
}

// Three agents, two judges: a spray of 60 identities from one address,
// spread round-robin over the three logs (20 a node, each under the
// threshold of 10... only at first), is one incident with every identity,
// raised within 2 s of the line that crosses the threshold; nothing is
// alerted twice.
func TestFleetSpraySpreadOverNodes(t *testing.T) {
	f := newFleet(t, false)
	f.startThreeAndTwo()
	f.clockEveryNode()
	var crossed time.Time
	for i := range 60 {
		node := nodes3[i%3]
		f.write(node, fleetLine(time.Now(), "203.0.113.66", fmt.Sprintf("victim-%03d", i), "sk_live_dead", 401))
		if i == 9 { // the tenth failed identity crosses spray's threshold
			crossed = time.Now()
			waitUntil(t, 30*time.Second, "the spray alert", func() bool { return len(f.alerts("spray")) > 0 })
			if took := time.Since(crossed); took > 2*time.Second {
				t.Errorf("spray alerted %s after the line that crossed the threshold, want within 2s", took.Round(time.Millisecond))
			} else {
				t.Logf("spray alerted %s after the crossing line", took.Round(time.Millisecond))
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.waitCounted(30 * time.Second)
	waitUntil(t, 30*time.Second, "the spray to cover 60 identities", func() bool {
		incs := f.incidents("spray")
		return len(incs) > 0 && incs[len(incs)-1].Identities >= 60
	})
	incs := f.incidents("spray")
	if len(incs) != 1 {
		t.Fatalf("%d spray incidents, want 1: %+v", len(incs), incs)
	}
	inc := incs[0]
	if inc.Identities != 60 || inc.Attempts != 60 || len(inc.IPs) != 1 || inc.IPs[0] != "203.0.113.66" {
		t.Errorf("spray: %d identities, %d attempts, addresses %v; want 60, 60, [203.0.113.66]", inc.Identities, inc.Attempts, inc.IPs)
	}
	var idents int
	f.db.QueryRow(`SELECT COUNT(*) FROM incident_identities WHERE incident = $1`, inc.ID).Scan(&idents)
	if idents != 60 {
		t.Errorf("incident_identities holds %d, want 60", idents)
	}
	evNodes := map[string]bool{}
	for _, p := range inc.Evidence {
		evNodes[p.Node] = true
	}
	if len(evNodes) != 3 {
		t.Errorf("evidence comes from nodes %v, want all three", evNodes)
	}
	for _, other := range []string{"distributed_spray", "low_and_slow_spray", "credential_stuffing", "brute_force"} {
		if n := len(f.incidents(other)); n != 0 {
			t.Errorf("%d %s incidents, want none", n, other)
		}
	}
	// alerts and explain read the fleet's database.
	code, out, errOut := runCLIEnv(t, map[string]string{envPasswordFile: filepath.Join(f.dir, "pgpass")}, "alerts", "--db", f.url, "--output", "json")
	if code != 0 || strings.Count(out, `"kind":"spray"`) != 1 {
		t.Errorf("alerts --db postgres: exit %d, %s %s", code, out, errOut)
	}
	code, out, errOut = runCLIEnv(t, map[string]string{envPasswordFile: filepath.Join(f.dir, "pgpass")}, "explain", "--db", f.url, fmt.Sprint(inc.ID))
	if code != 0 || !strings.Contains(out, "web-2") {
		t.Errorf("explain --db postgres: exit %d, %s %s", code, out, errOut)
	}
	for _, n := range nodes3 {
		f.stop(n)
	}
	f.stop("judge-1")
	f.stop("judge-2")
	f.checkCounts()
	f.checkNoAlertTwice()
}

func runCLIEnv(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	return runCLI(t, args...)
}

// A low-and-slow spray (one key, 30 identities, one try each, one every 30
// minutes from rotating addresses), split over three nodes, is found.
func TestFleetLowAndSlowSplit(t *testing.T) {
	f := newFleet(t, false)
	base := time.Now().Add(-16 * time.Hour).Truncate(time.Minute)
	for i := range 30 {
		node := nodes3[i%3]
		if f.logs[node] == nil {
			f.logs[node] = f.open(node)
		}
		f.write(node, fleetLine(base.Add(time.Duration(i)*30*time.Minute), fmt.Sprintf("192.0.2.%d", 10+i), fmt.Sprintf("victim-%03d", i), "sk_live_slow", 401))
	}
	f.start("judge-1")
	for _, n := range nodes3 {
		f.start(n)
	}
	f.waitCounted(30 * time.Second)
	waitUntil(t, 30*time.Second, "the low-and-slow incident", func() bool {
		incs := f.incidents("low_and_slow_spray")
		return len(incs) == 1 && incs[0].Identities == 30
	})
	if n := len(f.incidents("distributed_spray")) + len(f.incidents("spray")); n != 0 {
		t.Errorf("%d faster spray incidents, want none", n)
	}
}

// A finding judged from lines (here enumeration_oracle: unknown identities
// get 404, wrong keys 401) is raised by each agent on its own node's lines
// and becomes one incident on the judge, with evidence from every node,
// alerted once.
func TestFleetLineFindings(t *testing.T) {
	f := newFleet(t, false)
	f.startThreeAndTwo()
	for k, n := range nodes3 {
		var lines []string
		for i := range 6 {
			lines = append(lines,
				fleetLine(time.Now(), fmt.Sprintf("198.51.%d.%d", k, i+1), fmt.Sprintf("ghost-%d-%d", k, i), "sk_live_0bad", 404),
				fleetLine(time.Now(), fmt.Sprintf("198.51.%d.%d", k, i+101), fmt.Sprintf("client-%d-%d", k, i), "sk_live_0bad", 401))
		}
		f.write(n, lines...)
	}
	f.waitCounted(30 * time.Second)
	nodesOf := func(inc *detect.Incident) map[string]bool {
		out := map[string]bool{}
		for _, p := range inc.Evidence {
			out[p.Node] = true
		}
		return out
	}
	waitShowing(t, 30*time.Second, "one enumeration_oracle incident with evidence from every node", func() bool {
		incs := f.incidents(detect.KindEnumeration)
		return len(incs) == 1 && len(nodesOf(incs[0])) == 3
	}, func() string {
		var b strings.Builder
		for _, inc := range f.incidents(detect.KindEnumeration) {
			fmt.Fprintf(&b, "#%d v%d %d lines nodes %v: %s; ", inc.ID, inc.Version, inc.Attempts, nodesOf(inc), inc.Summary)
		}
		return b.String() + f.state()
	})
	inc := f.incidents(detect.KindEnumeration)[0]
	// Each node counts the answers that showed the oracle: min_samples (5)
	// of each kind.
	if inc.Attempts != 30 || inc.Group != "route=/api/v1/clients/{identity}/" {
		t.Errorf("enumeration incident: %d lines, group %q; want 3 nodes x 10 answers, and its route", inc.Attempts, inc.Group)
	}
	waitShowing(t, 10*time.Second, "its alert", func() bool { return len(f.alerts(detect.KindEnumeration)) > 0 }, f.state)
	time.Sleep(time.Second) // more alerts would come by now
	if got := f.alerts(detect.KindEnumeration); len(got) != 1 {
		t.Errorf("enumeration alerts %v, want one", got)
	}
	dups, _ := f.slackDuplicates()
	for _, d := range dups {
		t.Errorf("slack: %s", d)
	}
	t.Logf("enumeration_oracle #%d: %d lines from nodes %v; %s", inc.ID, inc.Attempts, nodesOf(inc), inc.Summary)
}

// kill -9 of an agent while it writes heavily, then a restart: exact
// counts. kill -9 of the active judge: the standby takes over within 10 s,
// and no incident is lost or raised twice, no alert sent twice.
func TestFleetKill9(t *testing.T) {
	f := newFleet(t, false)
	f.startThreeAndTwo()
	// A writer pours lines into every node's log, with one spray attempt a
	// node per chunk, while processes are killed and restarted.
	spray := 0
	var stop, stopped chan struct{}
	write := func() {
		stop, stopped = make(chan struct{}), make(chan struct{})
		go func() {
			defer close(stopped)
			for c := 0; ; c++ {
				select {
				case <-stop:
					return
				default:
				}
				for _, n := range nodes3 {
					var lines []string
					now := time.Now()
					for i := range 100 {
						lines = append(lines, fleetLine(now, fmt.Sprintf("198.18.%d.%d", c%200, i+1), fmt.Sprintf("client-%04d", i), fmt.Sprintf("sk_live_%04x", i), 200))
					}
					lines = append(lines, fleetLine(now, "203.0.113.66", fmt.Sprintf("victim-%04d", spray), "sk_live_dead", 401))
					spray++
					f.write(n, lines...)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	halt := func() {
		close(stop)
		<-stopped
	}
	write()
	waitUntil(t, 30*time.Second, "web-2 to have flushed", func() bool { return f.counted("web-2") > 0 })
	time.Sleep(300 * time.Millisecond)
	f.kill("web-2") // mid-stream: its log keeps growing
	time.Sleep(500 * time.Millisecond)
	f.start("web-2")
	time.Sleep(500 * time.Millisecond)
	halt()
	f.waitCounted(60 * time.Second)
	f.checkCounts()
	waitShowing(t, 30*time.Second, "the spray incident", func() bool { return len(f.incidents("spray")) == 1 }, f.state)

	write()
	time.Sleep(300 * time.Millisecond)
	active := f.activeJudge()
	standby := map[string]string{"judge-1": "judge-2", "judge-2": "judge-1"}[active]
	f.kill(active) // while the spray goes on and its incident grows
	killed := time.Now()
	waitShowing(t, 10*time.Second, "the standby to take over", func() bool { return f.activeJudge() == standby }, f.state)
	t.Logf("standby took over %s after kill -9", time.Since(killed).Round(time.Millisecond))
	var metricsSeen string
	waitShowing(t, 10*time.Second, "the standby's metrics to say it is active", func() bool {
		_, metricsSeen = rtGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", f.procs[standby].port))
		return strings.Contains(metricsSeen, "spraywatch_judge_active 1") && strings.Contains(metricsSeen, `spraywatch_fleet_nodes{state="live"} 3`)
	}, func() string {
		return f.state() + "; judge metrics: " + grepLines(metricsSeen, "spraywatch_judge_active", "spraywatch_fleet_nodes")
	})
	time.Sleep(500 * time.Millisecond)
	halt()
	f.waitCounted(60 * time.Second)
	waitShowing(t, 30*time.Second, fmt.Sprintf("the spray to cover every identity (%d)", spray), func() bool {
		incs := f.incidents("spray")
		return len(incs) == 1 && incs[0].Identities == spray
	}, f.state)
	if incs := f.incidents("spray"); len(incs) != 1 || incs[0].Attempts != int64(spray) {
		t.Errorf("spray incidents %+v, want one of %d attempts", incs, spray)
	}
	t.Logf("%d spray attempts; lines per node %v", spray, f.lines)
	waitShowing(t, 30*time.Second, "the outbox to drain", func() bool {
		var n int
		f.db.QueryRow(`SELECT COUNT(*) FROM alert_outbox WHERE state IN ('pending', 'sending')`).Scan(&n)
		return n == 0
	}, f.state)
	// The file sink cannot be asked: the line a killed judge wrote last may
	// be written again. The Slack bot is asked: never twice.
	f.checkNoAlertTwice(active)
	dups, shown := f.slackDuplicates()
	for _, d := range dups {
		t.Errorf("slack: %s", d)
	}
	if len(dups) > 0 {
		t.Logf("the channel:\n%s", shown)
	}
	inc := f.incidents("spray")[0]
	if !strings.Contains(shown, fmt.Sprintf("spraywatch_incident %d/%d\n", inc.ID, inc.Version)) {
		t.Errorf("slack: the channel does not show spray #%d version %d, its newest:\n%s", inc.ID, inc.Version, shown)
	}
	t.Logf("slack: %d messages, none twice; the standby found %d alerts in doubt", len(f.slack.Channel()),
		strings.Count(f.procs[standby].stderr.String(), "alert in doubt"))
	f.checkCounts()
}

// grepLines returns the lines of s that hold any of words.
func grepLines(s string, words ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) && !strings.HasPrefix(l, "#") {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "; ")
}

// kill -9 of the active judge exactly in the window: Slack has taken the
// message (the fake posts it, then holds its answer back) and the judge
// has recorded nothing. The standby that takes over finds the alert in
// doubt, finds the message in the channel and does not post it again; the
// next version goes in its thread. Several rounds, each a new spray, each
// killing the judge then active.
func TestFleetJudgeKilledMidSend(t *testing.T) {
	f := newFleet(t, false)
	f.startThreeAndTwo()
	f.clockEveryNode()
	const rounds = 3
	recovered := 0
	for round := range rounds {
		held := len(f.slack.Channel())
		f.slack.AnswerMethod("chat.postMessage", slacktest.Answer{Delay: time.Minute, PostFirst: true})
		ip := fmt.Sprintf("203.0.113.%d", 100+round)
		for i := range 12 {
			f.write(nodes3[i%3], fleetLine(time.Now(), ip, fmt.Sprintf("victim-%d-%03d", round, i), "sk_live_dead", 401))
		}
		waitShowing(t, 30*time.Second, "a message posted and its answer held", func() bool { return len(f.slack.Channel()) > held }, f.state)
		active := f.activeJudge()
		f.kill(active)
		f.slack.AnswerMethod("chat.postMessage", slacktest.OK)
		standby := map[string]string{"judge-1": "judge-2", "judge-2": "judge-1"}[active]
		waitShowing(t, 10*time.Second, "the standby to take over", func() bool { return f.activeJudge() == standby }, f.state)
		// More of the spray: a new version, which goes in the thread.
		for i := 12; i < 15; i++ {
			f.write(nodes3[i%3], fleetLine(time.Now(), ip, fmt.Sprintf("victim-%d-%03d", round, i), "sk_live_dead", 401))
		}
		f.waitCounted(30 * time.Second)
		waitShowing(t, 30*time.Second, "the outbox to drain", func() bool {
			var n int
			f.db.QueryRow(`SELECT COUNT(*) FROM alert_outbox WHERE destination = 'slack' AND state IN ('pending', 'sending')`).Scan(&n)
			return n == 0
		}, f.state)
		recovered += strings.Count(f.procs[standby].stderr.String(), "alert in doubt was delivered before its sender stopped")
		f.start(active) // back, as the standby
	}
	// The judge may write an incident's last version after the outbox was
	// seen empty (it judges the last lines on its own tick): the newest
	// version of each must reach the channel, not within the last look.
	var missing []string
	waitShowing(t, 30*time.Second, "the channel to show every spray's newest version", func() bool {
		_, shown := f.slackDuplicates()
		missing = missing[:0]
		for _, inc := range f.incidents("spray") {
			if !strings.Contains(shown, fmt.Sprintf("spraywatch_incident %d/%d\n", inc.ID, inc.Version)) {
				missing = append(missing, fmt.Sprintf("#%d version %d", inc.ID, inc.Version))
			}
		}
		return len(missing) == 0
	}, func() string { return "missing " + strings.Join(missing, ", ") + "; " + f.state() })
	dups, shown := f.slackDuplicates()
	for _, d := range dups {
		t.Errorf("slack: %s", d)
	}
	if incs := f.incidents("spray"); len(incs) != rounds {
		t.Errorf("%d spray incidents, want %d: %s", len(incs), rounds, f.state())
	}
	// A judge's /healthz says what a judge does: it reads no sources; an
	// agent's that it reads them and alerts nothing itself.
	for name, want := range map[string]string{f.activeJudge(): "ok: active judge", map[string]string{"judge-1": "judge-2", "judge-2": "judge-1"}[f.activeJudge()]: "ok: standby judge", nodes3[0]: "ok: agent"} {
		var body string
		waitShowing(t, 30*time.Second, name+"'s /healthz to say "+want, func() bool {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", f.procs[name].port))
			if err != nil {
				body = err.Error()
				return false // starting
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			if want == "ok: agent" {
				return strings.HasPrefix(body, want) && strings.Contains(body, "source") && !strings.Contains(body, "alerts are delivered")
			}
			return strings.HasPrefix(body, want) && !strings.Contains(body, "source")
		}, func() string { return body })
	}
	if recovered < rounds {
		t.Errorf("the standbys found %d alerts in doubt already delivered, want %d (one a kill)", recovered, rounds)
	}
	if t.Failed() {
		t.Logf("the channel:\n%s", shown)
	}
	t.Logf("%d kills in the window: %d alerts found delivered, not sent again; %d messages, none twice", rounds, recovered, len(f.slack.Channel()))
}

const singleConfig = `database: %[1]s/spraywatch.db
fingerprint_secret_file: %[1]s/fingerprint.key
start_at: beginning
flush_interval: 100ms
metrics_listen: 127.0.0.1:%[2]d
log: {level: debug}
alerts:
  - type: slack
    token_file: %[1]s/slack-token
    channel: C0FAKE
    api_url: %[3]s
    updates: thread
    rate: 100
    cooldown: 1ms
sources:
  - name: api
    format: nginx
    paths: [%[1]s/access.log]
    log_format: '%[4]s'
    credential: {field: api_key_prefix, kind: prefix}
    identity: {path: ["%[5]s"]}
    timezone: UTC
`

// The same kill in the window on one node, --role all on SQLite: the same
// outbox, so the same promise. Slack takes the first message of a new
// incident and holds its answer; the daemon is killed; restarted, it finds
// the alert in doubt and the message in the channel, and posts nothing
// twice.
func TestRunKilledMidSendSQLite(t *testing.T) {
	f := &fleet{t: t, dir: t.TempDir(), slack: slacktest.New(t)}
	writeFile(t, filepath.Join(f.dir, "fingerprint.key"), strings.Repeat("k", 32), 0o600)
	writeFile(t, filepath.Join(f.dir, "slack-token"), "xoxb-fake-single-token\n", 0o600)
	config := filepath.Join(f.dir, "spraywatch.yml")
	writeFile(t, config, fmt.Sprintf(singleConfig, f.dir, integFreePort(t), f.slack.APIURL(), loggen.LogFormat, loggen.IdentityPath), 0o644)
	logf := f.open("access")
	var stderr *syncBuffer
	var cmd *exec.Cmd
	start := func() {
		cmd = exec.Command(os.Args[0], "run", "--config", config)
		cmd.Env = append(os.Environ(), rtMainEnv+"=1")
		stderr = &syncBuffer{}
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c, buf := cmd, stderr
		t.Cleanup(func() {
			c.Process.Kill()
			c.Wait()
			if t.Failed() {
				t.Logf("spraywatch log:\n%s", lastLines(buf.String(), 30))
			}
		})
	}
	db, err := sql.Open("sqlite3", filepath.Join(f.dir, "spraywatch.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	write := func(lines ...string) {
		for _, l := range lines {
			if _, err := logf.WriteString(l + "\n"); err != nil {
				t.Fatal(err)
			}
		}
	}
	const rounds = 3
	recovered := 0
	start()
	for round := range rounds {
		held := len(f.slack.Channel())
		f.slack.AnswerMethod("chat.postMessage", slacktest.Answer{Delay: time.Minute, PostFirst: true})
		ip := fmt.Sprintf("203.0.113.%d", 100+round)
		for i := range 12 {
			write(fleetLine(time.Now(), ip, fmt.Sprintf("victim-%d-%03d", round, i), "sk_live_dead", 401))
		}
		waitShowing(t, 30*time.Second, "a message posted and its answer held", func() bool { return len(f.slack.Channel()) > held },
			func() string { return lastLines(stderr.String(), 10) })
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		f.slack.AnswerMethod("chat.postMessage", slacktest.OK)
		start()
		for i := 12; i < 15; i++ {
			write(fleetLine(time.Now(), ip, fmt.Sprintf("victim-%d-%03d", round, i), "sk_live_dead", 401))
		}
		var pending int
		waitShowing(t, 30*time.Second, "the outbox to drain and the incident to grow", func() bool {
			var v int
			db.QueryRow(`SELECT COUNT(*) FROM alert_outbox WHERE state IN ('pending', 'sending')`).Scan(&pending)
			db.QueryRow(`SELECT COALESCE(MAX(version), 0) FROM alert_outbox WHERE incident = ? AND state = 'sent'`, round+1).Scan(&v)
			return pending == 0 && v > 1
		}, func() string { return fmt.Sprintf("%d pending; log: %s", pending, lastLines(stderr.String(), 10)) })
		recovered += strings.Count(stderr.String(), "alert in doubt was delivered before its sender stopped")
	}
	dups, shown := f.slackDuplicates()
	for _, d := range dups {
		t.Errorf("slack: %s", d)
	}
	if recovered < rounds {
		t.Errorf("the restarted daemons found %d alerts in doubt already delivered, want %d (one a kill)", recovered, rounds)
	}
	if t.Failed() {
		t.Logf("the channel:\n%s", shown)
	}
	t.Logf("%d kills in the window on SQLite: %d alerts found delivered, not sent again; %d messages, none twice", rounds, recovered, len(f.slack.Channel()))
}

// The database stopped for 30 s, then back: agents keep their positions
// and catch up, no line lost or counted twice; /healthz says so meanwhile.
func TestFleetDatabaseOutage(t *testing.T) {
	f := newFleet(t, true)
	for _, n := range nodes3 {
		f.start(n)
	}
	f.start("judge-1")
	waitUntil(t, 30*time.Second, "an active judge", func() bool { return f.activeJudge() == "judge-1" })
	f.start("judge-2") // a standby: it tries the lease every second
	write := func(k int) { f.writeBenign(nodes3, k) }
	write(0)
	f.waitCounted(30 * time.Second)
	if err := f.srv.StopServer(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	for k := 1; time.Since(down) < 30*time.Second; k++ {
		write(k)
		time.Sleep(500 * time.Millisecond)
	}
	for _, name := range []string{"web-1", "judge-1", "judge-2"} {
		if code, body := f.health(name); code != http.StatusServiceUnavailable || !strings.Contains(body, "database") {
			t.Errorf("%s /healthz during the outage: %d %q, want 503 naming the database", name, code, body)
		}
		if g := gauge(f.metricsOf(name), `spraywatch_health_failing{check="database"}`); g != 1 {
			t.Errorf(`%s during the outage: spraywatch_health_failing{check="database"} = %v, want 1`, name, g)
		}
	}
	// Taking the lease (tried every second) and reading the rows (every
	// poll) fail throughout: each is logged once, then summarised every
	// minute, not once a try.
	for _, name := range []string{"judge-1", "judge-2"} {
		var loud []string
		for _, l := range strings.Split(f.procs[name].stderr.String(), "\n") {
			if (strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR")) && (strings.Contains(l, "lease") || strings.Contains(l, "rows")) {
				loud = append(loud, l)
			}
		}
		if len(loud) > 3 {
			t.Errorf("%s logged %d warnings and errors about the lease and the rows in a 30 s outage, want each failure once:\n%s", name, len(loud), strings.Join(loud, "\n"))
		}
	}
	if err := f.srv.StartServer(); err != nil {
		t.Fatal(err)
	}
	f.waitCounted(60 * time.Second)
	f.checkCounts()
	for _, name := range []string{"web-1", "judge-1"} {
		waitUntil(t, 30*time.Second, name+" health back", func() bool { code, _ := f.health(name); return code == http.StatusOK })
	}
	// The judge judged every row once the database came back.
	waitUntil(t, 30*time.Second, "the judge to catch up", func() bool {
		var behind int
		f.db.QueryRow(`SELECT COUNT(*) FROM attempts a WHERE a.id > COALESCE((SELECT last_id FROM judge_cursors c WHERE c.node = a.node), 0)`).Scan(&behind)
		return behind == 0
	})
}

// blackHole is a TCP proxy between the processes and PostgreSQL that can
// stop forwarding without closing anything, as a network that drops
// packets does: bytes sent meanwhile (and a close) are held and go through
// when it forwards again, as TCP's retransmissions would deliver them; a
// connection opened meanwhile waits. Nobody gets a refusal or a reset.
type blackHole struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cond   *sync.Cond
	hole   bool
	// armed: the hole begins as soon as an agent's flush transaction sends
	// its COMMIT, before the answer comes back: the commit is then in
	// doubt for the agent.
	armed bool
}

// atNextAgentCommit makes the hole begin right after the next COMMIT of a
// transaction that inserted attempt rows has gone through to PostgreSQL.
func (b *blackHole) atNextAgentCommit() {
	b.mu.Lock()
	b.armed = true
	b.mu.Unlock()
}

func (b *blackHole) holding() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hole
}

func startBlackHole(t *testing.T, target string) *blackHole {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackHole{ln: ln, target: target}
	b.cond = sync.NewCond(&b.mu)
	t.Cleanup(func() {
		b.set(false)
		ln.Close()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go b.handle(c)
		}
	}()
	return b
}

func (b *blackHole) addr() string { return b.ln.Addr().String() }

// set starts (true) or ends the black hole.
func (b *blackHole) set(hole bool) {
	b.mu.Lock()
	b.hole = hole
	b.mu.Unlock()
	b.cond.Broadcast()
}

func (b *blackHole) wait() {
	b.mu.Lock()
	for b.hole {
		b.cond.Wait()
	}
	b.mu.Unlock()
}

func (b *blackHole) handle(c net.Conn) {
	b.wait()
	u, err := net.Dial("tcp", b.target)
	if err != nil {
		c.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	agent := &atomic.Bool{}
	go b.pump(u, c, &wg, true, agent)
	go b.pump(c, u, &wg, false, agent)
	wg.Wait()
	c.Close()
	u.Close()
}

// pump copies src to dst, holding every chunk while the hole lasts, then
// passes the end of src on (after what was held).
// agent is set once the connection prepared an agent's insert: an armed
// hole then begins when PostgreSQL's answer to its COMMIT (the
// CommandComplete tag) is on its way back, held like the rest.
func (b *blackHole) pump(dst, src net.Conn, wg *sync.WaitGroup, toServer bool, agent *atomic.Bool) {
	defer wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			switch {
			case toServer && strings.Contains(strings.ToLower(string(buf[:n])), "insert into attempts"):
				agent.Store(true)
			case !toServer && agent.Load() && strings.Contains(string(buf[:n]), "COMMIT\x00"):
				b.mu.Lock()
				if b.armed {
					b.armed, b.hole = false, true
				}
				b.mu.Unlock()
			}
			b.wait()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	b.wait()
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

// healthNow is /healthz of a process, or the error of asking it.
func (f *fleet) healthNow(name string) (int, string) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", f.procs[name].port))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The network to PostgreSQL drops every packet for 30 s while three agents
// write (no refusal, no reset: connections hang): agents and the judge keep
// their positions, /healthz says 503 naming the database meanwhile, and
// afterwards the counts are exact: no line lost or counted twice, even
// where a flush's commit was held in the network while its agent gave up
// on it.
func TestFleetDatabaseBlackHole(t *testing.T) {
	f := newFleet(t, false)
	hole := f.throughBlackHole()
	for _, n := range nodes3 {
		f.start(n)
	}
	f.start("judge-1")
	waitShowing(t, 30*time.Second, "an active judge", func() bool { return f.activeJudge() != "" }, f.state)
	f.holdACommit(hole, nodes3, 30*time.Second, "web-1", "judge-1")
	waitShowing(t, 60*time.Second, "the judge to catch up", func() bool {
		var behind int
		f.db.QueryRow(`SELECT COUNT(*) FROM attempts a WHERE a.id > COALESCE((SELECT last_id FROM judge_cursors c WHERE c.node = a.node), 0)`).Scan(&behind)
		return behind == 0
	}, f.state)
	f.checkCounts()
	// The agent whose COMMIT answer the hole held found that flush written.
	found := 0
	for _, n := range nodes3 {
		found += strings.Count(f.procs[n].stderr.String(), "written after all; its rows were not written again")
	}
	if found == 0 {
		t.Error("no agent reported its flush in doubt as written after all, though the hole began on an agent's COMMIT answer")
	}
	t.Logf("flushes in doubt found written after the hole: %d; lines per node %v", found, f.lines)
}

// writeBenign writes round k of benign traffic to each node's log: 50
// successful calls from 198.18.k.1-50.
func (f *fleet) writeBenign(nodes []string, k int) {
	for _, n := range nodes {
		var lines []string
		for i := range 50 {
			lines = append(lines, fleetLine(time.Now(), fmt.Sprintf("198.18.%d.%d", k%200, i+1), fmt.Sprintf("client-%04d", i), "sk_live_c000", 200))
		}
		f.write(n, lines...)
	}
}

// throughBlackHole puts a black hole between the processes started from
// now on and PostgreSQL.
func (f *fleet) throughBlackHole() *blackHole {
	u, _ := url.Parse(f.url)
	hole := startBlackHole(f.t, u.Host)
	u.Host = hole.addr()
	f.procURL = u.String()
	return hole
}

// holdACommit writes to nodes' logs until they are counted, then arms the
// hole to begin on the answer to a COMMIT of attempt rows, keeps writing
// for d while it holds, and requires each of health to answer 503 naming
// the database in the hole's last 10 s (or its whole length, if shorter).
// Once the hole ends it waits for every line to be counted, waits for a
// held commit to land, requires exact counts, and health to be back.
func (f *fleet) holdACommit(hole *blackHole, nodes []string, d time.Duration, health ...string) {
	t := f.t
	t.Helper()
	write := func(k int) { f.writeBenign(nodes, k) }
	write(0)
	f.waitCounted(30 * time.Second)
	hole.atNextAgentCommit()
	for k := 1000; !hole.holding(); k++ {
		if k > 1500 {
			t.Fatal("no flush of attempt rows committed in 10 s")
		}
		write(k)
		time.Sleep(20 * time.Millisecond)
	}
	down := time.Now()
	saw := map[string]string{}
	for k := 1; time.Since(down) < d; k++ {
		write(k)
		time.Sleep(500 * time.Millisecond)
		if time.Since(down) > d-10*time.Second {
			for _, name := range health {
				if code, body := f.healthNow(name); code == http.StatusServiceUnavailable && strings.Contains(body, "database") {
					saw[name] = body
				} else if saw[name] == "" {
					saw[name+" last"] = fmt.Sprintf("%d %q", code, body)
				}
			}
		}
	}
	for _, name := range health {
		if saw[name] == "" {
			t.Errorf("%s /healthz in the last 10 s of the black hole: never 503 naming the database; last: %s", name, saw[name+" last"])
		} else {
			t.Logf("%s /healthz in the black hole: %s", name, strings.TrimSpace(saw[name]))
		}
	}
	hole.set(false)
	f.waitCounted(90 * time.Second)
	time.Sleep(2 * time.Second) // a commit held in the network would land by now
	f.checkCounts()
	for _, name := range health {
		waitShowing(t, 60*time.Second, name+" health back", func() bool { code, _ := f.healthNow(name); return code == http.StatusOK },
			func() string { _, body := f.healthNow(name); return body })
	}
}

// replay --db postgres://… --node NAME loads a node's logs into a case on
// PostgreSQL under that node's name; a file already replayed for that node
// is skipped, and alerts reads the case.
func TestFleetReplayIntoCase(t *testing.T) {
	f := newFleet(t, false)
	log := filepath.Join(f.dir, "web-2-access.log")
	var lines []string
	base := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	for i := range 30 {
		lines = append(lines, fleetLine(base.Add(time.Duration(i)*5*time.Second), "203.0.113.66", fmt.Sprintf("victim-%03d", i), "sk_live_dead", 401))
	}
	writeFile(t, log, strings.Join(lines, "\n")+"\n", 0o644)
	env := map[string]string{envPasswordFile: filepath.Join(f.dir, "pgpass")}
	args := []string{"replay", "--db", f.url, "--node", "web-2", "--output", "json", "--layout", loggen.LogFormat,
		"--identity-path", loggen.IdentityPath, "--credential-field", "api_key_prefix", "--no-progress", log}
	code, out, errOut := runCLIEnv(t, env, args...)
	if code != 0 || strings.Count(out, `"kind":"spray"`) != 1 {
		t.Fatalf("replay into postgres: exit %d\n%s\n%s", code, out, errOut)
	}
	if got := f.counted("web-2"); got != 30 {
		t.Errorf("%d attempts stored for web-2, want 30", got)
	}
	code, _, errOut = runCLIEnv(t, env, args...)
	if code != 0 || !strings.Contains(errOut, "already replayed") {
		t.Errorf("second replay of the same file: exit %d, %s", code, errOut)
	}
	if got := f.counted("web-2"); got != 30 {
		t.Errorf("%d attempts after replaying again, want 30 (counted twice)", got)
	}
	code, out, errOut = runCLIEnv(t, env, "alerts", "--db", f.url)
	if code != 0 || !strings.Contains(out, "spray") {
		t.Errorf("alerts on the case: exit %d, %s %s", code, out, errOut)
	}
}

// The active judge keeps pinging systemd's watchdog (Type=notify,
// WatchdogSec= in its unit), not only while it waits as a standby.
func TestFleetJudgeWatchdog(t *testing.T) {
	f := newFleet(t, false)
	sockPath := filepath.Join(f.dir, "notify.sock")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	var mu sync.Mutex
	var pings []time.Time
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := sock.Read(buf)
			if err != nil {
				return
			}
			if strings.Contains(string(buf[:n]), "WATCHDOG=1") {
				mu.Lock()
				pings = append(pings, time.Now())
				mu.Unlock()
			}
		}
	}()
	f.start("judge-1", "NOTIFY_SOCKET="+sockPath, "WATCHDOG_USEC=300000")
	waitUntil(t, 30*time.Second, "an active judge", func() bool { return f.activeJudge() == "judge-1" })
	active := time.Now()
	time.Sleep(2 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	n := 0
	for _, at := range pings {
		if at.After(active) {
			n++
		}
	}
	if n < 6 { // one every 100 ms is due; allow a loaded machine
		t.Errorf("%d watchdog pings in the 2 s after the judge became active, want one every 100 ms", n)
	}
}

// A node that dies is reported on the judge's /healthz and metrics after
// node_timeout, and not waited for; it is live again once it flushes.
func TestFleetQuietNodeReported(t *testing.T) {
	f := newFleet(t, false)
	f.start("web-1")
	f.start("web-2")
	f.start("judge-1")
	waitUntil(t, 30*time.Second, "an active judge", func() bool { return f.activeJudge() == "judge-1" })
	for i, n := range []string{"web-1", "web-2"} {
		f.write(n, fleetLine(time.Now(), fmt.Sprintf("198.18.0.%d", i+1), "client-1", "sk_live_c000", 200))
	}
	f.waitCounted(30 * time.Second)
	waitUntil(t, 30*time.Second, "the judge healthy", func() bool { code, _ := f.health("judge-1"); return code == http.StatusOK })
	f.kill("web-2")
	waitUntil(t, 30*time.Second, "web-2 reported quiet", func() bool {
		code, body := f.health("judge-1")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "node web-2") && !strings.Contains(body, "node web-1")
	})
	_, metrics := rtGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", f.procs["judge-1"].port))
	if !strings.Contains(metrics, `spraywatch_fleet_nodes{state="quiet"} 1`) {
		t.Errorf("metrics do not count web-2 quiet")
	}
	// web-1's lines are still judged meanwhile.
	f.write("web-1", fleetLine(time.Now(), "198.18.0.9", "client-2", "sk_live_c001", 200))
	f.waitCounted(30 * time.Second)
	waitUntil(t, 30*time.Second, "the judge to read web-1's new row", func() bool {
		var behind int
		f.db.QueryRow(`SELECT COUNT(*) FROM attempts a WHERE a.node = 'web-1' AND a.id > COALESCE((SELECT last_id FROM judge_cursors c WHERE c.node = a.node), 0)`).Scan(&behind)
		return behind == 0
	})
	f.start("web-2")
	waitUntil(t, 30*time.Second, "web-2 live again", func() bool { code, _ := f.health("judge-1"); return code == http.StatusOK })
}

// The single-node daemon on PostgreSQL (--role all) through the same black
// hole (40 s), beginning on the answer to one of its COMMITs: the flush
// times out (the store's FlushTimeout, 30 s), /healthz says the database
// is failing meanwhile (it said 200 "written" throughout before), and once the hole ends the retried
// flush finds the one in doubt written and writes only the rest, so every
// line is counted exactly once.
func TestRunAllOnPostgresBlackHole(t *testing.T) {
	f := newFleet(t, false)
	hole := f.throughBlackHole()
	f.start("all-1")
	f.holdACommit(hole, []string{"all-1"}, 40*time.Second, "all-1")
	f.checkCounts()
	t.Logf("lines %v", f.lines)
}

// Every fleet member must use one fingerprint secret: an agent whose
// secret is missing is refused (not given a new one of its own), one
// whose secret is not the judge's is refused at start, and a judge taking
// over reports a node that flushed under another secret.
func TestFleetSecretMustBeShared(t *testing.T) {
	f := newFleet(t, false)
	f.start("judge-1")
	waitShowing(t, 30*time.Second, "an active judge", func() bool { return f.activeJudge() != "" }, f.state)
	f.start("web-1")
	f.write("web-1", fleetLine(time.Now(), "198.18.0.1", "client-0001", "sk_live_c000", 200))
	f.waitCounted(30 * time.Second)

	other := filepath.Join(f.dir, "other.key")
	writeFile(t, other, strings.Repeat("o", 32), 0o600)
	for _, tc := range []struct{ name, key, want string }{
		{"web-2", other, "this node's fingerprint secret is not the judge's"},
		{"web-3", filepath.Join(f.dir, "absent.key"), "does not exist: in a fleet every agent and judge uses the same secret, so it is not created here"},
	} {
		cfg := fmt.Sprintf(fleetConfig, f.procURL, f.dir, tc.name, integFreePort(t), loggen.LogFormat, loggen.IdentityPath, f.slack.APIURL())
		cfg = strings.Replace(cfg, filepath.Join(f.dir, "fingerprint.key"), tc.key, 1)
		path := filepath.Join(f.dir, tc.name+".yml")
		writeFile(t, path, cfg, 0o644)
		writeFile(t, filepath.Join(f.dir, tc.name+".log"), "", 0o644)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, os.Args[0], "run", "--config", path, "--role", roleAgent)
		cmd.Env = append(os.Environ(), rtMainEnv+"=1")
		out, err := cmd.CombinedOutput()
		cancel()
		if code := cmd.ProcessState.ExitCode(); err == nil || code != exitUsage || !strings.Contains(string(out), tc.want) {
			t.Errorf("agent %s with secret %s: exit %d (%v), want %d saying %q:\n%s", tc.name, tc.key, code, err, exitUsage, tc.want, lastLines(string(out), 10))
		}
		if _, err := os.Stat(filepath.Join(f.dir, "absent.key")); err == nil {
			t.Errorf("agent %s created a fingerprint secret of its own", tc.name)
		}
	}

	// web-1 as if it had flushed under another secret: the next judge says so.
	f.stop("web-1")
	if _, err := f.db.Exec(`UPDATE nodes SET secret_check = 'deadbeefdeadbeef' WHERE node = 'web-1'`); err != nil {
		t.Fatal(err)
	}
	f.kill("judge-1")
	j := f.start("judge-2")
	waitShowing(t, 30*time.Second, "judge-2 to report web-1's secret", func() bool {
		s := j.stderr.String()
		return strings.Contains(s, "node uses another fingerprint secret than this judge") && strings.Contains(s, "node=web-1")
	}, func() string { return lastLines(j.stderr.String(), 20) + "\n" + f.state() })
}

// metricsOf is a process's /metrics.
func (f *fleet) metricsOf(name string) string {
	_, m := rtGet(f.t, fmt.Sprintf("http://127.0.0.1:%d/metrics", f.procs[name].port))
	return m
}

// gauge is the value of one series in a /metrics text, -1 when absent.
func gauge(metrics, series string) float64 {
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			var x float64
			fmt.Sscan(v, &x)
			return x
		}
	}
	return -1
}

// The judge exports what a single node does about its engine and its
// health: incidents raised per kind, the windows it holds, and a failing
// gauge per check (database, a quiet node). An agent counts the line
// findings it reports, logs no "incident raised" for what it sees of an
// attack in its share (the judge raises the incident), and warns once
// that the alerts: of its config are not used.
func TestFleetMetricsAndAgentLogs(t *testing.T) {
	f := newFleet(t, false)
	nodes := []string{"web-1", "web-2"}
	for _, n := range nodes {
		f.start(n)
	}
	f.start("judge-1")
	waitUntil(t, 30*time.Second, "an active judge", func() bool { return f.activeJudge() == "judge-1" })
	for i, n := range nodes {
		f.write(n, fleetLine(time.Now(), fmt.Sprintf("198.18.0.%d", i+1), "client-1", "sk_live_c000", 200))
	}
	f.waitCounted(30 * time.Second)
	// A spray of 24 identities split over the two nodes: each agent alone
	// sees 12, over spray's threshold.
	for i := range 24 {
		f.write(nodes[i%2], fleetLine(time.Now(), "203.0.113.77", fmt.Sprintf("victim-%03d", i), "sk_live_dead", 401))
	}
	// An enumeration oracle on web-1 only: a line finding web-1 reports.
	for i := range 6 {
		f.write("web-1",
			fleetLine(time.Now(), fmt.Sprintf("198.51.0.%d", i+1), fmt.Sprintf("ghost-%d", i), "sk_live_0bad", 404),
			fleetLine(time.Now(), fmt.Sprintf("198.51.0.%d", i+101), fmt.Sprintf("client-%d", i), "sk_live_0bad", 401))
	}
	f.waitCounted(30 * time.Second)
	waitShowing(t, 30*time.Second, "the judge's metrics to count one spray and one enumeration_oracle, and its windows", func() bool {
		m := f.metricsOf("judge-1")
		return gauge(m, `spraywatch_incidents_raised_total{kind="spray"}`) == 1 &&
			gauge(m, `spraywatch_incidents_raised_total{kind="enumeration_oracle"}`) == 1 &&
			gauge(m, "spraywatch_tracked_entries") > 0
	}, func() string {
		return grepLines(f.metricsOf("judge-1"), "incidents_raised", "tracked_entries") + f.state()
	})
	m := f.metricsOf("judge-1")
	if g := gauge(m, `spraywatch_health_failing{check="database"}`); g != 0 {
		t.Errorf(`judge: spraywatch_health_failing{check="database"} = %v, want 0`, g)
	}
	waitShowing(t, 30*time.Second, "web-1's metrics to count the finding it reported, and its windows", func() bool {
		m := f.metricsOf("web-1")
		return gauge(m, `spraywatch_incidents_raised_total{kind="enumeration_oracle"}`) == 1 && gauge(m, "spraywatch_tracked_entries") > 0
	}, func() string { return grepLines(f.metricsOf("web-1"), "incidents_raised", "tracked_entries") })
	for _, n := range nodes {
		if g := gauge(f.metricsOf(n), `spraywatch_incidents_raised_total{kind="spray"}`); g != -1 {
			t.Errorf("%s counts %v spray incidents raised; an agent raises none (the judge does)", n, g)
		}
		log := f.procs[n].stderr.String()
		if s := grepLines(log, "incident raised"); s != "" {
			t.Errorf("%s logs incidents, which only the judge raises:\n%s", n, s)
		}
		if c := strings.Count(log, "alerts: is ignored on an agent"); c != 1 {
			t.Errorf("%s warned %d times that its alerts: are not used, want once", n, c)
		}
	}
	if s := grepLines(f.procs["web-1"].stderr.String(), "finding reported to the judge"); !strings.Contains(s, "kind=enumeration_oracle") || strings.Contains(s, "kind=spray") {
		t.Errorf("web-1 logs the findings it reports as:\n%s\nwant its enumeration_oracle only", s)
	}
	f.kill("web-2")
	waitShowing(t, 30*time.Second, "the judge's gauge for web-2 quiet", func() bool {
		return gauge(f.metricsOf("judge-1"), `spraywatch_health_failing{check="quiet:web-2"}`) == 1
	}, func() string { return grepLines(f.metricsOf("judge-1"), "health_failing") })
	f.start("web-2")
	waitShowing(t, 30*time.Second, "web-2 live again, its gauge gone", func() bool {
		code, _ := f.health("judge-1")
		return code == http.StatusOK && gauge(f.metricsOf("judge-1"), `spraywatch_health_failing{check="quiet:web-2"}`) == -1
	}, func() string { return grepLines(f.metricsOf("judge-1"), "health_failing") })
}

// A node gone for good keeps the judge at 503 until it is retired with
// 'spraywatch nodes retire'; a judge that takes over reports a node that
// was already quiet from its first answer on (it did not for node_timeout,
// as if the node were live); a running node is not retired, and a retired
// node's rows are kept.
func TestFleetRetireNode(t *testing.T) {
	f := newFleet(t, false)
	f.start("web-1")
	f.start("web-2")
	f.start("judge-1")
	waitUntil(t, 30*time.Second, "an active judge", func() bool { return f.activeJudge() == "judge-1" })
	f.start("judge-2")
	for i, n := range []string{"web-1", "web-2"} {
		f.write(n, fleetLine(time.Now(), fmt.Sprintf("198.18.0.%d", i+1), "client-1", "sk_live_c000", 200))
	}
	f.waitCounted(30 * time.Second)
	f.kill("web-2")
	waitUntil(t, 30*time.Second, "web-2 reported quiet", func() bool {
		code, body := f.health("judge-1")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "node web-2")
	})
	f.kill("judge-1")
	waitUntil(t, 30*time.Second, "judge-2 active", func() bool { return f.activeJudge() == "judge-2" })
	var first string
	waitUntil(t, 30*time.Second, "judge-2's first answer as the active judge", func() bool {
		code, body := f.health("judge-2")
		if strings.Contains(body, "standby judge") {
			return false
		}
		first = fmt.Sprintf("%d %s", code, body)
		return true
	})
	if !strings.HasPrefix(first, "503 ") || !strings.Contains(first, "node web-2") {
		t.Errorf("judge-2's first answer after taking over: %q; want 503 naming web-2, quiet before the takeover", first)
	}
	env := map[string]string{envPasswordFile: filepath.Join(f.dir, "pgpass")}
	code, out, errOut := runCLIEnv(t, env, "nodes", "--db", f.url, "--node-timeout", "3s")
	if code != 0 || !regexp.MustCompile(`(?m)^web-1 .* live +1$`).MatchString(out) || !regexp.MustCompile(`(?m)^web-2 .* quiet +1$`).MatchString(out) {
		t.Errorf("nodes: exit %d, %q %q; want web-1 live and web-2 quiet, one source each", code, out, errOut)
	}
	if code, _, errOut := runCLIEnv(t, env, "nodes", "--db", f.url, "retire", "web-1"); code == 0 || !strings.Contains(errOut, "stop its agent first") {
		t.Errorf("nodes retire of a running node: exit %d, %q; want refused", code, errOut)
	}
	if code, _, errOut := runCLIEnv(t, env, "nodes", "--db", f.url, "retire", "web-9"); code == 0 || !strings.Contains(errOut, "no such node") {
		t.Errorf("nodes retire web-9: exit %d, %q; want no such node", code, errOut)
	}
	if code, out, errOut := runCLIEnv(t, env, "nodes", "--db", f.url, "retire", "web-2"); code != 0 || !strings.Contains(out, "node web-2 retired") {
		t.Fatalf("nodes retire web-2: exit %d, %q %q", code, out, errOut)
	}
	waitShowing(t, 30*time.Second, "judge-2 healthy, web-2 no longer counted", func() bool {
		code, _ := f.health("judge-2")
		m := f.metricsOf("judge-2")
		return code == http.StatusOK && gauge(m, `spraywatch_fleet_nodes{state="quiet"}`) == 0 && gauge(m, `spraywatch_fleet_nodes{state="live"}`) == 1
	}, func() string {
		h, b := f.health("judge-2")
		return fmt.Sprint(h, b, grepLines(f.metricsOf("judge-2"), "fleet_nodes"))
	})
	if n := f.counted("web-2"); n != f.lines["web-2"] {
		t.Errorf("web-2's rows after it was retired count %d lines, want its %d kept", n, f.lines["web-2"])
	}
	if code, out, _ := runCLIEnv(t, env, "nodes", "--db", f.url, "list"); code != 0 || strings.Contains(out, "web-2") {
		t.Errorf("nodes list after retiring web-2: exit %d, %q", code, out)
	}
}

// alerts and explain with a role that may not read incidents (an agent's)
// or whose password is refused say what to use instead, not a bare
// SQLSTATE.
func TestFleetForensicsRoleErrors(t *testing.T) {
	f := newFleet(t, false)
	f.start("judge-1")
	waitUntil(t, 30*time.Second, "an active judge", func() bool { return f.activeJudge() == "judge-1" })
	role := fmt.Sprintf("t_agent_%d_%d", os.Getpid(), time.Now().UnixNano()%1_000_000)
	if _, err := f.db.Exec(`CREATE ROLE ` + role + ` LOGIN PASSWORD 'agent-pw'`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.db.Exec(`DROP OWNED BY ` + role); f.db.Exec(`DROP ROLE ` + role) })
	writeFile(t, filepath.Join(f.dir, "agent-pw"), "agent-pw\n", 0o600)
	writeFile(t, filepath.Join(f.dir, "wrong-pw"), "not-it\n", 0o600)
	u, _ := url.Parse(f.url)
	u.User = url.User(role)
	for _, c := range []struct {
		args       []string
		pw         string
		want       []string
		mustNotSay string
	}{
		{[]string{"alerts", "--db", u.String()}, "agent-pw", []string{"may not", "permission denied for table incidents", "spraywatch_reader", envPasswordFile}, "SQLSTATE"},
		{[]string{"explain", "--db", u.String(), "1"}, "agent-pw", []string{"may not", "spraywatch_reader", envPasswordFile}, "SQLSTATE"},
		{[]string{"alerts", "--db", u.String()}, "wrong-pw", []string{"refused the role's password", envPasswordFile}, "not-it"},
	} {
		code, out, errOut := runCLIEnv(t, map[string]string{envPasswordFile: filepath.Join(f.dir, c.pw)}, c.args...)
		for _, w := range c.want {
			if code == 0 || !strings.Contains(errOut, w) || strings.Contains(errOut+out, c.mustNotSay) {
				t.Errorf("%v with %s: exit %d, %q; want an error saying %q, never %q", c.args[0], c.pw, code, errOut, w, c.mustNotSay)
				break
			}
		}
	}
	for _, cmd := range []string{"alerts", "explain"} {
		if _, out, _ := runCLIEnv(t, nil, cmd, "--help"); !strings.Contains(out, envPasswordFile) {
			t.Errorf("%s --help does not mention %s", cmd, envPasswordFile)
		}
	}
}
