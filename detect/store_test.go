package detect_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
)

func openStore(t *testing.T, path string, o detect.StoreOptions) *detect.Store {
	t.Helper()
	s, err := detect.Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func event(at time.Time, ip, id, cred string, o ingest.Outcome, off int64) *ingest.Event {
	return &ingest.Event{Time: at, Source: "api", IP: netip.MustParseAddr(ip), Identity: id, Credential: cred, Outcome: o,
		Pos: ingest.Pos{File: "/var/log/api.log", Inode: 42, Offset: off}}
}

// TestFlushAndLoad writes attempts, an incident with its identities and a
// position in one flush, reopens the file, and reads them back.
func TestFlushAndLoad(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	s := openStore(t, path, detect.StoreOptions{})
	t0 := time.Date(2026, 11, 28, 10, 0, 5, 0, time.UTC)
	a := detect.NewAttempts()
	a.Add(event(t0, "203.0.113.7", "c1", "sk_live_dead", ingest.Failure, 100))
	a.Add(event(t0.Add(10*time.Second), "203.0.113.7", "c1", "sk_live_dead", ingest.Failure, 200))
	a.Add(event(t0.Add(70*time.Second), "203.0.113.7", "c2", "sk_live_dead", ingest.Failure, 300))
	inc := &detect.Incident{ID: 7, Kind: detect.KindSpray, Severity: detect.SeverityHigh, Source: "api", Group: "ip=203.0.113.7",
		State: detect.StateOpen, FirstSeen: t0, LastSeen: t0.Add(70 * time.Second), Attempts: 3, Identities: 2}
	if err := s.Flush(ctx, detect.Batch{Attempts: a, Incidents: []*detect.Incident{inc},
		Identities: map[int64][]string{7: {"c1", "c2"}},
		Positions:  []detect.Position{{Source: "api", Path: "/var/log/api.log", Dev: 1, Inode: 42, Head: "abc", Offset: 301}}}); err != nil {
		t.Fatal(err)
	}
	if a.Len() != 0 {
		t.Errorf("a flushed batch keeps %d pending rows", a.Len())
	}
	s.Close()

	r := openStore(t, path, detect.StoreOptions{ReadOnly: true})
	type row struct {
		minute   int64
		identity string
		count    int64
		offset   int64
	}
	var got []row
	if err := r.LoadAttempts(ctx, 0, func(k detect.AttemptKey, c detect.AttemptCount) error {
		got = append(got, row{k.Minute, k.Identity, c.Count, c.Pos.Offset})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []row{{t0.Unix() / 60, "c1", 2, 100}, {t0.Unix()/60 + 1, "c2", 1, 300}}
	if len(got) != len(want) {
		t.Fatalf("loaded %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("row %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	back, err := r.Incident(ctx, 7)
	if err != nil || back.Kind != detect.KindSpray || back.Attempts != 3 {
		t.Errorf("incident = %+v, %v", back, err)
	}
	if _, err := r.Incident(ctx, 8); !errors.Is(err, detect.ErrNotFound) {
		t.Errorf("missing incident: err = %v, want ErrNotFound", err)
	}
	ids, err := r.IncidentIdentities(ctx, 7)
	if err != nil || len(ids) != 2 {
		t.Errorf("identities = %v, %v", ids, err)
	}
	pos, err := r.Positions(ctx)
	if err != nil || len(pos) != 1 || pos[0].Offset != 301 || pos[0].Inode != 42 {
		t.Errorf("positions = %+v, %v", pos, err)
	}
}

// TestDeltaRowsSum: rows are deltas, so two flushes of the same key sum.
func TestDeltaRowsSum(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "s.db"), detect.StoreOptions{})
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	for i := 0; i < 2; i++ {
		a := detect.NewAttempts()
		a.Add(event(t0, "203.0.113.7", "c1", "k", ingest.Failure, int64(i)))
		if err := s.Flush(ctx, detect.Batch{Attempts: a}); err != nil {
			t.Fatal(err)
		}
	}
	var total int64
	s.LoadAttempts(ctx, 0, func(_ detect.AttemptKey, c detect.AttemptCount) error { total += c.Count; return nil })
	if total != 2 {
		t.Errorf("total = %d, want 2", total)
	}
}

// TestSecondWriterFailsFast: a database held by another writer is a clear
// error at once, not a hang.
func TestSecondWriterFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	openStore(t, path, detect.StoreOptions{})
	_, err := detect.Open(path, detect.StoreOptions{})
	if !errors.Is(err, detect.ErrInUse) {
		t.Fatalf("second writer: err = %v, want ErrInUse", err)
	}
	if _, err := detect.Open(path, detect.StoreOptions{ReadOnly: true}); err != nil {
		t.Errorf("a reader must still open a held database: %v", err)
	}
}

func TestReplayedFiles(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "s.db"), detect.StoreOptions{DeferIndexes: true})
	f := detect.ReplayedFile{Dev: 1, Inode: 2, Size: 3, Head: "h", Path: "/logs/a.log", Source: "api"}
	if err := s.Flush(ctx, detect.Batch{Replayed: []detect.ReplayedFile{f}}); err != nil {
		t.Fatal(err)
	}
	if p, ok, err := s.WasReplayed(ctx, 3, "h"); err != nil || !ok || p != "/logs/a.log" {
		t.Errorf("WasReplayed = %q %v %v", p, ok, err)
	}
	if _, ok, _ := s.WasReplayed(ctx, 4, "h"); ok {
		t.Error("a file that grew since is not the replayed one")
	}
	if _, ok, _ := s.WasReplayed(ctx, 3, "other"); ok {
		t.Error("a file with other content is not the replayed one")
	}
	if err := s.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestAttemptsAbsorbKeepsFirstPosition(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	old, newer := detect.NewAttempts(), detect.NewAttempts()
	old.Add(event(t0, "203.0.113.7", "c1", "k", ingest.Failure, 10))
	newer.Add(event(t0, "203.0.113.7", "c1", "k", ingest.Failure, 20))
	newer.Add(event(t0, "203.0.113.7", "c2", "k", ingest.Failure, 30))
	old.Absorb(newer)
	if old.Len() != 2 {
		t.Fatalf("Len = %d, want 2", old.Len())
	}
	s := openStore(t, filepath.Join(t.TempDir(), "s.db"), detect.StoreOptions{})
	if err := s.Flush(context.Background(), detect.Batch{Attempts: old}); err != nil {
		t.Fatal(err)
	}
	s.LoadAttempts(context.Background(), 0, func(k detect.AttemptKey, c detect.AttemptCount) error {
		if k.Identity == "c1" && (c.Count != 2 || c.Pos.Offset != 10) {
			t.Errorf("c1: count %d offset %d, want 2 and 10", c.Count, c.Pos.Offset)
		}
		return nil
	})
}

func TestDeleteAttemptsBefore(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "s.db"), detect.StoreOptions{})
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	a := detect.NewAttempts()
	for d := 0; d < 40; d++ { // one row a day for 40 days
		a.Add(event(t0.AddDate(0, 0, d), "203.0.113.7", "c1", "k", ingest.Failure, int64(d)))
	}
	if err := s.Flush(ctx, detect.Batch{Attempts: a}); err != nil {
		t.Fatal(err)
	}
	n, err := s.DeleteAttemptsBefore(ctx, t0.AddDate(0, 0, 10))
	if err != nil || n != 10 {
		t.Fatalf("deleted %d rows (err %v), want the 10 older than day 10", n, err)
	}
	var left int
	s.LoadAttempts(ctx, 0, func(detect.AttemptKey, detect.AttemptCount) error { left++; return nil })
	if left != 30 {
		t.Errorf("%d rows left, want 30", left)
	}
}

