package rules

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/ingest/loggen"
)

// The identity bound (manyIdentities, with what it remembers within a
// minute) only skips groups no rule would raise: weeks of generated
// traffic, the attacks in them included, give the same incidents, with
// the same counts, with it and without it.
func TestIdentityBoundChangesNoIncident(t *testing.T) {
	base := uint64(time.Now().UnixNano())
	t.Logf("weeks from seed %d", base)
	for i := range uint64(4) {
		seed := base + i
		rnd := rand.New(rand.NewPCG(seed, 7))
		o := loggen.WeekOptions{Seed: seed, Lines: 30_000 + rnd.IntN(30_000), Clients: 200 + rnd.IntN(2000),
			Format: loggen.WeekFormats[rnd.IntN(len(loggen.WeekFormats))], Duration: time.Duration(2+rnd.IntN(4)) * 24 * time.Hour}
		with, without := judgeBounded(t, o, true), judgeBounded(t, o, false)
		if with != without {
			t.Errorf("seed %d (%+v): with the bound\n%s\nwithout\n%s", seed, o, with, without)
		}
		if without == "" {
			t.Errorf("seed %d: no incident at all", seed)
		}
	}
}

func judgeBounded(t *testing.T, o loggen.WeekOptions, bound bool) string {
	t.Helper()
	identityBound = bound
	defer func() { identityBound = true }()
	pr, pw := io.Pipe()
	go func() {
		_, err := loggen.WriteWeek(pw, o)
		pw.CloseWithError(err)
	}()
	p, err := ingest.NewParser(o.Source("bench"))
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(Options{Config: DefaultConfig(), NoCredential: map[string]bool{"bench": o.Format == loggen.WeekCombined}})
	last := map[int64]detect.Incident{}
	take := func() {
		_, snaps := e.TakeBatch(detect.Batch{})
		for _, s := range snaps {
			last[s.ID] = s
		}
	}
	br := bufio.NewReader(pr)
	var ev ingest.Event
	for n := 0; ; n++ {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 && p.Parse(line[:len(line)-1], &ev) == nil {
			e.Observe(&ev)
		}
		if n%4096 == 0 {
			take()
		}
		if err != nil {
			break
		}
	}
	e.Finish()
	take()
	out := ""
	for id := int64(1); id < e.nextID; id++ {
		if inc, ok := last[id]; ok {
			out += fmt.Sprintf("%d %s %s %s attempts %d identities %d ips %d compromised %v owners %d %v..%v raised %v\n", inc.ID, inc.Kind, inc.Severity,
				inc.Group, inc.Attempts, inc.Identities, len(inc.IPs), inc.Compromised, inc.OwnersReturned, inc.FirstSeen, inc.LastSeen, inc.Raised)
		}
	}
	return out
}

// Within a minute the bound looks only at a group's new entries: an
// address that failed many times on one identity (a stale integration)
// and then, within one minute, tries new identities one a second is
// raised at the same second with the bound as without.
func TestIdentityBoundWithinAMinute(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	var evs []ingest.Event
	ip := netip.MustParseAddr("203.0.113.66")
	for i := range 45 { // three minutes on one identity
		evs = append(evs, ingest.Event{Time: t0.Add(time.Duration(i) * 4 * time.Second), Source: "api", IP: ip, Identity: "client-0001",
			Credential: "sk_live_dead", Outcome: ingest.Failure, Status: 401})
	}
	for i := range 15 { // then new identities, one a second, in minute 3
		evs = append(evs, ingest.Event{Time: t0.Add(3*time.Minute + time.Duration(5+i)*time.Second), Source: "api", IP: ip,
			Identity: fmt.Sprintf("victim-%03d", i), Credential: "sk_live_dead", Outcome: ingest.Failure, Status: 401})
	}
	run := func(bound bool) string {
		identityBound = bound
		defer func() { identityBound = true }()
		e := NewEngine(Options{Config: DefaultConfig()})
		out := ""
		for i := range evs {
			e.Observe(&evs[i])
			_, snaps := e.TakeBatch(detect.Batch{})
			for _, s := range snaps {
				if s.Kind == detect.KindSpray && out == "" {
					out = fmt.Sprintf("spray raised %v after line %d", s.Raised, i)
				}
			}
		}
		return out
	}
	with, without := run(true), run(false)
	if without == "" {
		t.Fatal("no spray raised")
	}
	if with != without {
		t.Errorf("with the bound: %s; without: %s", with, without)
	}
}
