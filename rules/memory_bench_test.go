package rules_test

import (
	"bufio"
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/rules"
)

// BenchmarkMillionIPs feeds one million failed attempts from one million
// distinct addresses, each on its own identity with one key, inside one
// 15-minute window (an attacker choosing the cardinality), flushing counts
// to SQLite every 50,000 events as the daemon does every second. It reports
// the process's peak RSS (VmHWM), which includes the test binary itself.
// Run it alone: go test -run '^$' -bench MillionIPs -benchtime 1x ./rules
//
// The caps, the Go soft memory limit and the SQLite cache are the daemon's
// defaults (max_groups, max_entries, max_incident_set, memory_limit_mb,
// 8 MiB);
// SPRAYWATCH_BENCH_UNCAPPED=1 lifts them all.
func BenchmarkMillionIPs(b *testing.B) {
	maxGroups, maxEntries, maxSet := 50_000, 500_000, 50_000
	if os.Getenv("SPRAYWATCH_BENCH_UNCAPPED") == "1" {
		maxGroups, maxEntries, maxSet = 0, 0, 0
	} else {
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(128 << 20))
	}
	const n = 1_000_000
	for i := 0; i < b.N; i++ {
		store, err := detect.Open(filepath.Join(b.TempDir(), "bench.db"), detect.StoreOptions{CacheKiB: 8192})
		if err != nil {
			b.Fatal(err)
		}
		e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig(), MaxGroups: maxGroups, MaxEntries: maxEntries, MaxIncidentSet: maxSet})
		start := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
		ev := ingest.Event{Source: "api", Credential: "sk_live_dead", Outcome: ingest.Failure, Status: 401, Method: "POST",
			Route: "/api/v1/clients/{identity}/", Pos: ingest.Pos{File: "/var/log/nginx/access.log", Inode: 42}}
		for j := 0; j < n; j++ {
			ev.Time = start.Add(time.Duration(j) * 14 * time.Minute / n)
			ev.IP = netip.AddrFrom4([4]byte{10, byte(j >> 16), byte(j >> 8), byte(j)})
			ev.Identity = "victim-" + strconv.Itoa(j) // a new string per line, as the parser makes past its intern cache
			ev.Pos.Offset = int64(j) * 160
			e.Observe(&ev)
			if j%50_000 == 49_999 {
				if _, err := e.Flush(context.Background(), store, detect.Batch{}); err != nil {
					b.Fatal(err)
				}
			}
		}
		e.Tick(start.Add(15 * time.Minute))
		if _, err := e.Flush(context.Background(), store, detect.Batch{}); err != nil {
			b.Fatal(err)
		}
		if path := os.Getenv("SPRAYWATCH_BENCH_HEAPPROFILE"); path != "" {
			runtime.GC()
			if f, err := os.Create(path); err == nil {
				pprof.WriteHeapProfile(f)
				f.Close()
			}
		}
		groups := e.Windows().Len()
		b.ReportMetric(float64(groups[detect.ByIP]), "ip-groups")
		b.ReportMetric(float64(e.Windows().Dropped), "groups-dropped")
		b.ReportMetric(float64(e.Windows().DroppedEntries), "entries-dropped")
		b.ReportMetric(float64(e.Untracked), "untracked")
		runtime.KeepAlive(e)
		store.Close()
	}
	b.ReportMetric(peakRSSMB(), "peak-RSS-MB")
}

// peakRSSMB reads VmHWM from /proc/self/status.
func peakRSSMB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmHWM:")); ok {
			kb, _ := strconv.Atoi(string(bytes.Fields(v)[0]))
			return float64(kb) / 1024
		}
	}
	return 0
}
