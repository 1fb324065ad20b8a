package detect_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
)

// randomText returns a string an attacker could put in a log line's
// identity or key: empty, plain, with quotes, backslashes, NUL and other
// control bytes, invalid UTF-8, or long (past JSONB's 1- and 2-byte
// sizes).
func randomText(r *rand.Rand) string {
	switch r.IntN(8) {
	case 0:
		return ""
	case 1:
		if r.IntN(50) == 0 {
			return strings.Repeat("y", 65_536+r.IntN(9)) // past 2-byte sizes
		}
		return strings.Repeat("x", 250+r.IntN(300))
	case 2:
		b := make([]byte, r.IntN(40))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return string(b)
	case 3:
		return fmt.Sprintf("a\"b\\c\x00d'%d\n\t\xff", r.IntN(5))
	}
	return fmt.Sprint("client-", r.IntN(30))
}

func randomAddr(r *rand.Rand) netip.Addr {
	switch r.IntN(5) {
	case 0:
		return netip.MustParseAddr("2001:db8::" + fmt.Sprint(r.IntN(3)))
	case 1:
		return netip.MustParseAddr("fe80::1%eth" + fmt.Sprint(r.IntN(2)))
	case 2:
		return netip.MustParseAddr("::ffff:10.0.0." + fmt.Sprint(r.IntN(3))) // not the same address as 10.0.0.x
	case 3:
		return netip.MustParseAddr("2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff")
	}
	return netip.AddrFrom4([4]byte{10, 0, 0, byte(r.IntN(3))})
}

// storedRow is an attempts row as SQL sees it, with the types of its
// values.
type storedRow struct {
	source, ip, identity, credential, outcome, file string
	minute, count, inode, offset                    int64
	last                                            sql.NullInt64
	types                                           string
}

