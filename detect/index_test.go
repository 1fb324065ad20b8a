package detect

import (
	"math/rand/v2"
	"testing"
)

// TestGroupIndexModel checks the group index against a map on random
// inserts and removes, with hashes that are random, that share their tag
// (the upper half) and that collide wholly, and refs replaced in place (a
// group made compact or full again): after every step each tracked ref is
// found by its hash, and no removed or replaced one is.
func TestGroupIndexModel(t *testing.T) {
	hashes := map[string]func(r *rand.Rand) uint64{
		"random":     func(r *rand.Rand) uint64 { return r.Uint64() },
		"same tag":   func(r *rand.Rand) uint64 { return 0xdeadbeef<<32 | uint64(r.Uint32()) },
		"few hashes": func(r *rand.Rand) uint64 { return uint64(r.IntN(5)) << 61 },
		"near tags":  func(r *rand.Rand) uint64 { return uint64(r.IntN(3000)) << 32 },
	}
	for name, hash := range hashes {
		for seed := uint64(1); seed <= 20; seed++ {
			r := rand.New(rand.NewPCG(seed, 11))
			var ix groupIndex
			model := map[uint32]uint64{} // ref: hash
			var refs []uint32
			next := uint32(1)
			for step := 0; step < 3000; step++ {
				switch op := r.IntN(10); {
				case len(refs) > 0 && op < 4:
					k := r.IntN(len(refs))
					ref := refs[k]
					refs[k] = refs[len(refs)-1]
					refs = refs[:len(refs)-1]
					ix.remove(model[ref], ref)
					delete(model, ref)
				case len(refs) > 0 && op < 5:
					// A group made compact or full again keeps its word.
					k := r.IntN(len(refs))
					ref, to := refs[k], next|compactRef*uint32(r.IntN(2))
					next++
					ix.replace(model[ref], ref, to)
					refs[k], model[to] = to, model[ref]
					delete(model, ref)
				default:
					ref := next | compactRef*uint32(r.IntN(2))
					next++
					h := hash(r)
					ix.insert(h, ref)
					model[ref] = h
					refs = append(refs, ref)
				}
				if step%97 != 0 && step < 2990 {
					continue
				}
				if ix.n != len(model) {
					t.Fatalf("%s seed %d step %d: n = %d, want %d", name, seed, step, ix.n, len(model))
				}
				for ref, h := range model {
					if !ix.has(h, ref) {
						t.Fatalf("%s seed %d step %d: ref %x (hash %x) not found", name, seed, step, ref, h)
					}
				}
				for _, s := range ix.slots {
					if h, ok := model[uint32(s)]; s != 0 && (!ok || h>>32 != s>>32) {
						t.Fatalf("%s seed %d step %d: word %x is of no tracked ref", name, seed, step, s)
					}
				}
			}
		}
	}
}

// has reports whether ref is reachable from h's home slot, as a lookup
// probes.
func (ix *groupIndex) has(h uint64, ref uint32) bool {
	if len(ix.slots) == 0 {
		return false
	}
	mask := uint64(len(ix.slots) - 1)
	want := (h>>32)<<32 | uint64(ref)
	for i := (h >> 32) & mask; ix.slots[i] != 0; i = (i + 1) & mask {
		if ix.slots[i] == want {
			return true
		}
	}
	return false
}
