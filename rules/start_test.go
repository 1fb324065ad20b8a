package rules_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/rules"
)

// startLog writes what the tests of the start of input read: ordinary
// clients, and the benign patterns that look like credential stuffing in
// a window the start of input cut short.
type startLog struct {
	r   *rand.Rand
	t0  time.Time
	evs []ingest.Event
}

const startRoute = "/api/v1/clients/{identity}/"

func (l *startLog) add(at time.Duration, ip netip.Addr, ident, cred string, status int) {
	out := ingest.Success
	if status >= 400 {
		out = ingest.Failure
	}
	l.evs = append(l.evs, ingest.Event{Time: l.t0.Add(at), Source: "api", IP: ip, Identity: ident, Credential: cred,
		Outcome: out, Status: status, Route: startRoute, Pos: ingest.Pos{File: "access.log"}})
}

// clients: n ordinary clients, each with its own key and address, a call
// every one to five minutes.
func (l *startLog) clients(n int, d time.Duration) {
	for c := range n {
		ip := netip.AddrFrom4([4]byte{10, 1, byte(c / 200), byte(c%200 + 1)})
		for at := time.Duration(l.r.IntN(60)) * time.Second; at < d; at += time.Duration(60+l.r.IntN(240)) * time.Second {
			l.add(at, ip, fmt.Sprintf("client-%03d", c), fmt.Sprintf("sk_live_c%03d", c), 200)
		}
	}
}

// abandoned: n abandoned integrations in one /24, each retrying its own
// dead key on its own identity, from its own address, every 10 to 30 s.
func (l *startLog) abandoned(n int, d time.Duration) {
	for i := range n {
		ip := netip.AddrFrom4([4]byte{198, 51, 101, byte(i + 1)})
		for at := time.Duration(l.r.IntN(30)) * time.Second; at < d; at += time.Duration(10+l.r.IntN(21)) * time.Second {
			l.add(at, ip, fmt.Sprintf("etl-%02d", i), fmt.Sprintf("sk_live_E%02d", i), 401)
		}
	}
}

// rotation: a fleet of n servers in one /24 whose keys were revoked as the
// log begins (never seen succeeding): each retries its old key with
// backoff from 30 s doubling to 8 min until its new key is rolled out,
// one server every 48 s, then succeeds every 30 s with the new one.
func (l *startLog) rotation(n int, d time.Duration) {
	for s := range n {
		ip := netip.AddrFrom4([4]byte{198, 19, 5, byte(s + 1)})
		ident := fmt.Sprintf("acme-web-%02d", s+1)
		up := time.Duration(60+s*48+l.r.IntN(21)) * time.Second
		at, backoff := time.Duration(l.r.IntN(31))*time.Second, 30*time.Second
		for ; at < up; at, backoff = at+backoff, min(2*backoff, 8*time.Minute) {
			l.add(at, ip, ident, "sk_live_old"+ident, 401)
		}
		for ; at < d; at += 30 * time.Second {
			l.add(at, ip, ident, "sk_live_new"+ident, 200)
		}
	}
}

// template: a deploy that sends one template key from each of n servers
// of a /24, each its own identity, for 20 minutes from the log's start,
// every 30 s, then their own keys.
func (l *startLog) template(n int, d time.Duration) {
	for s := range n {
		ip := netip.AddrFrom4([4]byte{198, 19, 6, byte(s + 1)})
		ident := fmt.Sprintf("acme-api-%02d", s+1)
		fixed := 20*time.Minute + time.Duration(s)*10*time.Second
		for at := time.Duration(l.r.IntN(31)) * time.Second; at < d; at += 30 * time.Second {
			if at < fixed {
				l.add(at, ip, ident, "sk_live_TMPL", 401)
			} else {
				l.add(at, ip, ident, "sk_live_own"+ident, 200)
			}
		}
	}
}

