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
