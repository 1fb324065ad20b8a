package ingest_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/ingest"
)

// proxyParsers are three sources that take the client address from a
// forwarded-for header: gunicorn with the header unquoted (the list has
// spaces), nginx with it unquoted after a trusted peer, and JSON.
func proxyParsers(t testing.TB, trusted []netip.Prefix) map[string]*ingest.Parser {
	t.Helper()
	mk := func(o ingest.Options) *ingest.Parser {
		o.Name, o.Location, o.Secret, o.Statuses, o.TrustedProxies = "proxy", time.UTC, []byte("proxy-test-secret"), ingest.DefaultStatuses(), trusted
		o.IdentityPaths = []string{identityPath}
		p, err := ingest.NewParser(o)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	return map[string]*ingest.Parser{
		"gunicorn": mk(ingest.Options{Format: ingest.FormatGunicorn, Layout: `%({x-forwarded-for}i)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"`,
			Fields: map[ingest.Role]string{ingest.RoleIP: "{x-forwarded-for}i"}}),
		"nginx": mk(ingest.Options{Format: ingest.FormatNginx, Layout: `$remote_addr - $http_x_forwarded_for [$time_local] "$request" $status $body_bytes_sent`,
			Fields: map[ingest.Role]string{ingest.RoleIP: "http_x_forwarded_for"}}),
		"json": mk(ingest.Options{Format: ingest.FormatJSON, Fields: map[ingest.Role]string{ingest.RoleIP: "xff"}}),
	}
}

// proxyLine writes one failed request with the header xff in each
// parser's format.
func proxyLine(format, xff string) string {
	const req = "GET /api/v1/clients/client-001/resource HTTP/1.1"
	switch format {
	case "gunicorn":
		return xff + ` - - [28/Nov/2026:16:03:41 +0000] "` + req + `" 401 25 "-" "client/1.0"`
	case "nginx":
		return `10.0.0.2 - ` + xff + ` [28/Nov/2026:16:03:41 +0000] "` + req + `" 401 25`
	}
	return `{"time":"2026-11-28T16:03:41Z","xff":"` + xff + `","request":"` + req + `","status":401}`
}

func TestForwardedFor(t *testing.T) {
	tests := []struct {
		name, xff string
		trusted   []netip.Prefix
		want      string // "" for a skipped line
	}{
		{"one address", "203.0.113.50", nil, "203.0.113.50"},
		{"client-written entry ignored", "1.2.3.4, 203.0.113.50", nil, "203.0.113.50"},
		{"two forged entries", "1.2.3.4, 5.6.7.8, 203.0.113.50", nil, "203.0.113.50"},
		{"behind a load balancer", "1.2.3.4, 203.0.113.50, 10.0.0.9", nil, "203.0.113.50"},
		{"loopback and private skipped", "203.0.113.50, 192.168.1.1, 127.0.0.1", nil, "203.0.113.50"},
		{"all trusted: the leftmost", "10.1.2.3, 127.0.0.1", nil, "10.1.2.3"},
		{"no spaces", "1.2.3.4,203.0.113.50", nil, "203.0.113.50"},
		{"IPv6 ULA proxy", "2001:db8::7, fd00::1", nil, "2001:db8::7"},
		{"mapped private proxy", "203.0.113.50, ::ffff:10.0.0.3", nil, "203.0.113.50"},
		{"with ports", "1.2.3.4, 198.51.100.9:4711, [fd00::2]:443", nil, "198.51.100.9"},
		{"garbage left of the proxy", "zzz, 10.0.0.4", nil, "10.0.0.4"},
		{"forged garbage left of the client", "1.2.3.4, not-an-ip, 203.0.113.50", nil, "203.0.113.50"},
		{"empty trusted list: the rightmost", "203.0.113.50, 10.0.0.9", []netip.Prefix{}, "10.0.0.9"},
		{"configured proxies", "203.0.113.50, 198.51.100.1, 198.51.100.2", []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, "203.0.113.50"},
		{"configured proxies replace the defaults", "203.0.113.50, 10.0.0.9", []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, "10.0.0.9"},
		{"no address at all", "unknown", nil, ""},
	}
	for _, tt := range tests {
		for format, p := range proxyParsers(t, tt.trusted) {
			if format == "nginx" {
				continue // its peer ends the list: TestForwardedForPeer, TestForwardedForRandom
			}
			t.Run(tt.name+"/"+format, func(t *testing.T) {
				line := proxyLine(format, tt.xff)
				var ev ingest.Event
				err := p.Parse([]byte(line), &ev)
				if tt.want == "" {
					if err == nil {
						t.Fatalf("Parse(%q) = %v, want a skip", line, ev.IP)
					}
					return
				}
				if err != nil {
					t.Fatalf("Parse(%q): %v", line, err)
				}
				if got := ev.IP.String(); got != tt.want {
					t.Errorf("Parse(%q) address %s, want %s", line, got, tt.want)
				}
			})
		}
	}
}

// A peer that is no trusted proxy is the client, whatever its header says;
// a line without the header is the peer's.
func TestForwardedForPeer(t *testing.T) {
	p := proxyParsers(t, nil)["nginx"]
	for line, want := range map[string]string{
		`198.51.100.7 - 1.2.3.4 [28/Nov/2026:16:03:41 +0000] "GET /api/v1/clients/c/ HTTP/1.1" 401 25`:       "198.51.100.7",
		`10.0.0.2 - - [28/Nov/2026:16:03:41 +0000] "GET /api/v1/clients/c/ HTTP/1.1" 401 25`:                 "10.0.0.2",
		`10.0.0.2 - 1.2.3.4, 10.0.0.5 [28/Nov/2026:16:03:41 +0000] "GET /api/v1/clients/c/ HTTP/1.1" 401 25`: "1.2.3.4",
	} {
		var ev ingest.Event
		if err := p.Parse([]byte(line), &ev); err != nil || ev.IP.String() != want {
			t.Errorf("Parse(%q) = %v, %v; want %s", line, ev.IP, err, want)
		}
	}
}

// proxyModel is the client address of a forwarded-for list as the realip
// module defines it, on a list of entries ("" for one that is no address).
func proxyModel(entries []string, trusted func(netip.Addr) bool) string {
	last := ""
	for i := len(entries) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(entries[i])
		if err != nil {
			return last
		}
		if !trusted(a) {
			return entries[i]
		}
		last = entries[i]
	}
	return last
}

