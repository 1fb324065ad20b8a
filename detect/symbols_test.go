package detect

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestSymbolsModel takes and frees symbols at random against a map of
// what each symbol must read, with strings of every size (long ones take a
// chunk of their own), shared and cloned strings, and bursts of frees that
// make the table compact its chunks. After every step it checks every live
// symbol's string and count, that strings handed out earlier never change
// (a chunk's bytes are never written twice), and that the chunks hold at
// most what the compaction rule allows.
func TestSymbolsModel(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	defer func(n int) { compactSlack = n }(compactSlack)
	compactions := 0
	for round := range 30 {
		compactions += symbolsRound(t, seed+uint64(round))
		if t.Failed() {
			return
		}
	}
	t.Logf("%d compactions", compactions)
	if compactions < 10 {
		t.Errorf("only %d compactions in 30 rounds: the test does not reach compact", compactions)
	}
}

func symbolsRound(t *testing.T, seed uint64) int {
	r := rand.New(rand.NewPCG(seed, 7))
	s := newSymbols(2 + r.IntN(8))
	compactSlack = []int{0, chunkBytes, 8 * chunkBytes}[r.IntN(3)]
	pool := make([]string, 1+r.IntN(400))
	for i := range pool {
		n := 1 + r.IntN(40)
		switch r.IntN(20) {
		case 2, 3, 4, 5:
			n = 100 + r.IntN(1000)
		case 0:
			n = longString - 2 + r.IntN(5)
		case 1:
			n = 5000 + r.IntN(70000)
		}
		pool[i] = fmt.Sprintf("%d:%s", i, strings.Repeat(string(rune('a'+i%26)), n))
	}
	type held struct {
		id  uint32
		str string // the string handed out when it was taken
	}
	var hs []held            // one per reference
	refs := map[uint32]int{} // the model: references per live symbol
	want := map[uint32]string{}
	views := map[string]string{} // strings handed out, by what they must read
	for step := range 3000 {
		switch op := r.IntN(10); {
		case op < 5 || len(hs) == 0:
			str := pool[r.IntN(len(pool))]
			if r.IntN(4) == 0 {
				str = strings.Clone(str)
			}
			id := s.ref(r.IntN(5), str)
			if id == 0 {
				t.Fatalf("seed %d step %d: symbol 0 for %.20q", seed, step, str)
			}
			if w, ok := want[id]; ok && w != str {
				t.Fatalf("seed %d step %d: symbol %d shared by %.20q and %.20q", seed, step, id, w, str)
			}
			want[id] = str
			refs[id]++
			got := s.str(id)
			hs = append(hs, held{id, got})
			if len(views) < 2000 {
				views[got] = strings.Clone(got)
			}
		case op < 9:
			i := r.IntN(len(hs))
			h := hs[i]
			hs[i] = hs[len(hs)-1]
			hs = hs[:len(hs)-1]
			s.unref(h.id)
			if refs[h.id]--; refs[h.id] == 0 {
				delete(refs, h.id)
				delete(want, h.id)
			}
		default: // a burst of frees, like a flood's expiry
			for n := r.IntN(len(hs) + 1); n > 0; n-- {
				i := r.IntN(len(hs))
				h := hs[i]
				hs[i] = hs[len(hs)-1]
				hs = hs[:len(hs)-1]
				s.unref(h.id)
				if refs[h.id]--; refs[h.id] == 0 {
					delete(refs, h.id)
					delete(want, h.id)
				}
			}
		}
		inUse := 0
		for id, w := range want {
			if got := s.str(id); got != w {
				t.Fatalf("seed %d step %d: symbol %d reads %.20q, want %.20q", seed, step, id, got, w)
			}
			if int(s.syms[id].refs) != refs[id] {
				t.Fatalf("seed %d step %d: symbol %d counts %d references, want %d", seed, step, id, s.syms[id].refs, refs[id])
			}
			inUse += len(w)
		}
		if s.inUse != inUse {
			t.Fatalf("seed %d step %d: %d bytes in use, want %d", seed, step, s.inUse, inUse)
		}
		if n := s.Len() - s.files.Len(); n != len(want) {
			t.Fatalf("seed %d step %d: Len %d, want %d", seed, step, n, len(want))
		}
		if limit := 2*inUse + max(compactSlack, inUse/2) + chunkBytes + longString; s.held > limit {
			t.Fatalf("seed %d step %d: chunks hold %d bytes for %d in use (limit %d)", seed, step, s.held, inUse, limit)
		}
		total, live := 0, 0
		for c, b := range s.chunks {
			total += cap(b)
			live += int(s.live[c])
		}
		if total != s.held || live != inUse {
			t.Fatalf("seed %d step %d: chunks hold %d (counted %d), live %d (want %d)", seed, step, total, s.held, live, inUse)
		}
		if step%100 == 0 {
			for got, w := range views {
				if got != w {
					t.Fatalf("seed %d step %d: a string handed out changed from %.20q to %.20q", seed, step, w, got)
				}
			}
		}
	}
	for _, h := range hs {
		s.unref(h.id)
	}
	if s.Len() != 0 || s.inUse != 0 || s.held > chunkBytes {
		t.Fatalf("seed %d: all freed, yet %d symbols, %d bytes in use, chunks hold %d", seed, s.Len(), s.inUse, s.held)
	}
	return s.compacted
}