func (l *startLog) sorted() []ingest.Event {
	slices.SortStableFunc(l.evs, func(a, b ingest.Event) int { return a.Time.Compare(b.Time) })
	for i := range l.evs {
		l.evs[i].Pos.Offset = int64(i) * 100
	}
	return l.evs
}

// from returns the events from at on: the input as a replay or a fresh
// daemon that begins there reads it.
func from(evs []ingest.Event, at time.Time) []ingest.Event {
	i, _ := slices.BinarySearchFunc(evs, at, func(e ingest.Event, t time.Time) int { return e.Time.Compare(t) })
	return evs[i:]
}

// The abandoned integrations of one /24 raise nothing, wherever the input
// begins: at the very first line, or anywhere later (a log cut, a daemon
// started at a log's end), replayed whole or by a daemon restarted a few
// minutes in; nor does a fleet's key rotation, or a deploy sending a
// template key from every server, seen from its start.
func TestStartOfInputRaisesNoStuffing(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(uint64(seed), 1))
	d := 4 * time.Hour
	for _, pattern := range []string{"abandoned", "rotation", "template"} {
		l := &startLog{r: r, t0: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)}
		l.clients(40, d)
		switch pattern {
		case "abandoned":
			l.abandoned(15+r.IntN(11), d)
		case "rotation":
			l.rotation(20+r.IntN(31), d)
		case "template":
			l.template(20+r.IntN(31), d)
		}
		evs := l.sorted()
		cuts := []time.Duration{0}
		if pattern == "abandoned" {
			for range 6 {
				cuts = append(cuts, time.Duration(r.Int64N(int64(d-time.Hour))).Truncate(time.Second))
			}
		}
		for _, cut := range cuts {
			in := from(evs, l.t0.Add(cut))
			restart := 0
			if r.IntN(2) == 0 {
				restart = 1 + r.IntN(len(in)/20) // within the first few minutes
			}
			t.Run(fmt.Sprintf("%s from %v restart %d", pattern, cut, restart), func(t *testing.T) {
				var incs []*detect.Incident
				if restart > 0 {
					s := judgeWithRestart(t, in, restart)
					var err error
					if incs, err = s.Incidents(context.Background(), detect.IncidentFilter{}); err != nil {
						t.Fatal(err)
					}
				} else {
					incs = judgeAll(t, in)
				}
				for _, inc := range incs {
					t.Errorf("seed %d: %s %s raised at %v: %s", seed, inc.Kind, inc.Group, inc.Raised, inc.Summary)
				}
			})
		}
	}
}

