package main

import (
	"context"
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

// TestMergedBatchesWriteAsInTurn makes random batches as the engine hands
// them to a replay's writer (deferred attempt lines; incident snapshots,
// changed and quiet, of a few incidents at rising versions; new
// identities), writes them one by one into one database, and merged in
// random runs (mergeBatch, as the writer does) into another, and wants
// the same incidents, identities and attempt counts in both (seeded; a
// failure prints the seed).
func TestMergedBatchesWriteAsInTurn(t *testing.T) {
	ctx := context.Background()
	for _, seed := range []uint64{1, 2, 3, 4, 5, 6, uint64(time.Now().UnixNano())} {
		r := rand.New(rand.NewPCG(seed, 19))
		dir := t.TempDir()
		var stores [2]*detect.Store
		for i := range stores {
			s, err := detect.Open(filepath.Join(dir, fmt.Sprint(i, ".db")), detect.StoreOptions{Scratch: true, DeferIndexes: true})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			stores[i] = s
		}
		t0 := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
		version := map[int64]int{}
		var offset int64 // lines come in file order
		batch := func() detect.Batch {
			b := detect.Batch{Attempts: detect.NewDeferredAttempts(), Identities: map[int64][]string{}}
			for range r.IntN(300) {
				ev := ingest.Event{Time: t0.Add(time.Duration(r.IntN(7200)) * time.Second), Source: "api",
					IP: netip.AddrFrom4([4]byte{10, 0, 0, byte(r.IntN(20))}), Identity: fmt.Sprint("c", r.IntN(30)), Credential: "k",
					Outcome: ingest.Outcome(r.IntN(3)), Pos: ingest.Pos{File: "/a.log", Offset: offset}}
				offset += 1 + r.Int64N(300)
				if r.IntN(3) == 0 {
					ev.Outcome = ingest.Success
					b.Attempts.AddRoutine(&ev)
				} else {
					b.Attempts.Add(&ev)
				}
			}
			for _, id := range r.Perm(6)[:r.IntN(4)] {
				id := int64(id + 1)
				version[id]++
				inc := &detect.Incident{ID: id, Kind: detect.KindSpray, Severity: "high", Source: "api", Group: "ip:10.0.0.1",
					State: detect.StateOpen, Attempts: int64(version[id]), Summary: fmt.Sprint("version ", version[id]),
					IPs: []string{}, Credentials: []string{}, IdentitySample: []string{}, Compromised: []string{}, Evidence: []ingest.Pos{}}
				if r.IntN(3) == 0 {
					b.Quiet = append(b.Quiet, inc)
				} else {
					b.Incidents = append(b.Incidents, inc)
				}
				if r.IntN(2) == 0 {
					b.Identities[id] = append(b.Identities[id], fmt.Sprint("c", r.IntN(30)))
				}
			}
			return b
		}
		var pending *detect.Batch
		for range 40 {
			b := batch()
			one := b
			one.Attempts = detect.NewAttempts()
			one.Attempts.Absorb(b.Attempts) // the same lines, for the other store
			one.Identities = map[int64][]string{}
			for id, idents := range b.Identities {
				one.Identities[id] = slices.Clone(idents)
			}
			if err := stores[0].Flush(ctx, one); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			if pending == nil {
				pending = &detect.Batch{Attempts: detect.NewAttempts()}
			}
			mergeBatch(pending, b)
			if r.IntN(4) == 0 {
				if err := stores[1].Flush(ctx, *pending); err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				pending = nil
			}
		}
		if pending != nil {
			if err := stores[1].Flush(ctx, *pending); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
		}
		var got [2]string
		for i, s := range stores {
			incs, err := s.Incidents(ctx, detect.IncidentFilter{})
			if err != nil {
				t.Fatal(err)
			}
			for _, inc := range incs {
				idents, err := s.IncidentIdentities(ctx, inc.ID)
				if err != nil {
					t.Fatal(err)
				}
				got[i] += fmt.Sprintf("%d %s %d %v\n", inc.ID, inc.Summary, inc.Attempts, idents)
			}
			q, err := s.DB().QueryContext(ctx, `SELECT ip, identity, outcome, sum(count), min(minute), max(coalesce(last_minute, minute)), min(offset)
				FROM attempts GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`)
			if err != nil {
				t.Fatal(err)
			}
			for q.Next() {
				var ip, ident, outcome string
				var n, first, last, off int64
				if err := q.Scan(&ip, &ident, &outcome, &n, &first, &last, &off); err != nil {
					t.Fatal(err)
				}
				got[i] += fmt.Sprintln(ip, ident, outcome, n, first, last, off)
			}
			q.Close()
		}
		if got[0] == "" || got[0] != got[1] {
			t.Fatalf("seed %d: merged batches wrote\n%s\nbatches in turn wrote\n%s", seed, got[1], got[0])
		}
	}
}