// TestForwardedForRandom writes random lists (forged entries, clients,
// proxies, garbage, with and without spaces) in every format and holds
// the address each parser takes to the model. Replay a failure with
// PROXY_SEED=<seed>.
func TestForwardedForRandom(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("PROXY_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (PROXY_SEED=%d to replay)", seed, seed)
	r := rand.New(rand.NewPCG(seed, 0))
	trusted := func(a netip.Addr) bool {
		for _, p := range ingest.DefaultTrustedProxies {
			if p.Contains(a.Unmap()) {
				return true
			}
		}
		return false
	}
	pool := []string{"203.0.113.50", "198.51.100.7", "1.2.3.4", "2001:db8::5", "10.0.0.2", "127.0.0.1", "192.168.7.7",
		"172.16.0.1", "fd00::1", "::1", "::ffff:10.1.1.1", "unknown", "x", "-1", "999.1.1.1"}
	parsers := proxyParsers(t, nil)
	for n := range 5000 {
		entries := make([]string, 1+r.IntN(5))
		for i := range entries {
			entries[i] = pool[r.IntN(len(pool))]
		}
		var b strings.Builder
		for i, e := range entries {
			if i > 0 {
				b.WriteString([]string{", ", ",", ",  "}[r.IntN(3)])
			}
			b.WriteString(e)
		}
		for format, p := range parsers {
			want := proxyModel(entries, trusted)
			if format == "nginx" {
				want = proxyModel(append(entries, "10.0.0.2"), trusted) // its trusted peer
			}
			line := proxyLine(format, b.String())
			var ev ingest.Event
			err := p.Parse([]byte(line), &ev)
			got := ""
			if err == nil {
				got = ev.IP.String()
			}
			if wa, perr := netip.ParseAddr(want); perr == nil {
				want = wa.String()
			}
			if got != want {
				t.Fatalf("seed %d, case %d, %s: list %q: got %q (%v), want %q", seed, n, format, b.String(), got, err, want)
			}
		}
	}
}

