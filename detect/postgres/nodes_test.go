package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/detect/postgres"
	"github.com/spraywatch/spraywatch/detect/postgres/pgtest"
	"github.com/spraywatch/spraywatch/ingest"
)

// RetireNode takes a node out of the judge's view and keeps what it
// wrote; a running node (its lock held), an unknown name and a second
// retire are refused, and the name can write again afterwards.
func TestRetireNode(t *testing.T) {
	ctx := context.Background()
	url, pw := pgtest.Database(t)
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	flush := func(s *postgres.Store) {
		t.Helper()
		a := detect.NewAttempts()
		a.Add(event(t0, "203.0.113.7", "c1", "sk_live_dead", ingest.Failure, 1))
		clk := []postgres.Clock{{Source: "api", Event: t0, Wall: time.Now()}}
		if err := s.FlushAgent(ctx, detect.Batch{Attempts: a}, clk, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	w1, w2 := open(t, url, pw, "web-1"), open(t, url, pw, "web-2")
	flush(w1)
	flush(w2)
	judge := open(t, url, pw, "")
	names := func() []string {
		ns, err := judge.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, n := range ns {
			out = append(out, n.Name)
		}
		return out
	}
	lock, err := w1.LockNode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := judge.RetireNode(ctx, "web-1"); !errors.Is(err, postgres.ErrNodeInUse) {
		t.Errorf("retire a running node: err %v, want ErrNodeInUse", err)
	}
	lock.Release()
	if err := judge.RetireNode(ctx, "web-1"); err != nil {
		t.Fatalf("retire web-1: %v", err)
	}
	if got := names(); len(got) != 1 || got[0] != "web-2" {
		t.Errorf("nodes after retiring web-1: %v, want [web-2]", got)
	}
	for _, name := range []string{"web-1", "web-9"} {
		if err := judge.RetireNode(ctx, name); !errors.Is(err, postgres.ErrUnknownNode) {
			t.Errorf("retire %s: err %v, want ErrUnknownNode", name, err)
		}
	}
	rows := 0
	if _, err := judge.ReadAttempts(ctx, "web-1", 0, 100, func(postgres.Row) error { rows++; return nil }); err != nil || rows != 1 {
		t.Errorf("web-1's attempt rows after retiring: %d (%v), want its 1 row kept", rows, err)
	}
	flush(w1)
	if got := names(); len(got) != 2 {
		t.Errorf("nodes after web-1 wrote again: %v, want both", got)
	}
}
