package rules_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/rules"
)

// Line findings raised by each of three nodes' engines on their own lines
// become one incident per kind and source (and route) on a judge: raised
// once, later reports only add lines and evidence naming their node, and a
// judge restored from the store merges into the restored incident instead
// of raising another.
func TestLineFindingsMergeAcrossNodes(t *testing.T) {
	start := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	nodes := []string{"web-1", "web-2", "web-3"}
	// Each node's engine sees whole keys in two of its lines.
	var reports []struct {
		node string
		inc  detect.Incident
	}
	for k, node := range nodes {
		e := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
		for i := range 2 {
			e.Observe(&ingest.Event{Time: start.Add(time.Duration(k*10+i) * time.Second), Source: "api", IP: netip.AddrFrom4([4]byte{198, 18, byte(k), byte(i + 1)}),
				Identity: fmt.Sprintf("client-%d", i), Credential: "sk_liv…00112233", Outcome: ingest.Success, Status: 200, RawCredential: true,
				Pos: ingest.Pos{File: "access.log", Offset: int64(i * 100)}})
		}
		e.Finish()
		b, _ := e.TakeBatch(detect.Batch{})
		for _, inc := range append(b.Incidents, b.Quiet...) {
			if rules.LineFinding(inc.Kind) {
				reports = append(reports, struct {
					node string
					inc  detect.Incident
				}{node, *inc})
			}
		}
	}
	if len(reports) != 3 {
		t.Fatalf("%d raw-credential findings from 3 nodes, want 3", len(reports))
	}
	judge := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
	store := openStore(t)
	raised := 0
	for i, r := range reports {
		judge.ObserveFinding(r.node, &r.inc, r.inc.Attempts)
		b, snaps := judge.TakeBatch(detect.Batch{})
		if err := store.Flush(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		raised += len(snaps)
		for _, s := range append(b.Incidents, b.Quiet...) {
			if s.Updated.Before(s.LastSeen) || s.LastSeen.Before(s.FirstSeen) {
				t.Errorf("report %d: #%d updated %s, first seen %s, last seen %s; want updated never before its lines", i, s.ID, s.Updated, s.FirstSeen, s.LastSeen)
			}
		}
		if i > 0 && (len(snaps) != 0 || len(b.Quiet) != 1) {
			t.Errorf("report %d: %d incidents to alert and %d stored quietly, want 0 and 1", i, len(snaps), len(b.Quiet))
		}
	}
	if raised != 1 {
		t.Errorf("%d incidents raised for one finding over 3 nodes, want 1", raised)
	}
	incs, err := store.Incidents(context.Background(), detect.IncidentFilter{})
	if err != nil || len(incs) != 1 {
		t.Fatalf("stored incidents %d %v, want 1", len(incs), err)
	}
	inc := incs[0]
	seen := map[string]bool{}
	for _, p := range inc.Evidence {
		seen[p.Node] = true
	}
	if inc.Kind != detect.KindRawCredentials || inc.Attempts != 6 || len(seen) != 3 {
		t.Errorf("fleet finding: %s, %d lines, evidence from %v; want raw_credentials_in_logs, 6 lines, 3 nodes", inc.Kind, inc.Attempts, seen)
	}
	// A judge that takes over restores it (from judged rows: one here) and
	// merges the next report in.
	rows := rules.NewEngine(rules.Options{Config: rules.DefaultConfig(), FirstID: 100})
	rows.Observe(&ingest.Event{Time: start.Add(time.Minute), Source: "api", IP: netip.MustParseAddr("198.18.9.9"), Identity: "client-9",
		Credential: "sk_liv…99", Outcome: ingest.Success, Status: 200})
	if _, err := rows.Flush(context.Background(), store, detect.Batch{}); err != nil {
		t.Fatal(err)
	}
	next := rules.NewEngine(rules.Options{Config: rules.DefaultConfig()})
	if err := next.Restore(context.Background(), store); err != nil {
		t.Fatal(err)
	}
	again := reports[0].inc
	next.ObserveFinding("web-1", &again, 1)
	b, snaps := next.TakeBatch(detect.Batch{})
	if len(snaps) != 0 || len(b.Quiet) != 1 || b.Quiet[0].ID != inc.ID || b.Quiet[0].Attempts != 7 {
		t.Errorf("after restore: %d raised, quiet %+v; want the restored #%d updated to 7 lines", len(snaps), b.Quiet, inc.ID)
	}
}