func TestLatencyUnits(t *testing.T) {
	tests := []struct {
		field string
		unit  time.Duration
		value string
		want  time.Duration
	}{
		{"duration_ms", 0, "29", 29 * time.Millisecond},
		{"duration_ms", 0, "2.5", 2500 * time.Microsecond},
		{"elapsedMs", 0, "7", 7 * time.Millisecond},
		{"timing.latency_us", 0, "1500", 1500 * time.Microsecond},
		{"took_ns", 0, "12000000000", 12 * time.Second},
		{"request_time_seconds", 0, "0.25", 250 * time.Millisecond},
		{"latency-s", 0, "1", time.Second},
		{"duration", 0, "0.003", 3 * time.Millisecond},
		{"duration", time.Millisecond, "3", 3 * time.Millisecond},
		{"duration_ms", time.Microsecond, "3", 3 * time.Microsecond}, // the option wins over the name
		{"items", 0, "3", 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%v/%s", tt.field, tt.unit, tt.value), func(t *testing.T) {
			p, err := ingest.NewParser(ingest.Options{Name: "lat", Format: ingest.FormatJSON, Location: time.UTC, Statuses: ingest.DefaultStatuses(),
				Fields: map[ingest.Role]string{ingest.RoleLatency: tt.field}, LatencyUnit: tt.unit})
			if err != nil {
				t.Fatal(err)
			}
			path := strings.Split(tt.field, ".")
			val := tt.value
			for i := len(path) - 1; i >= 0; i-- {
				val = fmt.Sprintf(`{"%s":%s}`, path[i], val)
			}
			line := `{"time":"2026-11-28T16:03:41Z","ip":"203.0.113.5","status":401,"path":"/x",` + val[1:]
			var ev ingest.Event
			if err := p.Parse([]byte(line), &ev); err != nil {
				t.Fatalf("Parse(%s): %v", line, err)
			}
			if !ev.HasLatency || ev.Latency != tt.want {
				t.Errorf("Parse(%s) latency %v (has %v), want %v", line, ev.Latency, ev.HasLatency, tt.want)
			}
		})
	}
	// A Flask app line's key=value latency takes the unit of its key.
	p, err := ingest.NewParser(ingest.Options{Name: "lat", Format: ingest.FormatFlask, Location: time.UTC, Statuses: ingest.DefaultStatuses(),
		Fields: map[ingest.Role]string{ingest.RoleLatency: "duration_ms"}})
	if err != nil {
		t.Fatal(err)
	}
	var ev ingest.Event
	line := "[2026-11-28 16:03:41,000] WARNING in app: auth failure client_id=c1 key_prefix=sk_live_0000 ip=203.0.113.5 status=401 duration_ms=4"
	if err := p.Parse([]byte(line), &ev); err != nil || ev.Latency != 4*time.Millisecond {
		t.Errorf("Parse(%q) latency %v, %v; want 4ms", line, ev.Latency, err)
	}
}

func TestUnitFromName(t *testing.T) {
	for name, want := range map[string]time.Duration{"duration_ms": time.Millisecond, "http.elapsedMicros": time.Microsecond, "t_nsec": time.Nanosecond,
		"response_time_secs": time.Second, "duration": 0, "ms": 0, "items": 0, "latency_minutes": 0} {
		got, ok := ingest.UnitFromName(name)
		if got != want || ok != (want != 0) {
			t.Errorf("UnitFromName(%q) = %v, %v; want %v", name, got, ok, want)
		}
	}
}