// TestFlushStoresEveryByte writes rows whose identities, keys and
// addresses are every kind of text an attacker may send (seeded; a
// failure prints the seed), per-minute and routine, before and after
// 1970, spread over hours or crowded into a minute, and reads the table back with plain SQL: every value must be
// stored exactly, with the types the forensic queries compare (text for
// the strings, integers for the numbers, NULL for a routine row's
// last_minute when it spans one minute).
func TestFlushStoresEveryByte(t *testing.T) {
	ctx := context.Background()
	for seed := uint64(1); seed <= 12; seed++ {
		r := rand.New(rand.NewPCG(seed, 11))
		path := filepath.Join(t.TempDir(), "s.db")
		s := openStore(t, path, detect.StoreOptions{DeferIndexes: seed%2 == 0, Scratch: seed%2 == 0})
		t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
		if seed%3 == 0 {
			t0 = time.Date(1969, 12, 31, 23, 30, 0, 0, time.UTC)
		}
		var want []storedRow
		for batch := 0; batch < 2; batch++ {
			a := detect.NewAttempts()
			type rk struct {
				k       detect.AttemptKey
				routine bool
				hour    int64
			}
			rows := map[rk]*storedRow{}
			var order []rk
			span, lines, outcomes := 7200, 20+r.IntN(1500), 6 // seconds, lines, outcomes
			if seed%4 == 1 {
				// Runs of rows in one minute, which share it in their INSERT.
				span, lines, outcomes = 90, 3000, 2
			}
			for i := 0; i < lines; i++ {
				ev := &ingest.Event{Time: t0.Add(time.Duration(r.IntN(span)) * time.Second), Source: []string{"api", "web\x00x"}[r.IntN(2)],
					IP: randomAddr(r), Identity: randomText(r), Credential: randomText(r), Outcome: ingest.Outcome(r.IntN(outcomes)),
					Pos: ingest.Pos{File: []string{"/a.log", "/b \"x\".log"}[r.IntN(2)], Inode: []uint64{7, 1<<62 + 5}[r.IntN(2)], Offset: r.Int64N(1 << 62)}}
				m := ev.Time.Unix() / 60
				k := rk{k: detect.AttemptKey{Source: ev.Source, Minute: m, IP: ev.IP, Identity: ev.Identity, Credential: ev.Credential, Outcome: ev.Outcome}}
				if routine := r.IntN(3) == 0; routine {
					a.AddRoutine(ev)
					k.routine, k.hour = true, floorDiv(m, detect.RoutineMinutes)
					k.k.Minute, k.k.Outcome = 0, ingest.Success
				} else {
					a.Add(ev)
				}
				w := rows[k]
				if w == nil {
					w = &storedRow{source: ev.Source, ip: ev.IP.String(), identity: ev.Identity, credential: ev.Credential,
						outcome: k.k.Outcome.String(), file: ev.Pos.File, minute: m, inode: int64(ev.Pos.Inode), offset: ev.Pos.Offset,
						last: sql.NullInt64{Int64: m}, types: "text text text text text integer integer integer integer"}
					rows[k] = w
					order = append(order, k)
				}
				w.count++
				if k.routine {
					last := max(m, w.last.Int64)
					w.minute = min(w.minute, m)
					w.last = sql.NullInt64{Int64: last, Valid: last != w.minute}
				}
			}
			for _, k := range order {
				w := *rows[k]
				if !w.last.Valid {
					w.last.Int64 = 0 // it kept the largest minute
				}
				if w.last.Valid {
					w.types += " integer"
				} else {
					w.types += " null"
				}
				want = append(want, w)
			}
			if err := s.Flush(ctx, detect.Batch{Attempts: a}); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
		}
		q, err := s.DB().QueryContext(ctx, `SELECT source, ip, identity, credential, outcome, file, minute, count, inode, offset, last_minute,
			typeof(source)||' '||typeof(ip)||' '||typeof(identity)||' '||typeof(credential)||' '||typeof(outcome)||' '||typeof(minute)||' '||
			typeof(count)||' '||typeof(inode)||' '||typeof(offset)||' '||typeof(last_minute) FROM attempts`)
		if err != nil {
			t.Fatal(err)
		}
		var got []storedRow
		for q.Next() {
			var g storedRow
			if err := q.Scan(&g.source, &g.ip, &g.identity, &g.credential, &g.outcome, &g.file, &g.minute, &g.count, &g.inode, &g.offset, &g.last, &g.types); err != nil {
				t.Fatal(err)
			}
			got = append(got, g)
		}
		if err := q.Err(); err != nil {
			t.Fatal(err)
		}
		q.Close()
		text := func(rows []storedRow) []string {
			out := make([]string, len(rows))
			for i, r := range rows {
				out[i] = fmt.Sprintf("%#v", r)
			}
			slices.Sort(out)
			return out
		}
		gotText, wantText := text(got), text(want)
		if len(gotText) != len(wantText) {
			t.Fatalf("seed %d: %d rows stored, want %d", seed, len(gotText), len(wantText))
		}
		for i := range wantText {
			if gotText[i] != wantText[i] {
				t.Fatalf("seed %d: row %d stored as\n%.400q\nwant\n%.400q", seed, i, gotText[i], wantText[i])
			}
		}
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// TestAttemptsModel drives an aggregate through random Add, AddRoutine,
// Take, Absorb and Clear (seeded; a failure prints the seed), with keys
// that differ in one field only (an address's zone, an IPv4 address and
// its IPv6 form, the outcome, the minute), enough of them to grow the
// table several times, and compares what Each gives and Len says with a
// plain map of the same counts after every step.
func TestAttemptsModel(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	for seed := uint64(1); seed <= 12; seed++ {
		r := rand.New(rand.NewPCG(seed, 13))
		type count struct {
			n   int64
			pos ingest.Pos
		}
		a, model := detect.NewAttempts(), map[detect.AttemptKey]count{}
		var old *detect.Attempts // a batch whose write failed, while a holds what came since
		check := func(step int) {
			t.Helper()
			got := map[detect.AttemptKey]count{}
			for _, x := range []*detect.Attempts{old, a} {
				if x == nil {
					continue
				}
				seen := map[detect.AttemptKey]bool{}
				x.Each(func(k detect.AttemptKey, c detect.AttemptCount) {
					if seen[k] {
						t.Fatalf("seed %d step %d: Each gave %+v twice", seed, step, k)
					}
					seen[k] = true
					g, ok := got[k]
					if !ok {
						g.pos = c.Pos // the older batch's first line
					}
					g.n += c.Count
					got[k] = g
				})
				if x.Len() != len(seen) {
					t.Fatalf("seed %d step %d: Len %d, Each gave %d rows", seed, step, x.Len(), len(seen))
				}
			}
			if len(got) != len(model) {
				t.Fatalf("seed %d step %d: Each gave %d keys, want %d", seed, step, len(got), len(model))
			}
			for k, w := range model {
				if got[k] != w {
					t.Fatalf("seed %d step %d: %+v = %+v, want %+v", seed, step, k, got[k], w)
				}
			}
		}
		keys := 50 + r.IntN(5000)
		for step := 0; step < 40; step++ {
			switch op := r.IntN(10); {
			case op < 6: // a run of lines
				for range r.IntN(2000) {
					i := r.IntN(keys)
					ip := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0})
					switch i % 4 {
					case 1:
						ip = netip.AddrFrom16(ip.As16()) // the same bytes as IPv6
					case 2:
						ip = netip.MustParseAddr("fe80::1").WithZone(fmt.Sprint("eth", i%3))
					}
					ev := &ingest.Event{Time: t0.Add(time.Duration(i%7) * time.Minute), Source: "api", IP: ip,
						Identity: fmt.Sprint("c", i%13), Credential: fmt.Sprint("k", i%5), Outcome: ingest.Outcome(i % 3),
						Pos: ingest.Pos{File: "/a.log", Offset: r.Int64N(1 << 40)}}
					a.Add(ev)
					k := detect.AttemptKey{Source: ev.Source, Minute: ev.Time.Unix() / 60, IP: ev.IP, Identity: ev.Identity, Credential: ev.Credential, Outcome: ev.Outcome}
					c, ok := model[k]
					if !ok {
						c.pos = ev.Pos
					}
					c.n++
					model[k] = c
				}
			case old != nil: // the failed batch goes back, with what came since
				old.Absorb(a)
				a, old = old, nil
			case op < 8: // a store takes some rows back
				var ks []detect.AttemptKey
				for k := range model {
					ks = append(ks, k)
				}
				slices.SortFunc(ks, func(x, y detect.AttemptKey) int { return strings.Compare(fmt.Sprint(x), fmt.Sprint(y)) })
				for _, k := range ks {
					if r.IntN(3) == 0 {
						continue
					}
					n := 1 + r.Int64N(model[k].n+1)
					a.Take(k, n)
					c := model[k]
					if c.n -= n; c.n <= 0 {
						delete(model, k)
					} else {
						model[k] = c
					}
				}
			case op < 9: // a write fails; lines go on into a new aggregate
				old, a = a, detect.NewAttempts()
			default: // written
				a.Clear()
				clear(model)
			}
			check(step)
		}
	}
}

