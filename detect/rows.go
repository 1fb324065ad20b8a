package detect

// Each calls fn with every pending row, in no particular order, for stores
// outside this package.
func (a *Attempts) Each(fn func(AttemptKey, AttemptCount)) {
	for k, c := range a.m {
		fn(k, *c)
	}
}

// Clear drops the pending rows, once a store has written them. The map
// keeps its room, for a caller that reuses the aggregate.
func (a *Attempts) Clear() {
	clear(a.m)
	a.slab = nil
}

// Take removes n from row k's count (a store found those written after
// all), dropping the row when nothing is left of it.
func (a *Attempts) Take(k AttemptKey, n int64) {
	c := a.m[k]
	if c == nil {
		return
	}
	if c.Count -= n; c.Count <= 0 {
		delete(a.m, k)
	}
}
