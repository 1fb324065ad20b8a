package main

import (
	"os"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"sync/atomic"
)

// memoryGovernor keeps Go's soft memory limit above the live heap. A fixed
// limit that the live heap outgrows (a flood of addresses, a replay of a
// busy week) makes the collector run back to back for no gain; the limit
// here is the larger of floor and a fraction (headroom) again what the
// last collection found live, so the heap is still bounded by what is in
// use while the collector always has room to work.
type memoryGovernor struct {
	floor    int64
	headroom float64
	stopped  atomic.Bool
	limit    atomic.Int64
	sample   []rtmetrics.Sample
}

// liveHeadroom is how far above the live heap the daemon's limit sits, as
// a fraction. replayHeadroom is a replay's: a replay's live heap is mostly
// pointer-free (window records, symbols' bytes), so that the collections a
// smaller headroom adds cost little, while SQLite and the binary come on
// top of the limit.
const (
	liveHeadroom   = 0.5
	replayHeadroom = 0.4
)

// limitFor returns the soft limit for a live heap.
func limitFor(floor, live int64, headroom float64) int64 {
	return max(floor, live+int64(float64(live)*headroom))
}

// governMemory is governMemoryWith(floor, liveHeadroom).
func governMemory(floor int64) *memoryGovernor { return governMemoryWith(floor, liveHeadroom) }

// governMemoryWith sets the soft limit to floor and then, after every
// collection, to limitFor(floor, live, headroom). It does nothing when
// GOMEMLIMIT is set (the operator decided) or floor is not positive. Stop
// it when done.
func governMemoryWith(floor int64, headroom float64) *memoryGovernor {
	g := &memoryGovernor{floor: floor, headroom: headroom, sample: []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	if floor <= 0 || os.Getenv("GOMEMLIMIT") != "" {
		g.stopped.Store(true)
		return g
	}
	g.set(floor)
	g.arm()
	return g
}

func (g *memoryGovernor) set(limit int64) {
	g.limit.Store(limit)
	debug.SetMemoryLimit(limit)
}

// arm registers a cleanup that runs after the next collection.
func (g *memoryGovernor) arm() {
	runtime.AddCleanup(new([16]byte), func(g *memoryGovernor) { g.afterGC() }, g)
}

func (g *memoryGovernor) afterGC() {
	if g.stopped.Load() {
		return
	}
	rtmetrics.Read(g.sample)
	if g.sample[0].Value.Kind() == rtmetrics.KindUint64 {
		want := limitFor(g.floor, int64(g.sample[0].Value.Uint64()), g.headroom)
		// Move only on a real change: each call makes the runtime
		// recompute its pacing.
		if cur := g.limit.Load(); want > cur+cur/16 || want < cur-cur/8 {
			g.set(want)
		}
	}
	g.arm()
}

// Limit is the soft limit in force.
func (g *memoryGovernor) Limit() int64 { return g.limit.Load() }

// Stop stops adjusting the limit.
func (g *memoryGovernor) Stop() { g.stopped.Store(true) }
