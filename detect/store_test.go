package detect_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"slices"
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
	old.AddRoutine(event(t0.Add(5*time.Minute), "203.0.113.7", "c3", "k3", ingest.Success, 40))
	newer.AddRoutine(event(t0.Add(time.Minute), "203.0.113.7", "c3", "k3", ingest.Success, 50))
	newer.AddRoutine(event(t0.Add(30*time.Minute), "203.0.113.7", "c3", "k3", ingest.Success, 60))
	old.Absorb(newer)
	if old.Len() != 3 {
		t.Fatalf("Len = %d, want 3", old.Len())
	}
	var routine []string
	old.Each(func(k detect.AttemptKey, c detect.AttemptCount) {
		if k.Identity == "c3" {
			routine = append(routine, fmt.Sprintf("+%d %d@%d", k.Minute-t0.Unix()/60, c.Count, c.Pos.Offset))
		}
	})
	slices.Sort(routine)
	if got, want := fmt.Sprint(routine), "[+1 1@40 +30 2@40]"; got != want {
		t.Errorf("routine row absorbed: %s, want %s (first and last minute of both, the older one's line)", got, want)
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

// routineEvent is one event of TestRoutineRowsModel: routine successes go
// through AddRoutine, the rest through Add.
type routineEvent struct {
	ev      ingest.Event
	routine bool
}

// routineModel is what the store must keep of the batches flushed: the
// per-minute rows of what went through Add, and every hour's routine
// successes of a key in a batch as a span from its first to its last
// minute (a span within one minute is a per-minute row).
type routineModel struct {
	minutes map[detect.AttemptKey]int64
	spans   map[routineSpan]int64
}

type routineSpan struct {
	k    detect.AttemptKey // Minute: the first
	last int64
}

func (m *routineModel) add(batch []routineEvent) {
	type hourKey struct {
		k    detect.AttemptKey // Minute: 0
		hour int64
	}
	hours := map[hourKey]*routineSpan{}
	counts := map[hourKey]int64{}
	for _, re := range batch {
		ev := &re.ev
		minute := ev.Time.Unix() / 60
		k := detect.AttemptKey{Source: ev.Source, Minute: minute, IP: ev.IP, Identity: ev.Identity, Credential: ev.Credential, Outcome: ev.Outcome}
		if !re.routine {
			m.minutes[k]++
			continue
		}
		hk := hourKey{k, minute / detect.RoutineMinutes}
		hk.k.Minute = 0
		counts[hk]++
		if sp := hours[hk]; sp != nil {
			sp.k.Minute, sp.last = min(sp.k.Minute, minute), max(sp.last, minute)
		} else {
			hours[hk] = &routineSpan{k, minute}
		}
	}
	for hk, sp := range hours {
		if sp.last == sp.k.Minute {
			m.minutes[sp.k] += counts[hk]
		} else {
			m.spans[*sp] += counts[hk]
		}
	}
}

// from returns the rows since a minute, per key and minute: a span's first
// minute with count 1 and its last with the rest, or, when it begins
// before since, its whole count at its last minute.
func (m *routineModel) from(since int64) map[detect.AttemptKey]int64 {
	out := map[detect.AttemptKey]int64{}
	for k, n := range m.minutes {
		if k.Minute >= since {
			out[k] += n
		}
	}
	for sp, n := range m.spans {
		k := sp.k
		switch {
		case k.Minute >= since:
			out[k]++
			k.Minute = sp.last
			out[k] += n - 1
		case sp.last >= since:
			k.Minute = sp.last
			out[k] += n
		}
	}
	return out
}

// TestRoutineRowsModel feeds random per-minute and routine events in a few
// batches to the SQLite store and to a model, and reads them back with
// LoadAttempts from random minutes: the rows must be the model's, summed
// per key and minute, in minute order. Each must give what a batch holds
// the same way, and Take of every row it gave must leave nothing; the
// table's and the views' totals must be the events'.
func TestRoutineRowsModel(t *testing.T) {
	ctx := context.Background()
	seeds := []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, uint64(time.Now().UnixNano())}
	t.Logf("seeds 1-12 and %d", seeds[len(seeds)-1])
	for _, seed := range seeds {
		r := rand.New(rand.NewPCG(seed, 11))
		s := openStore(t, filepath.Join(t.TempDir(), "s.db"), detect.StoreOptions{})
		t0 := time.Date(2026, 11, 28, 9, 37, 0, 0, time.UTC)
		model := routineModel{map[detect.AttemptKey]int64{}, map[routineSpan]int64{}}
		events, successes := 0, 0
		for batch := 0; batch < 1+r.IntN(4); batch++ {
			var evs []routineEvent
			for i := 0; i < 20+r.IntN(400); i++ {
				re := routineEvent{ev: ingest.Event{Time: t0.Add(time.Duration(r.IntN(4*3600)) * time.Second), Source: []string{"api", "web"}[r.IntN(2)],
					IP: netip.AddrFrom4([4]byte{10, 0, 0, byte(r.IntN(4))}), Identity: []string{"", "c1", "c2", "c'3"}[r.IntN(4)],
					Credential: []string{"", "k1", "k\"2"}[r.IntN(3)], Outcome: ingest.Outcome(r.IntN(5)),
					Pos: ingest.Pos{File: []string{"/a.log", "/b.log"}[r.IntN(2)], Inode: uint64(r.IntN(2)), Offset: r.Int64N(1 << 40)}},
					routine: r.IntN(3) > 0}
				if re.routine {
					re.ev.Outcome = ingest.Success
				}
				if re.ev.Outcome == ingest.Success {
					successes++
				}
				evs = append(evs, re)
			}
			events += len(evs)
			a, b := detect.NewAttempts(), detect.NewAttempts()
			for i := range evs {
				for _, x := range []*detect.Attempts{a, b} {
					if evs[i].routine {
						x.AddRoutine(&evs[i].ev)
					} else {
						x.Add(&evs[i].ev)
					}
				}
			}
			one := routineModel{map[detect.AttemptKey]int64{}, map[routineSpan]int64{}}
			one.add(evs)
			got := map[detect.AttemptKey]int64{}
			b.Each(func(k detect.AttemptKey, c detect.AttemptCount) { got[k] += c.Count })
			if want := one.from(0); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("seed %d batch %d: Each gave\n%v\nwant\n%v", seed, batch, got, want)
			}
			type row struct {
				k detect.AttemptKey
				n int64
			}
			var rows []row // as a store keeps a flush in doubt, to take out of the batch requeued
			b.Each(func(k detect.AttemptKey, c detect.AttemptCount) { rows = append(rows, row{k, c.Count}) })
			for _, r := range rows {
				b.Take(r.k, r.n)
			}
			if b.Len() != 0 {
				t.Errorf("seed %d batch %d: %d rows left after taking every row Each gave", seed, batch, b.Len())
			}
			model.add(evs)
			if err := s.Flush(ctx, detect.Batch{Attempts: a}); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
		}
		for _, since := range []int64{0, t0.Unix()/60 + r.Int64N(4*60), t0.Unix()/60 + 4*60 + 1} {
			got := map[detect.AttemptKey]int64{}
			last := int64(-1)
			err := s.LoadAttempts(ctx, since, func(k detect.AttemptKey, c detect.AttemptCount) error {
				if k.Minute < last {
					t.Errorf("seed %d since %d: minute %d after %d", seed, since, k.Minute, last)
				}
				last = k.Minute
				got[k] += c.Count
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if want := model.from(since); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("seed %d since %d: loaded\n%v\nwant\n%v", seed, since, got, want)
			}
		}
		var total, views int64
		if err := s.DB().QueryRow(`SELECT SUM(count) FROM attempts`).Scan(&total); err != nil || total != int64(events) {
			t.Errorf("seed %d: SUM(count) = %d (%v), want %d events", seed, total, err, events)
		}
		if err := s.DB().QueryRow(`SELECT SUM(successes) FROM window_by_ip`).Scan(&views); err != nil || views != int64(successes) {
			t.Errorf("seed %d: window_by_ip successes = %d (%v), want %d", seed, views, err, successes)
		}
	}
}

