package tail_test

// The daemon's rotation storm (cmd/spraywatch TestRunRotationStormWithKills)
// as a script on the Tailer alone, on real files (so freed inodes are
// reused as the file system reuses them): 30 rounds of lines, logrotate's
// numbered shift, delayed gzip, rename with late lines and copytruncate,
// and ten kills -9, four of them down across a rotation. Where the
// daemon's ticks fall between the script's steps, how much of what it
// read is committed when it is killed, and how long a restarted daemon
// takes to look are chosen by a seed, so a failure is replayed exactly:
//
//	go test -run TestStormScript ./ingest/tail                      # 50 seeds
//	TAIL_STORM_N=5000 TAIL_STORM_BASE=7 go test -run TestStormScript ./ingest/tail
//	TAIL_STORM_SEED=123 go test -run TestStormScript -v ./ingest/tail # one, with its trace

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/ingest/tail"
)

func TestStormScript(t *testing.T) {
	if s := os.Getenv("TAIL_STORM_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if !runStorm(t, seed, true) {
			t.Fatalf("storm seed %d failed", seed)
		}
		return
	}
	n, base := 50, uint64(time.Now().UnixNano())
	if s := os.Getenv("TAIL_STORM_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	if s := os.Getenv("TAIL_STORM_BASE"); s != "" {
		base, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("storm seeds %d..%d", base, base+uint64(n)-1)
	var failed []uint64
	for _, seed := range append(append([]uint64{}, stormRegressions...), seqSeeds(base, n)...) {
		if !runStorm(t, seed, false) {
			failed = append(failed, seed)
			if len(failed) >= 3 {
				break
			}
		}
	}
	if len(failed) > 0 {
		t.Fatalf("storm seeds failed (replay one with TAIL_STORM_SEED=<seed> -v): %v", failed)
	}
}

// stormRegressions are storm seeds that once failed.
var stormRegressions = []uint64{}

func seqSeeds(base uint64, n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = base + uint64(i)
	}
	return out
}

// storm is one run of the script.
type storm struct {
	t       *testing.T
	rng     *rand.Rand
	dir     string
	w       *os.File
	written []string // every line, in order
	spray   int
	tl      *tail.Tailer
	saved   map[string]tail.Position
	pending []stormLine
	counted map[string]int
	since   int // lines committed since the last start
	clock   time.Time
	trace   strings.Builder
	verbose bool
	bad     string
}

type stormLine struct {
	text string // "" for a position only
	pos  []tail.Position
}

var stormBase = time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)

func (s *storm) logf(format string, args ...any) {
	fmt.Fprintf(&s.trace, format+"\n", args...)
}

func (s *storm) path(p string) string { return filepath.Join(s.dir, p) }

// benign and spray are the daemon test's lines (benign ones repeat every
// 3000 lines, their times every 600).
func (s *storm) benign() string {
	i := len(s.written)
	at := stormBase.Add(time.Duration(i%600) * time.Second)
	return fmt.Sprintf(`198.18.%d.%d - - [%s] "GET /api/v1/clients/client-%04d/resource HTTP/1.1" 200 512 "-" "client/1.0" key=sk_live_%04x rt=0.020`,
		i%200, i%250+1, at.Format("02/Jan/2006:15:04:05 -0700"), i%1000, i%1000)
}

func (s *storm) sprayLine() string {
	at := stormBase.Add(time.Duration(s.spray) * 2 * time.Second)
	return fmt.Sprintf(`203.0.113.66 - - [%s] "POST /api/v1/clients/victim-%03d/token HTTP/1.1" 401 32 "-" "spray/1.0" key=sk_live_dead rt=0.004`,
		at.Format("02/Jan/2006:15:04:05 -0700"), s.spray)
}

func (s *storm) put(b *strings.Builder, line string) {
	b.WriteString(line)
	b.WriteByte('\n')
	s.written = append(s.written, line)
}

func (s *storm) writeRound() {
	var b strings.Builder
	for i := 0; i < 300; i++ {
		s.put(&b, s.benign())
	}
	s.writePairs(&b, 5)
}

