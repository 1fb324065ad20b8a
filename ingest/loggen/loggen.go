// Package loggen writes realistic nginx access logs with known attacks
// hidden in benign traffic, for the demo, the end-to-end tests and the
// replay benchmark. Output is deterministic for a seed.
package loggen

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"sort"
	"time"
)

// LogFormat is the nginx log_format the generated lines follow; the
// api_key_prefix variable is an nginx map of the X-API-Key header to its
// first 12 characters.
const LogFormat = `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" key=$api_key_prefix rt=$request_time`

// IdentityPath is the route template of the generated API.
const IdentityPath = "/api/v1/clients/{identity}/"

// Options choose what to write.
type Options struct {
	Start    time.Time
	Duration time.Duration
	// Clients is the number of benign clients, each with its own address
	// and key.
	Clients int
	// Lines is the number of benign lines to spread over the duration.
	Lines int
	Seed  uint64
	// Attacks to hide in the traffic.
	Spray, BruteForce, Stuffing, Distributed, LowAndSlow, NAT, Stale, Compromise bool
}

// Expect is an attack the log holds and the incident it should raise.
type Expect struct {
	Kind       string
	Attempts   int
	Identities int
	IPs        int
}

type event struct {
	t    time.Time
	line string
}

// Write writes the log to w, oldest line first, and returns what it hid.
func Write(w io.Writer, o Options) ([]Expect, error) {
	if o.Clients <= 0 {
		o.Clients = 200
	}
	if o.Duration <= 0 {
		o.Duration = 6 * time.Hour
	}
	r := rand.New(rand.NewPCG(o.Seed, o.Seed^0x5eed))
	var attacks []event
	var expect []Expect
	at := func(offset time.Duration) time.Time { return o.Start.Add(offset) }
	add := func(t time.Time, ip, id, key string, status int) {
		attacks = append(attacks, event{t, line(t, ip, id, key, status, 0.003+r.Float64()*0.002)})
	}
	if o.Spray {
		// One address, one key, 150 client IDs, one try each: 100 real
		// clients (401) and 50 that do not exist (404).
		for i := 0; i < 150; i++ {
			id, status := clientID(i%o.Clients), 401
			if i >= 100 {
				id, status = fmt.Sprintf("client-x%03d", i), 404
			}
			add(at(2*time.Hour+time.Duration(i)*8*time.Second), "203.0.113.66", id, "sk_live_dead", status)
		}
		expect = append(expect, Expect{"spray", 150, 150, 1})
		if o.Compromise {
			add(at(2*time.Hour+25*time.Minute), "203.0.113.66", clientID(42%o.Clients), "sk_live_dead", 200)
			expect = append(expect, Expect{"compromise", 1, 1, 1})
		}
	}
	if o.BruteForce {
		for i := 0; i < 40; i++ {
			add(at(3*time.Hour+time.Duration(i)*7*time.Second), "198.51.100.77", clientID(7%o.Clients), fmt.Sprintf("sk_live_b%03d", i), 401)
		}
		expect = append(expect, Expect{"brute_force", 40, 1, 1})
	}
	if o.Stuffing {
		for i := 0; i < 40; i++ {
			add(at(4*time.Hour+time.Duration(i)*15*time.Second), "203.0.113.99", clientID((i*3+2)%o.Clients), fmt.Sprintf("sk_live_c%03d", i), 401)
		}
		expect = append(expect, Expect{"credential_stuffing", 40, 40, 1})
	}
	if o.Distributed {
		for i := 0; i < 120; i++ {
			ip := fmt.Sprintf("100.64.%d.7", i%60)
			add(at(5*time.Hour+time.Duration(i)*22*time.Second), ip, fmt.Sprintf("client-d%03d", i), "sk_live_d15t", 401)
		}
		expect = append(expect, Expect{"distributed_spray", 120, 120, 60})
	}
	if o.LowAndSlow {
		for i := 0; i < 48; i++ {
			ip := fmt.Sprintf("100.80.%d.9", i)
			add(at(time.Hour+time.Duration(i)*30*time.Minute), ip, fmt.Sprintf("client-s%03d", i), "sk_live_510w", 401)
		}
		expect = append(expect, Expect{"low_and_slow_spray", 48, 48, 48})
	}
	if o.NAT {
		// 40 employees behind one egress address, each with its own key.
		for m := time.Duration(0); m < o.Duration; m += 2 * time.Minute {
			for i := 0; i < 40; i++ {
				status := 200
				if r.IntN(50) == 0 {
					status = 401
				}
				add(at(m+time.Duration(i)*time.Second), "192.0.2.10", fmt.Sprintf("client-nat%02d", i), fmt.Sprintf("sk_live_a%03d", i), status)
			}
		}
	}
	if o.Stale {
		// A client whose key was rotated keeps retrying the old one.
		for m := time.Duration(0); m < o.Duration; m += 30 * time.Second {
			status := 200
			if m > time.Hour {
				status = 401
			}
			add(at(m+7*time.Second), "198.51.100.20", "client-stale", "sk_live_57a1", status)
		}
	}
	sort.SliceStable(attacks, func(i, j int) bool { return attacks[i].t.Before(attacks[j].t) })

	bw := bufio.NewWriterSize(w, 1<<20)
	minutes := int(o.Duration / time.Minute)
	perMinute := float64(o.Lines) / float64(max(minutes, 1))
	carry := 0.0
	var minute []event
	next := 0
	for m := 0; m < minutes; m++ {
		start := at(time.Duration(m) * time.Minute)
		carry += perMinute
		n := int(carry)
		carry -= float64(n)
		minute = minute[:0]
		for i := 0; i < n; i++ {
			c := r.IntN(o.Clients)
			t := start.Add(time.Duration(r.IntN(60_000)) * time.Millisecond)
			status := 200
			if r.IntN(400) == 0 {
				status = 401 // a client misconfigures its key now and then
			}
			minute = append(minute, event{t, line(t, clientIP(c), clientID(c), clientKey(c), status, 0.01+r.Float64()*0.04)})
		}
		end := start.Add(time.Minute)
		for next < len(attacks) && attacks[next].t.Before(end) {
			minute = append(minute, attacks[next])
			next++
		}
		sort.SliceStable(minute, func(i, j int) bool { return minute[i].t.Before(minute[j].t) })
		for _, e := range minute {
			bw.WriteString(e.line)
			bw.WriteByte('\n')
		}
	}
	return expect, bw.Flush()
}

func clientID(i int) string { return fmt.Sprintf("client-%04d", i) }

func clientKey(i int) string { return fmt.Sprintf("sk_live_%04x", i) }

func clientIP(i int) string {
	return netip.AddrFrom4([4]byte{198, 18, byte(i / 250), byte(i%250 + 1)}).String()
}

func line(t time.Time, ip, id, key string, status int, rt float64) string {
	size := 512
	if status != 200 {
		size = 32
	}
	return fmt.Sprintf(`%s - - [%s] "GET /api/v1/clients/%s/resource HTTP/1.1" %d %d "-" "client/1.0" key=%s rt=%.3f`,
		ip, t.Format("02/Jan/2006:15:04:05 -0700"), id, status, size, key, rt)
}