// TestFlushRandomRows writes random attempts from several sources, files
// and inodes (rows of one INSERT share those) in a few flushes and reads
// them back: every key's total and first line must survive.
func TestFlushRandomRows(t *testing.T) {
	ctx := context.Background()
	for seed := uint64(1); seed <= 20; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		s := openStore(t, filepath.Join(t.TempDir(), "s.db"), detect.StoreOptions{DeferIndexes: seed%2 == 0, Scratch: seed%2 == 0})
		t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
		type want struct {
			count int64
			pos   ingest.Pos
		}
		model := map[detect.AttemptKey]*want{}
		for batch := 0; batch < 3; batch++ {
			a := detect.NewAttempts()
			for i := 0; i < 50+r.IntN(300); i++ {
				ev := &ingest.Event{Time: t0.Add(time.Duration(r.IntN(600)) * time.Second), Source: []string{"api", "web"}[r.IntN(2)],
					IP: netip.AddrFrom4([4]byte{10, 0, 0, byte(r.IntN(20))}), Identity: fmt.Sprint("c", r.IntN(15)),
					Credential: fmt.Sprint("k'\"", r.IntN(4)), Outcome: ingest.Outcome(r.IntN(4)),
					Pos: ingest.Pos{File: []string{"/a.log", "/b.log", "/a.log.1"}[r.IntN(3)], Inode: uint64(r.IntN(2)), Offset: r.Int64N(1 << 40)}}
				a.Add(ev)
				k := detect.AttemptKey{Source: ev.Source, Minute: ev.Time.Unix() / 60, IP: ev.IP, Identity: ev.Identity, Credential: ev.Credential, Outcome: ev.Outcome}
				if w := model[k]; w != nil {
					w.count++
				} else {
					model[k] = &want{1, ev.Pos}
				}
			}
			if err := s.Flush(ctx, detect.Batch{Attempts: a}); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
		}
		got := 0
		err := s.LoadAttempts(ctx, 0, func(k detect.AttemptKey, c detect.AttemptCount) error {
			got++
			w := model[k]
			if w == nil || w.count != c.Count || w.pos != c.Pos {
				t.Errorf("seed %d: %+v = %+v, want %+v", seed, k, c, w)
			}
			return nil
		})
		if err != nil || got != len(model) {
			t.Fatalf("seed %d: %d keys read back (err %v), want %d", seed, got, err, len(model))
		}
	}
}

// A write SQLite refuses as read-only comes back as ErrReadOnly, which the
// daemon's health names ("read-only"), and leaves nothing half written.
func TestFlushReadOnlyIsErrReadOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	s := openStore(t, path, detect.StoreOptions{})
	s.Close()
	ro, err := detect.Open(path, detect.StoreOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	a := detect.NewAttempts()
	a.Add(&ingest.Event{Time: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC), Source: "api", IP: netip.MustParseAddr("10.0.0.1"),
		Identity: "c1", Credential: "k1", Outcome: ingest.Failure, Pos: ingest.Pos{File: "/a.log", Offset: 10}})
	err = ro.Flush(ctx, detect.Batch{Attempts: a})
	if !errors.Is(err, detect.ErrReadOnly) {
		t.Fatalf("flush into a read-only database: %v, want ErrReadOnly", err)
	}
	if a.Len() != 1 {
		t.Errorf("a refused flush cleared its rows (%d left), they would be lost", a.Len())
	}
}
