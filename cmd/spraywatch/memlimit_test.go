package main

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestLimitFor(t *testing.T) {
	for _, c := range []struct {
		floor, live int64
		headroom    float64
		want        int64
	}{
		{128 << 20, 0, 0.5, 128 << 20},
		{128 << 20, 64 << 20, 0.5, 128 << 20},
		{128 << 20, 100 << 20, 0.5, 150 << 20},
		{128 << 20, 400 << 20, 0.5, 600 << 20},
		{128 << 20, 100 << 20, 0.4, 140 << 20},
		{128 << 20, 80 << 20, 0.4, 128 << 20},
	} {
		if got := limitFor(c.floor, c.live, c.headroom); got != c.want {
			t.Errorf("limitFor(%d, %d, %g) = %d, want %d", c.floor, c.live, c.headroom, got, c.want)
		}
	}
}

// TestGovernMemoryFollowsLiveHeap keeps 48 MiB live above a 4 MiB floor:
// after collections the limit must sit above the live heap, and fall back
// towards the floor once the memory is released.
func TestGovernMemoryFollowsLiveHeap(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	defer debug.SetMemoryLimit(math.MaxInt64)
	g := governMemory(4 << 20)
	defer g.Stop()
	if got := g.Limit(); got != 4<<20 {
		t.Fatalf("initial limit %d, want the floor", got)
	}
	live := make([][]byte, 48)
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	waitFor := func(ok func(int64) bool) int64 {
		for i := 0; i < 200 && !ok(g.Limit()); i++ {
			runtime.GC()
			time.Sleep(time.Millisecond) // let the cleanup goroutine run
		}
		return g.Limit()
	}
	if got := waitFor(func(l int64) bool { return l > 48<<20 }); got <= 48<<20 {
		t.Fatalf("limit %d MiB with 48 MiB live, want above it", got>>20)
	}
	runtime.KeepAlive(live)
	live = nil
	if got := waitFor(func(l int64) bool { return l < 24<<20 }); got >= 24<<20 {
		t.Fatalf("limit %d MiB after release, want it back near the floor", got>>20)
	}
}

func TestGovernMemoryLeavesGOMEMLIMIT(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "1GiB")
	defer debug.SetMemoryLimit(math.MaxInt64)
	before := debug.SetMemoryLimit(-1)
	g := governMemory(4 << 20)
	defer g.Stop()
	if after := debug.SetMemoryLimit(-1); after != before {
		t.Errorf("limit changed from %d to %d although GOMEMLIMIT is set", before, after)
	}
}
