package loggen

import (
	"bufio"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/spraywatch/spraywatch/ingest"
)

// Week writes labelled traffic: a week (by default) of an API's clients,
// with the benign patterns that make detection hard and attacks whose
// every address and outcome is known, so that a detector's incidents can
// be scored against the truth. Everything random is drawn from the seed:
// attack sizes, rates, address counts and timing change from seed to seed.

// Week formats.
const (
	WeekNginx    = ingest.FormatNginx
	WeekJSON     = ingest.FormatJSON
	WeekGunicorn = ingest.FormatGunicorn
	WeekCombined = ingest.FormatCombined
)

// The incident kinds Week's attacks should raise.
const (
	KindSpray            = "spray"
	KindDistributedSpray = "distributed_spray"
	KindLowAndSlow       = "low_and_slow_spray"
	KindBruteForce       = "brute_force"
	KindStuffing         = "credential_stuffing"
)

// WeekFormats lists the formats Week can write.
var WeekFormats = []string{WeekNginx, WeekJSON, WeekGunicorn, WeekCombined}

// WeekGunicornFormat is the access_log_format of gunicorn weeks: the whole
// X-API-Key header is logged, so spraywatch fingerprints it.
const WeekGunicornFormat = `%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" key="%({x-api-key}i)s" rt=%(L)s`

// WeekOptions choose what Week writes.
type WeekOptions struct {
	// Start defaults to 2026-11-02 00:00 UTC, Duration to 7 days.
	Start    time.Time
	Duration time.Duration
	// Clients is the number of API clients (default 3000, at most 20000).
	Clients int
	// Lines is about how many lines to write (default 1,000,000).
	Lines int
	Seed  uint64
	// Format is one of WeekFormats (default nginx).
	Format string
}

func (o WeekOptions) withDefaults() WeekOptions {
	if o.Start.IsZero() {
		o.Start = time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	}
	if o.Duration <= 0 {
		o.Duration = 7 * 24 * time.Hour
	}
	if o.Clients <= 0 {
		o.Clients = 3000
	}
	o.Clients = min(o.Clients, 20000)
	if o.Lines <= 0 {
		o.Lines = 1_000_000
	}
	if o.Format == "" {
		o.Format = WeekNginx
	}
	return o
}

// Source returns the parser options that read what Week writes.
func (o WeekOptions) Source(name string) ingest.Options {
	o = o.withDefaults()
	s := ingest.Options{Name: name, Format: o.Format, IdentityPaths: []string{IdentityPath}, Location: time.UTC, Statuses: ingest.DefaultStatuses()}
	switch o.Format {
	case WeekNginx:
		s.Layout = LogFormat
		s.Fields = map[ingest.Role]string{ingest.RoleCredential: "api_key_prefix"}
		s.CredentialKind = ingest.CredentialPrefix
	case WeekJSON:
		s.Fields = map[ingest.Role]string{ingest.RoleCredential: "key_prefix"}
		s.CredentialKind = ingest.CredentialPrefix
	case WeekGunicorn:
		s.Layout = WeekGunicornFormat
		s.Fields = map[ingest.Role]string{ingest.RoleCredential: "{x-api-key}i"}
		s.CredentialKind = ingest.CredentialKey
		s.Secret = []byte("loggen week fingerprint secret")
	}
	return s
}

// Attack is one attack a week holds.
type Attack struct {
	// Kind is the incident kind the attack should raise.
	Kind string
	// IPs are the attacking addresses, used by this attack only.
	IPs []netip.Addr
	// Identities and Attempts count what the attack tried.
	Identities, Attempts int
	First, Last          time.Time
	// Succeeded names the identities the attacker got into: each must be
	// reported as a critical compromise.
	Succeeded []string
	// RealKey is set when the key that worked is an active client's own
	// working key: known to the attacker now, it must be rotated.
	RealKey bool
}

// Truth is what a week holds.
type Truth struct {
	Attacks []Attack
	// Benign counts the clients or episodes of each benign pattern.
	Benign map[string]int
	Lines  int
}

