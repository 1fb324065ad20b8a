package postgres_test

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/detect/postgres"
	"github.com/spraywatch/spraywatch/detect/postgres/pgtest"
	"github.com/spraywatch/spraywatch/ingest"
)

// rowsPerFlush is what one agent flush holds in the benchmark: a busy node's
// second (2,000 lines/s from 500 clients collapse to about 500 rows).
const rowsPerFlush = 500

// BenchmarkFleetWrite measures the attempt rows per second that 1, 3 and 10
// agents write together (each its own connection and node, flushing
// rowsPerFlush rows a transaction), and the rows per second one judge then
// reads back in cursor order. It also reports the bytes each row takes on
// disk, indexes included, for sizing.
//
//	go test -run '^$' -bench FleetWrite -benchtime 20000x ./detect/postgres
func BenchmarkFleetWrite(b *testing.B) {
	for _, agents := range []int{1, 3, 10} {
		b.Run(fmt.Sprintf("agents=%d", agents), func(b *testing.B) {
			ctx := context.Background()
			url, pw := pgtest.Database(b)
			stores := make([]*postgres.Store, agents)
			for i := range stores {
				s, err := postgres.Open(ctx, postgres.Options{URL: url, Password: pw, Node: fmt.Sprintf("web-%d", i+1)})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				stores[i] = s
			}
			flushes := max(1, b.N/rowsPerFlush/agents)
			t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
			batches := make([][]*detect.Attempts, agents)
			for i := range batches {
				for f := range flushes {
					a := detect.NewAttempts()
					for r := range rowsPerFlush {
						ev := &ingest.Event{Time: t0.Add(time.Duration(f) * time.Second), Source: "api",
							IP: netip.AddrFrom4([4]byte{198, 18, byte(r >> 8), byte(r)}), Identity: fmt.Sprintf("client-%04d", r),
							Credential: fmt.Sprintf("sk_live_%04x", r), Outcome: ingest.Success,
							Pos: ingest.Pos{File: "/var/log/nginx/access.log", Inode: 1234567, Offset: int64(f*rowsPerFlush+r) * 180}}
						a.Add(ev)
					}
					batches[i] = append(batches[i], a)
				}
			}
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for i, s := range stores {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for _, a := range batches[i] {
						clk := []postgres.Clock{{Source: "api", Event: t0, Wall: time.Now()}}
						if err := s.FlushAgent(ctx, detect.Batch{Attempts: a}, clk, time.Now()); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			wrote := time.Since(start)
			rows := float64(flushes * rowsPerFlush * agents)
			judge := stores[0]
			start = time.Now()
			var read int
			for i := range stores {
				var last int64
				for {
					got := 0
					var err error
					last, err = judge.ReadAttempts(ctx, fmt.Sprintf("web-%d", i+1), last, 5000, func(postgres.Row) error { got++; return nil })
					if err != nil {
						b.Fatal(err)
					}
					read += got
					if got < 5000 {
						break
					}
				}
			}
			readTook := time.Since(start)
			b.StopTimer()
			if read != int(rows) {
				b.Fatalf("judge read %d rows, agents wrote %.0f", read, rows)
			}
			var size int64
			judge.DB().QueryRowContext(ctx, `SELECT pg_total_relation_size('attempts')`).Scan(&size)
			b.ReportMetric(rows/wrote.Seconds(), "rows/s-written")
			b.ReportMetric(rows/readTook.Seconds(), "rows/s-read")
			b.ReportMetric(float64(size)/rows, "bytes/row")
		})
	}
}
