package detect_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
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