// wev is one request of the week, formatted when written.
type wev struct {
	ms     int64 // Unix milliseconds
	ip     netip.Addr
	id     string
	key    string
	status int16
	rt     float32
}

type week struct {
	o     WeekOptions
	r     *rand.Rand
	evs   []wev
	start int64 // Unix ms
	span  int64 // ms
	used  map[netip.Addr]bool
	keys  map[string]bool
	truth Truth
	// clients are the benign clients, for attacks that pick a real key
	clients []*client
}

// WriteWeek writes the week to w, oldest line first, and returns its truth.
func WriteWeek(w io.Writer, o WeekOptions) (Truth, error) {
	o = o.withDefaults()
	switch o.Format {
	case WeekNginx, WeekJSON, WeekGunicorn, WeekCombined:
	default:
		return Truth{}, fmt.Errorf("write week: format %q: want one of %v", o.Format, WeekFormats)
	}
	g := &week{o: o, r: rand.New(rand.NewPCG(o.Seed, o.Seed^0x77ee6b)), start: o.Start.UnixMilli(), span: o.Duration.Milliseconds(),
		used: map[netip.Addr]bool{}, keys: map[string]bool{}, truth: Truth{Benign: map[string]int{}}}
	g.evs = make([]wev, 0, o.Lines+o.Lines/8)
	g.benign()
	g.attacks()
	slices.SortFunc(g.evs, func(a, b wev) int { return cmp.Compare(a.ms, b.ms) })
	g.truth.Lines = len(g.evs)
	bw := bufio.NewWriterSize(w, 1<<20)
	var buf []byte
	for i := range g.evs {
		buf = g.format(buf[:0], &g.evs[i])
		if _, err := bw.Write(buf); err != nil {
			return g.truth, fmt.Errorf("write week: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return g.truth, fmt.Errorf("write week: %w", err)
	}
	return g.truth, nil
}

// client is one benign client of the API.
type client struct {
	id, key string
	home    netip.Addr
	// where the client calls from: its home, an office NAT, or a CGNAT pool
	pool []netip.Addr
	rate float64 // calls per ms
	// staleKey, when set, is an old key some of its workers still send
	staleKey  string
	staleRate float64
	// retired is when a client's key was rotated (0: never)
	rotated int64
	newKey  string
}

func (g *week) in(lo, hi float64) float64 { return lo + g.r.Float64()*(hi-lo) }

// logIn draws from [lo, hi] evenly on a log scale: sizes spread over orders
// of magnitude.
func (g *week) logIn(lo, hi float64) float64 {
	return math.Exp(g.in(math.Log(lo), math.Log(hi)))
}

func (g *week) intIn(lo, hi int) int { return lo + g.r.IntN(hi-lo+1) }

func (g *week) add(ms int64, ip netip.Addr, id, key string, status int, rt float64) {
	if ms < g.start || ms >= g.start+g.span {
		return
	}
	g.evs = append(g.evs, wev{ms: ms, ip: ip, id: id, key: key, status: int16(status), rt: float32(rt)})
}

// addr returns a fresh address in a.b.0.0/16 never used before.
func (g *week) addr(a, b byte) netip.Addr {
	for {
		ip := netip.AddrFrom4([4]byte{a, b, byte(g.r.IntN(256)), byte(1 + g.r.IntN(254))})
		if !g.used[ip] {
			g.used[ip] = true
			return ip
		}
	}
}

// anyAddr returns a fresh address in a random /16 of a.0.0.0/8.
func (g *week) anyAddr(a byte) netip.Addr { return g.addr(a, byte(g.r.IntN(256))) }

// key returns a fresh key label in a range: 0 client keys, 1 old and
// mistyped keys, 2 attackers' guesses.
func (g *week) key(space int) string {
	lo, n := [...]int{0, 0x6000, 0xa000}[space], [...]int{0x6000, 0x4000, 0x6000}[space]
	for {
		k := fmt.Sprintf("sk_live_%04x", lo+g.r.IntN(n))
		if !g.keys[k] {
			g.keys[k] = true
			return k
		}
	}
}

func clientKeyOf(i int) string { return fmt.Sprintf("sk_live_%04x", i) }

func (g *week) benign() {
	o, r := g.o, g.r
	clients := make([]*client, o.Clients)
	weights := make([]float64, o.Clients)
	total := 0.0
	for i := range clients {
		k := clientKeyOf(i)
		g.keys[k] = true
		home := netip.AddrFrom4([4]byte{198, byte(18 + i/64000), byte(i / 250 % 256), byte(i%250 + 1)})
		g.used[home] = true
		clients[i] = &client{id: clientID(i), key: k, home: home, pool: []netip.Addr{home}}
		weights[i] = math.Exp(r.NormFloat64() * 1.3)
		total += weights[i]
	}
	perm := r.Perm(o.Clients)
	next := 0
	take := func(n int) []*client {
		n = min(n, o.Clients-next)
		out := make([]*client, n)
		for j := range out {
			out[j] = clients[perm[next]]
			next++
		}
		return out
	}
	// Offices: 10 to 500 clients behind one NAT address each.
	for k := 0; k < g.intIn(2, 6) && next < o.Clients/2; k++ {
		nat := g.addr(192, 0)
		members := take(int(g.logIn(10, 500)))
		for _, c := range members {
			c.pool = []netip.Addr{nat}
		}
		g.truth.Benign["nat office clients"] += len(members)
	}
	// Mobile clients behind carrier-grade NAT: every call from another
	// address of a shared pool.
	mobile := take(o.Clients * g.intIn(3, 10) / 100)
	var cgnat []netip.Addr
	for range max(1, len(mobile)/6) {
		cgnat = append(cgnat, g.addr(100, 72))
	}
	for _, c := range mobile {
		c.pool = cgnat
	}
	g.truth.Benign["mobile clients (CGNAT)"] = len(mobile)
	// Busy networks: the clients of a few /24s now and then send an old key.
	nets := g.intIn(1, 4)
	for n := 0; n < nets; n++ {
		base := g.r.IntN(max(1, o.Clients/250))
		for i := base * 250; i < min(o.Clients, base*250+250); i++ {
			c := clients[i]
			if len(c.pool) == 1 && c.pool[0] == c.home && r.IntN(3) > 0 {
				c.staleKey, c.staleRate = g.key(1), g.in(0.01, 0.08)
				g.truth.Benign["busy-network clients sending an old key"]++
			}
		}
	}
	// Key rotation: a second deployment keeps the old key for an hour.
	for range g.intIn(5, 20) {
		c := clients[r.IntN(o.Clients)]
		if c.rotated != 0 || c.staleKey != "" {
			continue
		}
		c.rotated, c.newKey = g.start+int64(g.in(0.05, 0.95)*float64(g.span)), g.key(1)
		second := c.pool[r.IntN(len(c.pool))]
		if len(c.pool) == 1 && c.pool[0] == c.home {
			second = netip.AddrFrom4(c.home.As4())
			b := second.As4()
			b[3] = byte(251 + r.IntN(4)) // a second server on the same network
			second = netip.AddrFrom4(b)
			c.pool = []netip.Addr{c.home, second}
		}
		// that deployment worked before the rotation
		for range g.intIn(1, 3) {
			g.add(c.rotated-g.r.Int64N(6*3600_000), second, c.id, c.key, 200, g.in(0.01, 0.05))
		}
		every := int64(g.in(20, 300) * 1000)
		for t := c.rotated; t < c.rotated+3600_000; t += every {
			g.add(t, second, c.id, c.key, 401, g.in(0.003, 0.006))
		}
		g.truth.Benign["key rotations (old key retried for an hour)"]++
	}

	// Outages: the API answers 503 for a while, then the clients retry.
	type outage struct{ from, to int64 }
	var outages []outage
	for range g.intIn(1, 3) {
		from := g.start + int64(g.in(0.05, 0.95)*float64(g.span))
		outages = append(outages, outage{from, from + int64(g.in(5, 40)*60_000)})
	}
	g.truth.Benign["outages (then a burst of retries)"] = len(outages)
	inOutage := func(t int64) (int64, bool) {
		for _, x := range outages {
			if t >= x.from && t < x.to {
				return x.to, true
			}
		}
		return 0, false
	}

	// Monitoring: probes every 30 s to 10 min from fixed addresses, about
	// a tenth of the lines.
	monitors := g.intIn(1, 4)
	for m := range monitors {
		ip, id, key := g.addr(198, 51), fmt.Sprintf("monitor-%d", m), g.key(1)
		every := max(30_000, g.span*int64(monitors)*10/int64(o.Lines)+int64(g.in(-10, 10)*1000))
		for t := g.start + r.Int64N(every); t < g.start+g.span; t += every {
			status := 200
			if _, down := inOutage(t); down {
				status = 503
			}
			g.add(t, ip, id, key, status, g.in(0.002, 0.01))
		}
		g.truth.Benign["monitoring probes"]++
	}
	// CI: runs every few hours from a fresh cloud address, a burst of
	// calls; a run with a broken secret fails a few times and stops.
	for c := range g.intIn(3, 10) {
		id, key := fmt.Sprintf("ci-%02d", c), g.key(1)
		every := int64(g.in(1, 6) * 3600_000)
		for t := g.start + r.Int64N(every); t < g.start+g.span; t += every + r.Int64N(every/4+1) {
			ip := g.anyAddr(35)
			if r.IntN(20) == 0 {
				bad := g.key(1)
				for j := range g.intIn(1, 3) {
					g.add(t+int64(j)*5000, ip, id, bad, 401, g.in(0.003, 0.006))
				}
				g.truth.Benign["CI runs with a broken secret"]++
				continue
			}
			calls, dur := g.intIn(5, 50), int64(g.in(2, 10)*60_000)
			for range calls {
				g.add(t+r.Int64N(dur), ip, id, key, 200, g.in(0.01, 0.05))
			}
			g.truth.Benign["CI runs"]++
		}
	}
	// Abandoned integrations: revoked keys retried all week, never
	// succeeding; a legacy host may run several.
	for range g.intIn(2, 8) {
		ip := g.addr(172, 20)
		for range g.intIn(1, 5) {
			id := fmt.Sprintf("legacy-%04d", r.IntN(10000))
			if r.IntN(2) == 0 {
				id = clientID(r.IntN(o.Clients)) // a client's old integration
			}
			key, every := g.key(1), int64(g.logIn(2, 120)*60_000)
			for t := g.start + r.Int64N(every); t < g.start+g.span; t += every {
				g.add(t, ip, id, key, 401, g.in(0.003, 0.006))
			}
			g.truth.Benign["abandoned integrations"]++
		}
	}
	// The clients fill what the other patterns left of the line budget.
	regular := float64(max(o.Lines-len(g.evs), o.Lines/2))
	typo := g.in(0.002, 0.01)
	for i, c := range clients {
		n := int(regular*weights[i]/total + r.Float64())
		for range n {
			t := g.start + r.Int64N(g.span)
			ip := c.pool[r.IntN(len(c.pool))]
			key := c.key
			if c.rotated != 0 && t >= c.rotated {
				key = c.newKey
			}
			if end, down := inOutage(t); down {
				g.add(t, ip, c.id, key, 503, g.in(0.001, 0.003))
				t = end + r.Int64N(180_000) // the retry, in the burst after
			}
			switch {
			case c.staleKey != "" && r.Float64() < c.staleRate:
				g.add(t, ip, c.id, c.staleKey, 401, g.in(0.003, 0.006))
				continue
			case r.Float64() < typo:
				g.add(t, ip, c.id, g.typo(), 401, g.in(0.003, 0.006))
				t += int64(g.in(2, 60) * 1000) // fixed and retried
			}
			g.add(t, ip, c.id, key, 200, g.in(0.01, 0.05))
		}
	}
	g.truth.Benign["clients"] = o.Clients
	g.truth.Benign["mistyped keys (per mille of calls)"] = int(typo * 1000)

	g.clients = clients
}

func (g *week) typo() string {
	return fmt.Sprintf("sk_live_%04x", 0x6000+g.r.IntN(0x4000))
}

// attackWindow picks when an attack of the given length starts.
func (g *week) attackStart(length int64) int64 {
	return g.start + int64(g.r.Float64()*float64(max(g.span-length-3600_000, 1)))
}

// victims picks n identities: mostly real clients, some that do not exist.
func (g *week) victims(n int) []string {
	out := make([]string, 0, n)
	seen := map[string]bool{}
	for len(out) < n {
		var id string
		if g.r.IntN(4) == 0 {
			id = fmt.Sprintf("client-x%05d", g.r.IntN(100000))
		} else {
			id = clientID(g.r.IntN(g.o.Clients))
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

func (g *week) record(a Attack, ips map[netip.Addr]bool, first, last int64) {
	for ip := range ips {
		a.IPs = append(a.IPs, ip)
	}
	slices.SortFunc(a.IPs, func(x, y netip.Addr) int { return x.Compare(y) })
	a.First, a.Last = time.UnixMilli(first).UTC(), time.UnixMilli(last).UTC()
	g.truth.Attacks = append(g.truth.Attacks, a)
}

// attackerAddr returns a fresh address from the ranges attackers come from.
func (g *week) attackerAddr() netip.Addr {
	return g.anyAddr([...]byte{45, 61, 77, 80, 91, 103, 185, 203}[g.r.IntN(8)])
}

// winner picks the identity an attack gets into, and the key that works:
// an active client's own key (which its owner keeps using) or a weak key
// of an identity nobody else uses.
func (g *week) winner() (id, key string, real bool) {
	if g.r.IntN(2) == 0 {
		i := g.r.IntN(g.o.Clients)
		return g.clients[i].id, g.clients[i].key, true
	}
	return fmt.Sprintf("client-dormant%04d", g.r.IntN(10000)), g.key(2), false
}

// afterwards: the attacker uses what worked a few times.
func (g *week) afterwards(t int64, ip netip.Addr, id, key string) int64 {
	for range g.intIn(1, 8) {
		t += int64(g.in(5, 600) * 1000)
		g.add(t, ip, id, key, 200, g.in(0.01, 0.05))
	}
	return t
}

func (g *week) attacks() {
	for range g.intIn(1, 2) {
		g.spray()
	}
	g.distributed()
	g.lowAndSlow()
	for range g.intIn(1, 2) {
		g.bruteForce()
	}
	for range g.intIn(1, 2) {
		g.stuffing()
	}
}

func (g *week) spray() {
	n, nc := int(g.logIn(20, 600)), g.intIn(1, 3)
	ids := g.victims(n)
	creds := make([]string, nc)
	for i := range creds {
		creds[i] = g.key(2)
	}
	win, wkey, real := "", "", false
	if g.r.IntN(5) < 2 {
		win, wkey, real = g.winner()
		creds[g.r.IntN(nc)] = wkey
		ids[g.r.IntN(n)] = win
	}
	every := int64(g.logIn(0.5, 60) * 1000)
	ip := g.attackerAddr()
	t := g.attackStart(int64(n*nc) * every)
	first, attempts := t, 0
	for _, c := range creds {
		for _, id := range ids {
			status := 401
			if id == win && c == wkey {
				status = 200
			}
			g.add(t, ip, id, c, status, g.in(0.003, 0.006))
			attempts++
			if status == 200 {
				g.afterwards(t, ip, id, c)
			}
			t += every/2 + g.r.Int64N(every+1)
		}
	}
	a := Attack{Kind: KindSpray, Identities: n, Attempts: attempts, RealKey: real}
	if win != "" {
		a.Succeeded = []string{win}
	}
	g.record(a, map[netip.Addr]bool{ip: true}, first, t)
}

func (g *week) distributed() {
	n := int(g.logIn(20, 400))
	perAddr := g.intIn(1, 6)
	nips := max(3, n/perAddr)
	ips := make([]netip.Addr, nips)
	set := map[netip.Addr]bool{}
	for i := range ips {
		ips[i] = g.attackerAddr()
		set[ips[i]] = true
	}
	ids := g.victims(n)
	cred := g.key(2)
	win, wkey, real := "", "", false
	if g.r.IntN(5) < 2 {
		win, wkey, real = g.winner()
		cred = wkey
		ids[g.r.IntN(n)] = win
	}
	length := int64(g.in(10, 55) * 60_000)
	t0 := g.attackStart(length)
	last := t0
	for i, id := range ids {
		t := t0 + int64(i)*length/int64(n)
		ip := ips[g.r.IntN(nips)]
		status := 401
		if id == win {
			status = 200
			last = max(last, g.afterwards(t, ip, id, cred))
		}
		g.add(t, ip, id, cred, status, g.in(0.003, 0.006))
		last = max(last, t)
	}
	a := Attack{Kind: KindDistributedSpray, Identities: n, Attempts: n, RealKey: real}
	if win != "" {
		a.Succeeded = []string{win}
	}
	g.record(a, set, t0, last)
}

func (g *week) lowAndSlow() {
	// slow: one to six identities an hour, each tried once, from many
	// addresses, the whole attack within a day
	n := int(g.logIn(25, 130))
	hours := min(float64(n)/g.in(1, 6), 22)
	length := int64(hours * 3600_000)
	ids := g.victims(n)
	cred := g.key(2)
	win, wkey, real := "", "", false
	if g.r.IntN(5) < 2 {
		win, wkey, real = g.winner()
		cred = wkey
		ids[g.r.IntN(n)] = win
	}
	set := map[netip.Addr]bool{}
	t0 := g.attackStart(length)
	last := t0
	var ip netip.Addr
	for i, id := range ids {
		if i%g.intIn(1, 3) == 0 || !ip.IsValid() {
			ip = g.attackerAddr()
			set[ip] = true
		}
		t := t0 + int64(i)*length/int64(n) + g.r.Int64N(60_000)
		status := 401
		if id == win {
			status = 200
			last = max(last, g.afterwards(t, ip, id, cred))
		}
		g.add(t, ip, id, cred, status, g.in(0.003, 0.006))
		last = max(last, t)
	}
	a := Attack{Kind: KindLowAndSlow, Identities: n, Attempts: n, RealKey: real}
	if win != "" {
		a.Succeeded = []string{win}
	}
	g.record(a, set, t0, last)
}

func (g *week) bruteForce() {
	n := int(g.logIn(15, 300))
	nips := g.intIn(1, 3)
	set := map[netip.Addr]bool{}
	ips := make([]netip.Addr, nips)
	for i := range ips {
		ips[i] = g.attackerAddr()
		set[ips[i]] = true
	}
	c := g.clients[g.r.IntN(g.o.Clients)]
	id, won := c.id, g.r.IntN(5) < 2
	every := int64(g.logIn(1, 30) * 1000)
	t := g.attackStart(int64(n) * every)
	first, last := t, t
	for i := range n {
		ip := ips[g.r.IntN(nips)]
		if won && i == n-1 {
			g.add(t, ip, id, c.key, 200, g.in(0.01, 0.05))
			last = g.afterwards(t, ip, id, c.key)
			break
		}
		g.add(t, ip, id, g.key(2), 401, g.in(0.003, 0.006))
		last = t
		t += every/2 + g.r.Int64N(every+1)
	}
	a := Attack{Kind: KindBruteForce, Identities: 1, Attempts: n, RealKey: won}
	if won {
		a.Succeeded = []string{id}
	}
	g.record(a, set, first, last)
}

func (g *week) stuffing() {
	n := int(g.logIn(20, 400))
	ids := g.victims(n)
	// from one address, or from several of one /24, each under the
	// per-address rule's radar
	var ips []netip.Addr
	set := map[netip.Addr]bool{}
	if g.r.IntN(2) == 0 {
		ips = []netip.Addr{g.attackerAddr()}
	} else {
		base := g.attackerAddr().As4()
		for range max(2, n/g.intIn(3, 12)) {
			b := base
			for {
				b[3] = byte(1 + g.r.IntN(254))
				if ip := netip.AddrFrom4(b); !g.used[ip] {
					g.used[ip] = true
					ips = append(ips, ip)
					break
				}
			}
			if len(ips) >= 250 {
				break
			}
		}
	}
	for _, ip := range ips {
		set[ip] = true
	}
	winAt := -1
	if g.r.IntN(5) < 2 {
		winAt = g.r.IntN(n)
	}
	every := int64(g.logIn(1, 40) * 1000)
	t := g.attackStart(int64(n) * every)
	first, last := t, t
	var won []string
	real := false
	for i, id := range ids {
		ip := ips[i%len(ips)]
		if i == winAt {
			// a leaked pair that still works
			wid, wkey, isReal := g.winner()
			g.add(t, ip, wid, wkey, 200, g.in(0.01, 0.05))
			last = max(last, g.afterwards(t, ip, wid, wkey))
			won, real = []string{wid}, isReal
		} else {
			g.add(t, ip, id, g.key(2), 401, g.in(0.003, 0.006))
			last = max(last, t)
		}
		t += every/2 + g.r.Int64N(every+1)
	}
	a := Attack{Kind: KindStuffing, Identities: n, Attempts: n, Succeeded: won, RealKey: real}
	g.record(a, set, first, last)
}

// wholeKey is the key behind a label, for formats that log whole keys.
func wholeKey(label string) string {
	h := sha256.Sum256([]byte(label))
	return label + hex.EncodeToString(h[:10])
}

func (g *week) format(b []byte, e *wev) []byte {
	t := time.UnixMilli(e.ms).UTC()
	size := 512
	if e.status != 200 {
		size = 32
	}
	switch g.o.Format {
	case WeekJSON:
		b = append(b, `{"time":"`...)
		b = t.AppendFormat(b, time.RFC3339)
		b = append(b, `","remote_addr":"`...)
		b = e.ip.AppendTo(b)
		b = append(b, `","request":"GET /api/v1/clients/`...)
		b = append(b, e.id...)
		b = append(b, `/resource HTTP/1.1","status":`...)
		b = strconv.AppendInt(b, int64(e.status), 10)
		b = append(b, `,"key_prefix":"`...)
		b = append(b, e.key...)
		b = append(b, `","request_time":`...)
		b = strconv.AppendFloat(b, float64(e.rt), 'f', 3, 32)
		b = append(b, "}\n"...)
	case WeekGunicorn:
		b = e.ip.AppendTo(b)
		b = append(b, " - - ["...)
		b = t.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
		b = append(b, `] "GET /api/v1/clients/`...)
		b = append(b, e.id...)
		b = append(b, `/resource HTTP/1.1" `...)
		b = strconv.AppendInt(b, int64(e.status), 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(size), 10)
		b = append(b, ` "-" "client/1.0" key="`...)
		b = append(b, wholeKey(e.key)...)
		b = append(b, `" rt=`...)
		b = strconv.AppendFloat(b, float64(e.rt), 'f', 6, 32)
		b = append(b, '\n')
	default: // nginx and combined
		b = e.ip.AppendTo(b)
		b = append(b, " - - ["...)
		b = t.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
		b = append(b, `] "GET /api/v1/clients/`...)
		b = append(b, e.id...)
		b = append(b, `/resource HTTP/1.1" `...)
		b = strconv.AppendInt(b, int64(e.status), 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(size), 10)
		b = append(b, ` "-" "client/1.0"`...)
		if g.o.Format == WeekNginx {
			b = append(b, " key="...)
			b = append(b, e.key...)
			b = append(b, " rt="...)
			b = strconv.AppendFloat(b, float64(e.rt), 'f', 3, 32)
		}
		b = append(b, '\n')
	}
	return b
}
