package detect_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
)

// BenchmarkFlushAttempts writes 100,000 distinct attempt rows (a busy
// minute of one-off addresses and identities) per op; ns/op divided by
// 100,000 is the cost of a row.
func BenchmarkFlushAttempts(b *testing.B) {
	const rows = 100_000
	s, err := detect.Open(filepath.Join(b.TempDir(), "b.db"), detect.StoreOptions{DeferIndexes: true, Scratch: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	evs := make([]ingest.Event, rows)
	for i := range evs {
		evs[i] = ingest.Event{Time: t0.Add(time.Duration(i) * time.Second / 100), Source: "api",
			IP: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Identity: fmt.Sprint("client-", i),
			Credential: fmt.Sprint("sk_live_", i), Outcome: ingest.Failure, Pos: ingest.Pos{File: "/var/log/api.log", Inode: 42, Offset: int64(i) * 150}}
	}
	b.ResetTimer()
	for range b.N {
		a := detect.NewAttempts()
		for i := range evs {
			a.Add(&evs[i])
		}
		if err := s.Flush(context.Background(), detect.Batch{Attempts: a}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFlushRoutine counts and writes 100,000 routine successes of
// 20,000 clients over an hour per op (five each): 20,000 rows. ns/op
// divided by 100,000 is what a benign line costs the store.
func BenchmarkFlushRoutine(b *testing.B) {
	const lines, clients = 100_000, 20_000
	s, err := detect.Open(filepath.Join(b.TempDir(), "b.db"), detect.StoreOptions{DeferIndexes: true, Scratch: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	evs := make([]ingest.Event, lines)
	for i := range evs {
		c := i % clients
		evs[i] = ingest.Event{Time: t0.Add(time.Duration(i) * time.Hour / lines), Source: "api",
			IP: netip.AddrFrom4([4]byte{198, 18, byte(c >> 8), byte(c)}), Identity: fmt.Sprint("client-", c),
			Credential: fmt.Sprint("sk_live_", c), Outcome: ingest.Success, Pos: ingest.Pos{File: "/var/log/api.log", Inode: 42, Offset: int64(i) * 150}}
	}
	b.ResetTimer()
	for range b.N {
		a := detect.NewAttempts()
		for i := range evs {
			a.AddRoutine(&evs[i])
		}
		if err := s.Flush(context.Background(), detect.Batch{Attempts: a}); err != nil {
			b.Fatal(err)
		}
	}
}

// floodEvents are n failed lines of one-off addresses, identities and keys
// over n/100 seconds, as a flood's attackers give them.
func floodEvents(n int) []ingest.Event {
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	evs := make([]ingest.Event, n)
	for i := range evs {
		evs[i] = ingest.Event{Time: t0.Add(time.Duration(i) * time.Second / 100), Source: "api",
			IP: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Identity: fmt.Sprint("client-f", i),
			Credential: fmt.Sprint("sk_live_f", i), Outcome: ingest.Failure, Pos: ingest.Pos{File: "/var/log/api.log", Inode: 42, Offset: int64(i) * 150}}
	}
	return evs
}

// clientEvents are n lines of the given clients over minutes minutes,
// every twentieth a failure: most keys come back within their minute.
func clientEvents(n, clients, minutes int) []ingest.Event {
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	evs := make([]ingest.Event, n)
	idents, creds := make([]string, clients), make([]string, clients)
	for c := range clients {
		idents[c], creds[c] = fmt.Sprint("client-", c), fmt.Sprint("sk_live_", c)
	}
	for i := range evs {
		c := (i * 7919) % clients
		o := ingest.Success
		if i%20 == 0 {
			o = ingest.Failure
		}
		evs[i] = ingest.Event{Time: t0.Add(time.Duration(i) * time.Duration(minutes) * time.Minute / time.Duration(n)), Source: "api",
			IP: netip.AddrFrom4([4]byte{198, 18, byte(c >> 8), byte(c)}), Identity: idents[c], Credential: creds[c],
			Outcome: o, Pos: ingest.Pos{File: "/var/log/api.log", Inode: 42, Offset: int64(i) * 150}}
	}
	return evs
}

// BenchmarkAttemptsAdd counts 100,000 lines per op into an aggregate that
// is cleared and reused between ops, as the engine recycles it: ns/line is
// what the critical goroutine spends on the attempt aggregate.
func BenchmarkAttemptsAdd(b *testing.B) {
	for _, c := range []struct {
		name    string
		evs     []ingest.Event
		routine bool
	}{
		{"flood", floodEvents(100_000), false},
		{"repeats", clientEvents(100_000, 2_000, 5), false},
		{"routine", clientEvents(100_000, 20_000, 60), true},
	} {
		b.Run(c.name, func(b *testing.B) {
			a := detect.NewAttempts()
			cpu := cpuTime()
			for range b.N {
				for i := range c.evs {
					if c.routine {
						a.AddRoutine(&c.evs[i])
					} else {
						a.Add(&c.evs[i])
					}
				}
				a.Clear()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(c.evs)), "ns/line")
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N*len(c.evs)), "cpu-ns/line")
		})
	}
}

// BenchmarkWriteFlood writes a flood's one-off failed rows, as the daemon
// does (WAL, the minute index, 8 MiB of page cache, 25,000 rows a batch)
// and as a replay into a new case does (scratch, no index, 50,000 a
// batch), into one growing database. Counting the rows is not timed:
// ns/row is the writer goroutine's cost of a row.
func BenchmarkWriteFlood(b *testing.B) {
	for _, c := range []struct {
		name  string
		o     detect.StoreOptions
		batch int
	}{
		{"daemon", detect.StoreOptions{CacheKiB: 8192}, 25_000},
		{"replay", detect.StoreOptions{DeferIndexes: true, Scratch: true, CacheKiB: 32 << 10}, 50_000},
	} {
		b.Run(c.name, func(b *testing.B) {
			s, err := detect.Open(filepath.Join(b.TempDir(), "b.db"), c.o)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			evs := floodEvents(c.batch * 8)
			var cpu time.Duration
			for n := range b.N {
				b.StopTimer()
				part := evs[(n%8)*c.batch : (n%8+1)*c.batch]
				// Later ops are later minutes: the table grows at its end.
				shift := time.Duration(n/8) * time.Duration(len(evs)) * time.Second / 100
				a := detect.NewAttempts()
				for i := range part {
					ev := part[i]
					ev.Time = ev.Time.Add(shift)
					a.Add(&ev)
				}
				b.StartTimer()
				c0 := cpuTime()
				if err := s.Flush(context.Background(), detect.Batch{Attempts: a}); err != nil {
					b.Fatal(err)
				}
				cpu += cpuTime() - c0
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*c.batch), "ns/row")
			b.ReportMetric(float64(cpu)/float64(b.N*c.batch), "cpu-ns/row")
		})
	}
}

// cpuTime is the CPU time (user and system) the process has used: on a
// busy machine far steadier than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
