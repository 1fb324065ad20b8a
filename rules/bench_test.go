package rules_test

import (
	"bufio"
	"bytes"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/ingest/loggen"
	"github.com/spraywatch/spraywatch/rules"
)

// benchEvents parses a generated log (benign traffic with hidden attacks).
func benchEvents(b *testing.B, lines int) []ingest.Event {
	b.Helper()
	var buf bytes.Buffer
	start := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	if _, err := loggen.Write(&buf, loggen.Options{Start: start, Duration: 6 * time.Hour, Clients: 2000, Lines: lines, Seed: 1,
		Spray: true, BruteForce: true, Stuffing: true, NAT: true, Stale: true, Compromise: true}); err != nil {
		b.Fatal(err)
	}
	p, err := ingest.NewParser(ingest.Options{Name: "bench", Format: ingest.FormatNginx, Layout: loggen.LogFormat,
		Fields: map[ingest.Role]string{ingest.RoleCredential: "api_key_prefix"}, IdentityPaths: []string{loggen.IdentityPath},
		Statuses: ingest.DefaultStatuses(), Secret: []byte("bench-secret-0123456789")})
	if err != nil {
		b.Fatal(err)
	}
	var evs []ingest.Event
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var ev ingest.Event
		if p.Parse(sc.Bytes(), &ev) == nil {
			evs = append(evs, ev)
		}
	}
	return evs
}

// BenchmarkEngineObserve measures window counting and rule evaluation per
// event on 2,000 clients' traffic, without SQLite (batches are taken and
// dropped as replay would hand them to its writer).
func BenchmarkEngineObserve(b *testing.B) {
	evs := benchEvents(b, 200_000)
	b.ReportAllocs()
	e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%len(evs) == 0 && i > 0 {
			b.StopTimer()
			e = rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
			b.StartTimer()
		}
		e.Observe(&evs[i%len(evs)])
		if e.Pending() >= 50_000 {
			e.TakeBatch(detect.Batch{}) // as replay hands batches to its writer
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
}
