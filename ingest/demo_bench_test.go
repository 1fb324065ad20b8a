package ingest_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/ingest/loggen"
)

// demoOptions is the demo's source: nginx with loggen's log_format, the key
// prefix as credential, the clients' identity path.
func demoOptions() ingest.Options {
	return ingest.Options{Name: "api-nginx", Format: ingest.FormatNginx, Layout: loggen.LogFormat,
		Fields: map[ingest.Role]string{ingest.RoleCredential: "api_key_prefix"}, CredentialKind: ingest.CredentialPrefix,
		IdentityPaths: []string{loggen.IdentityPath}, Location: time.UTC, Statuses: ingest.DefaultStatuses(),
		Secret: []byte("bench-secret-not-for-production")}
}

// demoLines writes the demo's log: lines benign lines from clients clients
// over six hours with the demo's attacks, and, when flood > 0, flood lines
// interleaved with them, each from a random 10.0.0.0/8 address with an
// identity and a key of its own (the replay and daemon benchmarks' flood).
func demoLines(tb testing.TB, lines, clients, flood int) [][]byte {
	tb.Helper()
	var buf bytes.Buffer
	start := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	if _, err := loggen.Write(&buf, loggen.Options{Start: start, Duration: 6 * time.Hour, Clients: clients, Lines: lines, Seed: 7,
		Spray: true, BruteForce: true, Stuffing: true}); err != nil {
		tb.Fatal(err)
	}
	benign := bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n"))
	if flood == 0 {
		return benign
	}
	r := rand.New(rand.NewPCG(7, 7))
	out := make([][]byte, 0, len(benign)+flood)
	owed, f := 0.0, 0
	for _, l := range benign {
		out = append(out, l)
		stamp := l[bytes.IndexByte(l, '[') : bytes.IndexByte(l, ']')+1]
		for owed += float64(flood) / float64(len(benign)); owed >= 1; owed-- {
			f++
			out = append(out, fmt.Appendf(nil, `10.%d.%d.%d - - %s "GET /api/v1/clients/client-f%d/resource HTTP/1.1" 401 32 "-" "client/1.0" key=sk_live_f%d rt=0.004`,
				r.IntN(256), r.IntN(256), r.IntN(256), stamp, f, f))
		}
	}
	return out
}

// threadCPU is the CPU time the calling thread has used: unlike ns/op it
// does not count the time a busy machine gave to other processes.
func threadCPU(tb testing.TB) time.Duration {
	const rusageThread = 1 // RUSAGE_THREAD
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkParseDemo measures Parse on the demo's nginx lines: 20,000
// clients (a working set larger than a CPU cache), and the flood (60% of
// lines from one-off addresses, identities and keys). ns/op is per line;
// cpu-ns/op is the benchmark thread's CPU time per line.
func BenchmarkParseDemo(b *testing.B) {
	for _, bc := range []struct {
		name                  string
		lines, clients, flood int
	}{
		{"clients20k", 300_000, 20_000, 0},
		{"flood", 120_000, 200, 180_000},
	} {
		var lines [][]byte // made once: b.Run calls the function again for each b.N
		b.Run(bc.name, func(b *testing.B) {
			if lines == nil {
				lines = demoLines(b, bc.lines, bc.clients, bc.flood)
			}
			p, err := ingest.NewParser(demoOptions())
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 0, 4096)
			var ev ingest.Event
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := threadCPU(b)
			for i := 0; i < b.N; i++ {
				buf = append(buf[:0], lines[i%len(lines)]...)
				if err := p.Parse(buf, &ev); err != nil {
					b.Fatalf("line %d: %v", i%len(lines), err)
				}
			}
			b.ReportMetric(float64(threadCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