func (s *storm) writePairs(b *strings.Builder, n int) {
	if b == nil {
		b = &strings.Builder{}
	}
	for i := 0; i < n; i++ {
		s.put(b, s.sprayLine())
		s.spray++
		s.put(b, s.benign())
	}
	if _, err := s.w.WriteString(b.String()); err != nil {
		s.t.Fatal(err)
	}
}

// gap is a moment between two steps of the script: time passes, and a
// running daemon may look.
func (s *storm) gap() {
	s.clock = s.clock.Add(time.Duration(5+s.rng.IntN(25)) * time.Millisecond)
	if s.tl != nil && s.rng.IntN(3) > 0 {
		s.tick()
		if s.rng.IntN(2) == 0 {
			s.commit(len(s.pending))
		}
	}
}

func (s *storm) tick() { s.tickUpTo(-1) }

// tickUpTo is a tick killed after n lines (n < 0: not killed).
func (s *storm) tickUpTo(limit int) {
	n := 0
	err := s.tl.Tick(context.Background(), s.clock, func(l *tail.Line) error {
		if limit >= 0 && n >= limit {
			return errKilled
		}
		n++
		p := stormLine{pos: []tail.Position{l.Pos}}
		if l.Extra != nil {
			p.pos = append(p.pos, *l.Extra)
		}
		if !l.PositionOnly {
			p.text = string(l.Text)
		}
		if s.verbose {
			s.logf("  emit %.20q@%d file=%s pos=%s@%d(%d %.30s) extra=%v", p.text, l.Offset, filepath.Base(l.File),
				filepath.Base(l.Pos.Key), l.Pos.Offset, l.Pos.Inode, l.Pos.Head, l.Extra)
		}
		s.pending = append(s.pending, p)
		return nil
	})
	if limit >= 0 && err != nil {
		s.logf("tick: killed after %d lines", n)
		return
	}
	if err != nil {
		s.fail("tick: %v", err)
	}
	s.logf("tick: %d lines", n)
}

func (s *storm) commit(n int) {
	for _, p := range s.pending[:n] {
		for _, pos := range p.pos {
			s.saved[pos.Key] = pos
		}
		if p.text != "" {
			s.counted[p.text]++
			s.since++
		}
	}
	s.pending = s.pending[n:]
	s.logf("commit %d (%d pending)", n, len(s.pending))
}

