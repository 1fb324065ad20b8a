package detect_test

import (
	"net/netip"
	"testing"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
)

func TestWindows(t *testing.T) {
	var o detect.WindowOptions
	o.Retain[detect.ByIP] = 60
	w := detect.NewWindows(o)
	k := detect.GroupKey{Grouping: detect.ByIP, Source: "api", IP: netip.MustParseAddr("203.0.113.7")}
	entry := func(minute int64, id string, out ingest.Outcome) detect.Entry {
		return detect.Entry{Minute: minute, First: minute * 60, Last: minute * 60, IP: k.IP, Identity: id, Outcome: out, Count: 1}
	}
	// Steady traffic collapses to one entry a minute and never marks dirty.
	for i := 0; i < 5; i++ {
		w.Add(k, entry(100, "c1", ingest.Success))
	}
	g := w.Get(k)
	if len(g.Entries) != 1 || g.Entries[0].Count != 5 {
		t.Fatalf("entries = %+v, want one with count 5", g.Entries)
	}
	if d := w.TakeDirty(); len(d) != 0 {
		t.Errorf("successes marked %d groups dirty", len(d))
	}
	w.Add(k, entry(101, "c2", ingest.Failure))
	w.Add(k, entry(130, "c3", ingest.Failure))
	if d := w.TakeDirty(); len(d) != 1 || g.Attempts != 2 {
		t.Errorf("dirty %d, attempts %d; want 1 and 2", len(d), g.Attempts)
	}
	w.Prune(func(string) int64 { return 161 }, nil) // keeps minutes >= 101
	if len(g.Entries) != 2 || g.Attempts != 2 {
		t.Errorf("after prune to 101: %d entries, %d attempts; want 2 and 2", len(g.Entries), g.Attempts)
	}
	w.Prune(func(string) int64 { return 185 }, nil) // keeps minutes >= 125
	if len(g.Entries) != 1 || g.Attempts != 1 {
		t.Errorf("after prune to 125: %d entries, %d attempts; want 1 and 1", len(g.Entries), g.Attempts)
	}
	w.Prune(func(string) int64 { return 500 }, nil)
	if w.Get(k) != nil {
		t.Error("an empty group was kept")
	}
	if got := w.NetOf(netip.MustParseAddr("203.0.113.7")); got.String() != "203.0.113.0/24" {
		t.Errorf("NetOf = %s", got)
	}
}
