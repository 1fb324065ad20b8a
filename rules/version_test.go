package rules_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/rules"
)

// failingFlusher fails its first n writes, then keeps the versions written.
type failingFlusher struct {
	n        int
	versions []int
}

func (f *failingFlusher) Flush(_ context.Context, b detect.Batch) error {
	if f.n > 0 {
		f.n--
		return errors.New("database is locked")
	}
	for _, inc := range b.Incidents {
		f.versions = append(f.versions, inc.Version)
	}
	if b.Attempts != nil {
		b.Attempts.Clear()
	}
	return nil
}

// A write that fails (a locked or full database) does not raise the
// incident's version: the versions written, and so the alerts sinks get,
// are 1, 2, 3 with no gaps, however many retries an outage took.
func TestFailedWritesRaiseNoVersion(t *testing.T) {
	e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
	t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	f := &failingFlusher{}
	step := 0
	spray := func(n int) {
		for range n {
			ev := ingest.Event{Time: t0.Add(time.Duration(step) * 10 * time.Second), Source: "api", IP: netip.MustParseAddr("203.0.113.66"),
				Identity: fmt.Sprintf("victim-%03d", step), Credential: "sk_live_dead", Outcome: ingest.Failure, Status: 401}
			e.Observe(&ev)
			step++
		}
	}
	for round, fails := range []int{0, 7, 0, 3} {
		spray(12)
		f.n = fails
		for try := range fails + 1 {
			if _, err := e.Flush(context.Background(), f, detect.Batch{}); (err == nil) != (try == fails) {
				t.Fatalf("round %d, write %d: %v", round, try, err)
			}
		}
	}
	if got := fmt.Sprint(f.versions); got != "[1 2 3 4]" {
		t.Errorf("versions written %s, want [1 2 3 4]", got)
	}
}
