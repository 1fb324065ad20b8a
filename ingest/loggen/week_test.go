package loggen_test

import (
	"bytes"
	"crypto/sha256"
	"net/netip"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/ingest"
	"github.com/spraywatch/spraywatch/ingest/loggen"
)

// A week is the same for a seed, another for another seed, parses in every
// format, and its attacks' addresses are their own.
func TestWeek(t *testing.T) {
	write := func(seed uint64, format string) ([]byte, loggen.Truth) {
		var b bytes.Buffer
		truth, err := loggen.WriteWeek(&b, loggen.WeekOptions{Seed: seed, Lines: 20_000, Clients: 500, Format: format, Duration: 2 * 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return b.Bytes(), truth
	}
	a, truth := write(1, loggen.WeekNginx)
	if b, _ := write(1, loggen.WeekNginx); sha256.Sum256(a) != sha256.Sum256(b) {
		t.Error("seed 1 wrote two different weeks")
	}
	if b, _ := write(2, loggen.WeekNginx); bytes.Equal(a, b) {
		t.Error("seeds 1 and 2 wrote the same week")
	}
	owner := map[netip.Addr]int{}
	for i, at := range truth.Attacks {
		for _, ip := range at.IPs {
			if j, ok := owner[ip]; ok {
				t.Errorf("attacks %d and %d share %v", j, i, ip)
			}
			owner[ip] = i
		}
	}
	for _, f := range loggen.WeekFormats {
		data, _ := write(3, f)
		o := loggen.WeekOptions{Format: f}
		p, err := ingest.NewParser(o.Source("week"))
		if err != nil {
			t.Fatal(err)
		}
		var ev ingest.Event
		for i, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
			if err := p.Parse(line, &ev); err != nil {
				t.Fatalf("%s line %d: %v: %s", f, i+1, err, line)
			}
		}
	}
	if _, err := loggen.WriteWeek(&bytes.Buffer{}, loggen.WeekOptions{Format: "xml"}); err == nil {
		t.Error("an unknown format was written")
	}
}