// TestDeferredAttemptsAsImmediate drives an aggregate that aggregates as
// lines come and one made by NewDeferredAttempts through the same random
// lines, Absorb (of a deferred batch read or not yet read), Take, Clear
// and writes to SQLite (seeded; a failure prints the seed), and checks that
// they give the same rows in the same order, and write the same table.
// Lines come at any minute and hour, before 1970 too, and only some steps
// read the aggregates, so lines pile up unaggregated across steps.
func TestDeferredAttemptsAsImmediate(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4, 5, 6, 7, 8, uint64(time.Now().UnixNano())}
	for _, seed := range seeds {
		r := rand.New(rand.NewPCG(seed, 17))
		dir := t.TempDir()
		stores := [2]*detect.Store{}
		for i := range stores {
			stores[i] = openStore(t, filepath.Join(dir, fmt.Sprint(i, ".db")), detect.StoreOptions{Scratch: true, DeferIndexes: true})
		}
		aggs := [2]*detect.Attempts{detect.NewAttempts(), detect.NewDeferredAttempts()}
		var olds [2]*detect.Attempts // a batch written later, with what came since absorbed
		fresh := [2]func() *detect.Attempts{detect.NewAttempts, detect.NewDeferredAttempts}
		rows := func(a *detect.Attempts) []string {
			var out []string
			a.Each(func(k detect.AttemptKey, c detect.AttemptCount) { out = append(out, fmt.Sprintf("%+v %+v", k, c)) })
			slices.Sort(out) // a row Take emptied and a later line revived may come in another place
			return append(out, fmt.Sprint("len ", a.Len()))
		}
		keys := 20 + r.IntN(3000)
		base := time.Date(1969, 12, 31, 22, 0, 0, 0, time.UTC).Unix() + r.Int64N(1<<20)
		for step := range 60 {
			what := fmt.Sprintf("seed %d step %d", seed, step)
			switch op := r.IntN(12); {
			case op < 6:
				for range r.IntN(1500) {
					i := r.IntN(keys)
					ev := &ingest.Event{Time: time.Unix(base+r.Int64N(4*3600), 0), Source: []string{"api", "web"}[i%2], IP: randomAddr(r),
						Identity: fmt.Sprint("c", i%17), Credential: fmt.Sprint("k", i%5), Outcome: ingest.Outcome(r.IntN(3)),
						Pos: ingest.Pos{File: fmt.Sprint("/", i%3, ".log"), Inode: uint64(i % 2), Offset: r.Int64N(1 << 40)}}
					routine := r.IntN(2) == 0
					for _, a := range aggs {
						if routine {
							ev.Outcome = ingest.Success
							a.AddRoutine(ev)
						} else {
							a.Add(ev)
						}
					}
				}
			case op < 7 && olds[0] == nil: // a batch is held back; lines go on into a new one
				for i := range aggs {
					olds[i], aggs[i] = aggs[i], fresh[i]()
				}
			case op < 8 && olds[0] != nil: // the held batch takes in what came since
				for i := range aggs {
					olds[i].Absorb(aggs[i])
					aggs[i].Clear()
					aggs[i], olds[i] = olds[i], nil
				}
			case op < 9: // a store takes some rows back
				var ks []detect.AttemptKey
				aggs[0].Each(func(k detect.AttemptKey, c detect.AttemptCount) {
					if r.IntN(3) == 0 {
						ks = append(ks, k)
					}
				})
				for _, k := range ks {
					n := 1 + r.Int64N(3)
					for _, a := range aggs {
						a.Take(k, n)
					}
				}
			case op < 11: // written
				for i, a := range aggs {
					if err := stores[i].Flush(context.Background(), detect.Batch{Attempts: a}); err != nil {
						t.Fatalf("%s: %v", what, err)
					}
				}
			default:
				for _, a := range aggs {
					a.Clear()
				}
			}
			if r.IntN(3) == 0 || step == 59 {
				for i, x := range [][2]*detect.Attempts{aggs, olds} {
					if x[0] == nil {
						continue
					}
					if x[1].MaxLen() < x[1].Len() {
						t.Fatalf("%s: MaxLen %d below Len %d", what, x[1].MaxLen(), x[1].Len())
					}
					if got, want := rows(x[1]), rows(x[0]); !slices.Equal(got, want) {
						j := 0
						for j < min(len(got), len(want)) && got[j] == want[j] {
							j++
						}
						t.Fatalf("%s (aggregate %d): deferred rows differ from row %d of %d: %q, want %q", what, i, j, len(want), got[min(j, len(got)-1)], want[min(j, len(want)-1)])
					}
				}
			}
		}
		var tables [2][]string
		for i, s := range stores {
			db := s.DB()
			q, err := db.Query(`SELECT source, minute, ip, identity, credential, outcome, count, file, inode, offset, last_minute FROM attempts ORDER BY rowid`)
			if err != nil {
				t.Fatal(err)
			}
			for q.Next() {
				var v [11]any
				p := make([]any, len(v))
				for j := range v {
					p[j] = &v[j]
				}
				if err := q.Scan(p...); err != nil {
					t.Fatal(err)
				}
				tables[i] = append(tables[i], fmt.Sprint(v))
			}
			q.Close()
		}
		slices.Sort(tables[0])
		slices.Sort(tables[1])
		if len(tables[0]) == 0 || !slices.Equal(tables[0], tables[1]) {
			t.Fatalf("seed %d: deferred aggregates wrote %d rows, unlike the %d of immediate ones", seed, len(tables[1]), len(tables[0]))
		}
	}
}