func (s *storm) start() {
	var pos []tail.Position
	for _, p := range s.saved {
		pos = append(pos, p)
	}
	sort.Slice(pos, func(i, j int) bool { return pos[i].Key < pos[j].Key })
	var log *slog.Logger
	if s.verbose {
		log = slog.New(slog.NewTextHandler(stormWriter{s}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s.since = 0
	s.tl = tail.New(tail.Options{Patterns: []string{s.path("access.log")}, Positions: pos, RotateWait: 2 * time.Second, Logger: log})
	s.logf("start with %v", pos)
}

type stormWriter struct{ s *storm }

func (w stormWriter) Write(p []byte) (int, error) {
	w.s.trace.Write(p)
	return len(p), nil
}

// kill -9, once lines were committed since the start (as the daemon test
// waits for: a first start leaves rotated files to replay, by design): a
// tick may be under way, and some prefix of what was read is committed.
func (s *storm) kill() {
	for i := 0; s.since == 0 && i < 50; i++ {
		s.clock = s.clock.Add(10 * time.Millisecond)
		s.tick()
		s.commit(len(s.pending))
	}
	switch s.rng.IntN(3) {
	case 0:
		s.tick()
	case 1:
		s.tickUpTo(s.rng.IntN(400))
	}
	s.commit(s.rng.IntN(len(s.pending) + 1))
	s.tl.Close()
	s.tl, s.pending = nil, nil
	s.logf("kill -9")
}

func (s *storm) fail(format string, args ...any) {
	if s.bad == "" {
		s.bad = fmt.Sprintf(format, args...)
	}
}

func (s *storm) shift() {
	for n := 20; n >= 1; n-- {
		a := os.Rename(s.path(fmt.Sprintf("access.log.%d", n)), s.path(fmt.Sprintf("access.log.%d", n+1)))
		b := os.Rename(s.path(fmt.Sprintf("access.log.%d.gz", n)), s.path(fmt.Sprintf("access.log.%d.gz", n+1)))
		if (a == nil || b == nil) && s.rng.IntN(8) == 0 {
			s.gap() // a look in the middle of the shift
		}
	}
}

func (s *storm) compress(p string) {
	raw, err := os.ReadFile(s.path(p))
	if err != nil {
		return
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	if err := os.WriteFile(s.path(p+".gz"), gz.Bytes(), 0o644); err != nil {
		s.t.Fatal(err)
	}
	os.Remove(s.path(p))
}

func (s *storm) openWriter() {
	f, err := os.OpenFile(s.path("access.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	s.w = f
}

func runStorm(t *testing.T, seed uint64, verbose bool) bool {
	s := &storm{t: t, rng: rand.New(rand.NewPCG(seed, 0x5707)), dir: t.TempDir(), saved: map[string]tail.Position{},
		counted: map[string]int{}, clock: time.Unix(1_800_000_000, 0), verbose: verbose}
	s.openWriter()
	defer func() { s.w.Close() }()
	s.start()
	s.tick() // the first start reads from the beginning; "running" is after its first look
	kills, down := 0, false
	for round := 0; round < 30 && s.bad == ""; round++ {
		s.writeRound()
		s.gap()
		if round%6 == 1 || round%6 == 4 {
			s.kill()
			kills++
			s.logf("round %d: kill -9", round)
			if kills <= 4 {
				down = true
			} else {
				s.start()
			}
		}
		s.gap()
		switch round % 6 {
		case 2:
			s.logf("round %d: rename", round)
			s.shift()
			s.gap()
			s.compress("access.log.2")
			s.gap()
			must(t, os.Rename(s.path("access.log"), s.path("access.log.1")))
			s.gap()
			s.writePairs(nil, 2)
			s.gap()
			s.w.Close()
			s.openWriter()
		case 5:
			s.logf("round %d: copytruncate", round)
			s.shift()
			s.gap()
			raw, err := os.ReadFile(s.path("access.log"))
			must(t, err)
			must(t, os.WriteFile(s.path("access.log.1"), raw, 0o644))
			s.gap()
			must(t, os.Truncate(s.path("access.log"), 0))
		}
		if down && (round%6 == 2 || round%6 == 5) {
			s.start()
			down = false
		}
		s.gap()
	}
	if down {
		s.start()
	}
	for i := 0; i < 20 && s.bad == ""; i++ {
		s.clock = s.clock.Add(300 * time.Millisecond)
		s.tick()
		s.commit(len(s.pending))
	}
	if s.tl != nil {
		s.tl.Close()
	}
	// Lines by index (benign texts repeat): the first written of a text
	// are taken as the counted ones.
	left := map[string]int{}
	for l, n := range s.counted {
		left[l] = n
	}
	var lost, twice int
	var ranges []string
	for i, l := range s.written {
		if left[l] > 0 {
			left[l]--
			continue
		}
		lost++
		if n := len(ranges); n > 0 && strings.HasSuffix(ranges[n-1], "-"+strconv.Itoa(i-1)) {
			ranges[n-1] = ranges[n-1][:strings.LastIndexByte(ranges[n-1], '-')+1] + strconv.Itoa(i)
		} else {
			ranges = append(ranges, strconv.Itoa(i)+"-"+strconv.Itoa(i))
		}
	}
	for _, n := range left {
		twice += n
	}
	example := "lines " + strings.Join(ranges, ",")
	if s.bad == "" && (lost > 0 || twice > 0) {
		s.fail("%d lines written: %d lost, %d counted too often (%s)", len(s.written), lost, twice, example)
	}
	if s.bad != "" {
		t.Logf("storm seed %d: %s", seed, s.bad)
		if verbose {
			t.Log(s.trace.String())
		}
		return false
	}
	if verbose {
		t.Log(s.trace.String())
	}
	return true
}