// An attack that begins with the input's first line is still raised, at
// most one window after the start, with all its attempts, by a daemon
// that sees only lines (no end of input judges what was held), among the
// abandoned integrations of another /24.
func TestAttackAtTheStartOfInputIsRaised(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(uint64(seed), 2))
	attacker := netip.AddrFrom4([4]byte{203, 0, 113, 50})
	cases := []struct {
		kind   string
		window time.Duration
		write  func(l *startLog) int // the attack's attempts
	}{
		{detect.KindStuffing, 15 * time.Minute, func(l *startLog) int { // one address, a leaked pair per identity
			n := 20 + r.IntN(60)
			for i := range n {
				l.add(time.Duration(i)*time.Duration(1+r.IntN(5))*time.Second, attacker, fmt.Sprintf("user-%03d", i), fmt.Sprintf("sk_live_leak%03d", i), 401)
			}
			return n
		}},
		{detect.KindStuffing, 15 * time.Minute, func(l *startLog) int { // spread over a /24, no address reaching the threshold
			n := 30 + r.IntN(60)
			for i := range n {
				ip := netip.AddrFrom4([4]byte{203, 0, 114, byte(i%10 + 1)})
				l.add(time.Duration(i)*time.Duration(1+r.IntN(5))*time.Second, ip, fmt.Sprintf("user-%03d", i), fmt.Sprintf("sk_live_leak%03d", i), 401)
			}
			return n
		}},
		{detect.KindSpray, 15 * time.Minute, func(l *startLog) int { // one key over many identities
			n := 10 + r.IntN(50)
			for i := range n {
				l.add(time.Duration(i)*time.Duration(1+r.IntN(5))*time.Second, attacker, fmt.Sprintf("user-%03d", i), "sk_live_spray", 401)
			}
			return n
		}},
		{detect.KindBruteForce, 10 * time.Minute, func(l *startLog) int { // many keys on one identity
			n := 10 + r.IntN(40)
			for i := range n {
				l.add(time.Duration(i)*time.Duration(1+r.IntN(5))*time.Second, attacker, "victim", fmt.Sprintf("sk_live_guess%03d", i), 401)
			}
			return n
		}},
		{detect.KindDistributedSpray, time.Hour, func(l *startLog) int { // one key from several addresses, no address a spray
			n := 10 + r.IntN(30)
			for i := range n {
				ip := netip.AddrFrom4([4]byte{byte(20 + i), 0, 113, 9})
				l.add(time.Duration(i)*time.Duration(5+r.IntN(60))*time.Second, ip, fmt.Sprintf("user-%03d", i), "sk_live_dist", 401)
			}
			return n
		}},
	}
	for _, c := range cases {
		for trial := range 3 {
			l := &startLog{r: r, t0: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)}
			d := c.window + 30*time.Minute
			n := c.write(l) // its first line at t0, the input's first second
			l.clients(30, d)
			l.abandoned(20, d)
			evs := l.sorted()
			restart := 0
			if trial == 2 { // a daemon restarted after the attack's end, before its window is whole
				restart, _ = slices.BinarySearchFunc(evs, l.t0.Add(c.window*2/3), func(e ingest.Event, t time.Time) int { return e.Time.Compare(t) })
			}
			t.Run(fmt.Sprintf("%s %d restart %d", c.kind, trial, restart), func(t *testing.T) {
				incs := startDaemon(t, evs, restart)
				var got []*detect.Incident
				for _, inc := range incs {
					if inc.Kind == detect.KindNoRateLimit || inc.Kind == detect.KindCompromise {
						continue
					}
					if i := slices.IndexFunc(got, func(g *detect.Incident) bool { return g.ID == inc.ID }); i >= 0 {
						got[i] = inc
					} else {
						got = append(got, inc)
					}
				}
				if len(got) != 1 || got[0].Kind != c.kind {
					for _, inc := range got {
						t.Logf("%s %s: %s", inc.Kind, inc.Group, inc.Summary)
					}
					t.Fatalf("seed %d: %d incidents, want one %s", seed, len(got), c.kind)
				}
				inc := got[0]
				if inc.Attempts != int64(n) {
					t.Errorf("seed %d: the %s has %d attempts, want %d", seed, c.kind, inc.Attempts, n)
				}
				if late := inc.Raised.Sub(l.t0); late > c.window+time.Minute {
					t.Errorf("seed %d: the %s was raised %v after the start, more than its window (%v)", seed, c.kind, late, c.window)
				}
			})
		}
	}
}

// startDaemon judges evs as a daemon does, with no end of input: restarted
// (restored from its store) before line restart if it is not 0. It
// returns the incidents it stored.
func startDaemon(t *testing.T, evs []ingest.Event, restart int) []*detect.Incident {
	t.Helper()
	ctx := context.Background()
	s := openStore(t)
	e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
	for i := range evs {
		if i == restart && restart > 0 {
			if _, err := e.Flush(ctx, s, detect.Batch{}); err != nil {
				t.Fatal(err)
			}
			e = rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
			if err := e.Restore(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		e.Observe(&evs[i])
		if i%2000 == 0 {
			if _, err := e.Flush(ctx, s, detect.Batch{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := e.Flush(ctx, s, detect.Batch{}); err != nil {
		t.Fatal(err)
	}
	incs, err := s.Incidents(ctx, detect.IncidentFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return incs
}
