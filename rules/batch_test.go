package rules_test

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/rules"
)

// A daemon takes batches while lines keep coming, and a batch that failed
// to be written goes back into the engine (Requeue) while a written one
// gives its emptied aggregate back (Recycle). Whatever the order, the rows
// written add up to the events observed, each key once per write.
func TestTakeBatchRequeueRecycle(t *testing.T) {
	for seed := uint64(1); seed <= 50; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
		var observed, written int64
		var inFlight *detect.Batch
		finish := func() {
			if inFlight == nil {
				return
			}
			if rng.IntN(3) == 0 { // the write failed
				e.Requeue(*inFlight)
			} else {
				inFlight.Attempts.Each(func(_ detect.AttemptKey, c detect.AttemptCount) { written += c.Count })
				inFlight.Attempts.Clear()
				e.Recycle(inFlight.Attempts)
			}
			inFlight = nil
		}
		at := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
		for i := 0; i < 400; i++ {
			for n := rng.IntN(40); n > 0; n-- {
				at = at.Add(time.Duration(rng.IntN(5)) * time.Second)
				ev := ingest.Event{Time: at, Source: "api", IP: netip.AddrFrom4([4]byte{10, 0, byte(rng.IntN(4)), byte(rng.IntN(50))}),
					Identity: string(rune('a' + rng.IntN(20))), Credential: "sk_live_" + string(rune('a'+rng.IntN(5))),
					Outcome: ingest.Failure, Status: 401, Pos: ingest.Pos{File: "access.log", Offset: int64(i)}}
				if rng.IntN(4) == 0 {
					ev.Outcome, ev.Status = ingest.Success, 200
				}
				e.Observe(&ev)
				observed++
			}
			switch rng.IntN(3) {
			case 0:
				finish()
			case 1:
				if inFlight == nil {
					b, _ := e.TakeBatch(detect.Batch{})
					inFlight = &b
				}
			}
		}
		finish()
		b, _ := e.TakeBatch(detect.Batch{})
		b.Attempts.Each(func(_ detect.AttemptKey, c detect.AttemptCount) { written += c.Count })
		if written != observed {
			t.Fatalf("seed %d: %d events written, want %d observed", seed, written, observed)
		}
		if e.Pending() != 0 {
			t.Fatalf("seed %d: %d rows still pending after the last batch", seed, e.Pending())
		}
	}
}
