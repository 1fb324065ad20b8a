package detect

import (
	"math/rand/v2"
	"testing"
)

// TestGroupIndexModel checks the group index against a map on random
// inserts and removes, with hashes that are random, that share their tag
// (the upper half) and that collide wholly: after every step each tracked
// id is found by its hash, and no removed one is.
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
			model := map[int32]uint64{}
			var ids []int32
			next := int32(0)
			for step := 0; step < 3000; step++ {
				if len(ids) > 0 && r.IntN(5) < 2 {
					k := r.IntN(len(ids))
					id := ids[k]
					ids[k] = ids[len(ids)-1]
					ids = ids[:len(ids)-1]
					ix.remove(model[id], id)
					delete(model, id)
				} else {
					id := next
					next++
					h := hash(r)
					ix.insert(h, id)
					model[id] = h
					ids = append(ids, id)
				}
				if step%97 != 0 && step < 2990 {
					continue
				}
				if ix.n != len(model) {
					t.Fatalf("%s seed %d step %d: n = %d, want %d", name, seed, step, ix.n, len(model))
				}
				found := map[int32]bool{}
				for id, h := range model {
					if !ix.has(h, id) {
						t.Fatalf("%s seed %d step %d: id %d (hash %x) not found", name, seed, step, id, h)
					}
					found[id] = true
				}
				for _, s := range ix.slots {
					if id := int32(uint32(s)) - 1; s != 0 && !found[id] {
						t.Fatalf("%s seed %d step %d: removed id %d still indexed", name, seed, step, id)
					}
				}
			}
		}
	}
}

// has reports whether id is reachable from h's home slot, as a lookup
// probes.
func (ix *groupIndex) has(h uint64, id int32) bool {
	if len(ix.slots) == 0 {
		return false
	}
	mask := uint64(len(ix.slots) - 1)
	want := (h>>32)<<32 | uint64(uint32(id+1))
	for i := (h >> 32) & mask; ix.slots[i] != 0; i = (i + 1) & mask {
		if ix.slots[i] == want {
			return true
		}
	}
	return false
}