// TestOldDatabaseOpens: a database of an earlier version, whose attempts
// have no last_minute, opens read-only as it is and reads back, and opened
// for writing gains the column, keeps its rows per minute and takes
// routine rows beside them.
func TestOldDatabaseOpens(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(`PRAGMA journal_mode=WAL; CREATE TABLE attempts (source TEXT NOT NULL, minute INTEGER NOT NULL, ip TEXT NOT NULL, identity TEXT NOT NULL,
		credential TEXT NOT NULL, outcome TEXT NOT NULL, count INTEGER NOT NULL, file TEXT NOT NULL, inode INTEGER NOT NULL, offset INTEGER NOT NULL);
		INSERT INTO attempts VALUES ('api', 29000000, '10.0.0.1', 'c1', 'k1', 'success', 3, '/a.log', 1, 10),
		                            ('api', 29000002, '10.0.0.1', 'c1', 'k1', 'failure', 1, '/a.log', 1, 20)`)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	load := func(s *detect.Store) string {
		t.Helper()
		var out []string
		if err := s.LoadAttempts(ctx, 0, func(k detect.AttemptKey, c detect.AttemptCount) error {
			out = append(out, fmt.Sprintf("%d %s %d", k.Minute, k.Outcome, c.Count))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		m, ok, err := s.LastAttemptMinute(ctx)
		if err != nil || !ok {
			t.Fatalf("LastAttemptMinute: %d %v %v", m, ok, err)
		}
		return fmt.Sprintf("%v last %d", out, m)
	}
	ro := openStore(t, path, detect.StoreOptions{ReadOnly: true})
	if got, want := load(ro), "[29000000 success 3 29000002 failure 1] last 29000002"; got != want {
		t.Errorf("read-only: %s, want %s", got, want)
	}
	if m, err := ro.SourceMinutes(ctx); err != nil || len(m) != 0 {
		t.Errorf("read-only SourceMinutes = %v, %v; want none recorded, no error", m, err)
	}
	ro.Close()
	s := openStore(t, path, detect.StoreOptions{})
	a := detect.NewAttempts()
	t0 := time.Unix(29000010*60, 0)
	a.AddRoutine(event(t0, "10.0.0.1", "c1", "k1", ingest.Success, 30))
	a.AddRoutine(event(t0.Add(20*time.Minute), "10.0.0.1", "c1", "k1", ingest.Success, 40))
	if err := s.Flush(ctx, detect.Batch{Attempts: a}); err != nil {
		t.Fatal(err)
	}
	if got, want := load(s), "[29000000 success 3 29000002 failure 1 29000010 success 1 29000030 success 1] last 29000030"; got != want {
		t.Errorf("upgraded: %s, want %s", got, want)
	}
	if n, err := s.DeleteAttemptsBefore(ctx, time.Unix(29000020*60, 0)); err != nil || n != 2 {
		t.Errorf("retention deleted %d rows (%v), want the 2 old ones and not the routine row that reaches past the cut", n, err)
	}
	// The source's clock is the routine row's last minute; an older
	// batch does not move it back.
	a.AddRoutine(event(t0.Add(-5*time.Minute), "10.0.0.2", "c2", "k2", ingest.Success, 50))
	if err := s.Flush(ctx, detect.Batch{Attempts: a}); err != nil {
		t.Fatal(err)
	}
	if m, err := s.SourceMinutes(ctx); err != nil || fmt.Sprint(m) != "map[api:29000030]" {
		t.Errorf("SourceMinutes = %v, %v; want map[api:29000030]", m, err)
	}
}
