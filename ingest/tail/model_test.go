package tail_test

// A randomized model test of the follower: random sequences of what
// writers, logrotate and the daemon's life do to a followed log, with a
// model of which lines exist where. After each sequence every line written
// must have been counted exactly once, except lines that logrotate itself
// destroyed while no one held them (written between copytruncate's copy
// and its truncate, in a file deleted before it was read): those may be
// counted once or not at all, never twice. copytruncate's copy and gzip's
// output are written in parts while the daemon may look (and, inside a
// copy, be killed or start), as the real tools write them.
//
//	go test -run TestModel ./ingest/tail                        # 300 random sequences
//	TAIL_MODEL_SEED=123 go test -run TestModel -v ./ingest/tail # replay one sequence, with its trace
//	TAIL_MODEL_N=5000 go test -run TestModel ./ingest/tail      # run longer
//	TAIL_MODEL_BASE=42 go test -run TestModel ./ingest/tail     # random sequences from seed 42 on
//	TAIL_MODEL_ALL=1 go test -run TestModel ./ingest/tail       # run on after 5 failing seeds
//	TAIL_MODEL_OFF=kill,delete go test -run TestModel ...       # leave operations out (to find what a failure needs)
//
// Any failing sequence fails the test, with its seed; every seed that
// ever failed is kept in modelRegressions.

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spraywatch/spraywatch/ingest/tail"
)

// modelRegressions are seeds that once failed, each for a cause since
// fixed; they run on every test and must pass.
var modelRegressions = []uint64{
	1003, 1013, 1026, 1027, 1035, 1038, 1054, 1057, 1061, 1065, 1085, 1092, 1106, 1135, 1138,
	1151, 1161, 1170, 1183, 1195, 1203, 1213, 1246, 1247, 1259, 5013, 5016, 5134, 5169,
	5218, 5273, 5322, 5324, 5331, 5384, 5400, 5493, 5561, 5563, 5570, 5607, 5613,
	5643, 5677, 5061, 5349, 5678, 5106, 5233, 5416,
	4417111550595813779, 4417111550595813803, 4417111550595813818, 4417111550595813840,
	4417111550595814072, 1078, 5154, 5192,
	// several rotations, copies and restarts between two looks
	15328381212796892304, 15328381212796892533, 15328381212796892760, 15328381212796892799,
	15328381212796892813, 15328381212796892829, 15328381212796892902, 15328381212796892907,
	15328381212796892955, 15328381212796892982, 15328381212796892991, 15328381212796893147,
	15328381212796893279, 15328381212796893361, 15328381212796893379, 15328381212796893390,
	15328381212796893434, 15328381212796893442, 15328381212796893504, 15328381212796893517,
	15328381212796893577, 15328381212796893581, 15328381212796893675, 15328381212796893694,
	777007, 777020, 777024, 777032, 777133, 777154, 777216, 777263, 777284, 777436, 777559,
	777622, 777723, 777823, 777832, 777971, 778066, 778087, 778100, 778267, 778332, 778341,
	778412, 778467, 778475,
	// symlink targets read before the saved one
	777226, 777241, 777296, 15328381212796893120, 15328381212796893237,
	// a file let go while its writer still appended (another rotated
	// after it, or it was deleted after a copy): rotated files are
	// followed, each under its own key, until quiet
	5254, 5483, 15328381212796892365, 777556, 777568, 31338079, 4242739, 31337024,
	// a file read to its end read again whole at a start: done records
	4242408, 4242910, 31337320, 31337773, 31338498, 31338324,
	// a file found rotated beside the path, drained while still written
	// to: followed instead
	4242426, 4242491, 4243383, 777754, 31337641,
	// a path new since the last save: what rotated beside it since
	4242626,
	// symlink targets: done records, every plain target followed
	4242884, 4243127, 778108, 15328381212796893418,
	// a file saved as unread before newer content is read
	4243087, 777917,
	// one file under two keys; records that must survive a start
	777210, 4242025, 15328381212796893190, 16330046655075736998,
	// a copy of what was read, shorter than the saved fingerprint
	16330046655075739738, 2795945694271478872,
	// a path new under a glob that named a file only between two looks
	17057198072334912071,
	// a done record's key given away while a compressed copy was on disk
	17057198072334912275, 17057198072334914660,
	// a copy of the live file's start seen before its truncate
	2795945694271482026, 651744398241603934,
	// the newest rotated file followed at a start beside an older one
	651744398241600633, 6465923081724034925,
	// a compressed copy of the current file shorter than a fingerprint
	7419256142371906602,
	// nothing read, a head of a few bytes, copytruncated while stopped
	13610107295513895271,
	// a path new under a glob at a restart, after the first look
	13610107295513892897,
	// a copy claimed by one key taken up again by a one-byte head
	8506763149459479723, 17719915690620926030,
	// a start retried while the path is missing took a file up twice
	18004807730605568480,
	// nothing read and a two-byte head: the oldest sibling is no anchor
	9075259135332325003,
	// a compressed copy of a partial line taken for a copy of the file
	17258935385388807652, 17258935385388809405,
	// copies of what was read: at a start that resumes, and only while
	// what was read is still the file's start
	17721842588667268366, 17721842588667265682, 17721842588667266824,
	// a descriptor left open when a rotation was stopped half way
	4979466934527349296,
	// lines read from a copytruncate copy as the saved file's, which is
	// then gone: the copy must be found by what was read of it
	2672312877864982015,
	// a last partial line of three bytes taken for a fingerprint
	5105980396268919730,
	// a copy's done record saved apart from the lines that cover it
	16482314794331358441, 408308845170681076,
	// a path under a glob missing at every look of a run, its files
	// rotated between two looks, then a restart: what rotated beside it
	// since the first look (saved "l="), not since the last save
	9307089234541625918,
	// a path under a glob gone (its follower dropped), then back: the
	// new follower starts from what the old one reported (its "gone"),
	// not from the positions the run started with
	9822259391211306784,
	// copytruncate's copy caught while being written (copies in parts):
	// a few bytes of a line taken for a file rotated between two looks;
	// a copy shorter than what was read once the file is truncated
	// (plain or compressed); a copy's record saved before it was
	// finished; a head of a few bytes of a line taken as proof of a copy;
	// a copy shorter than the head found at a restart ("p=")
	7789836331930656095, 7789836331930656172, 7789836331930656261, 7789836331930656342,
	16633938179617638946, 16633938179617639087, 15474075049794946217, 12470044141640438712,
	1214818181154194953,
	// an empty copy taken up at a start as the rotated file, then
	// written: a copy of the path's start, not late lines; a kill in the
	// middle of a copy
	17237343399494592169, 17237343399494593444,
	// a copy recorded while being written, finished while stopped: at
	// the restart it holds what the path's position says was read
	1239962099250497306,
	// a compressed file caught while gzip still wrote it (its original
	// still there), read whole from what it had
	17225442912629727126, 17225442912629727132, 17225442912629727169, 17225442912629727185,
	17225442912629727186,
	// gzip's output seen empty (taken for a copy being written), then
	// compressed: known by its content, not read whole
	2490771785320101139, 2490771785320101239, 2490771785320101290, 2490771785320101311,
	2490771785320101361,
	// gzip's output with one byte written, taken for a plain file
	7987149453834862202,
	// a copy of the file's start at a first start, then finished and
	// compressed, read again at a restart: a first start records copies
	// as a resume does; a copy recorded (at a start, or as the bound of
	// a restart) while still being written keeps its record up to date
	12864038675281351724, 12864038675281351806, 12864038675281353483, 4952910930973915741,
	3965096234812833048,
	// (the model's own gzip writer descriptor, open across a look, taken
	// for the Tailer's: fixed in the model; kept as sequences that write
	// gzip's output in parts around a stop)
	14649546145951768810, 14649546145951769153, 14649546145951769653, 14649546145951770960,
	3511853091182881110,
	// a copy shorter than a head of a few bytes more than a line, told
	// read by "p="; a copy of the file's new content taken for the file
	// read before it ("a="), so a restart skipped what it held unread
	16519656739973648127, 16519656739973650275,
	// a compressed copy of the saved content, recorded while the copy
	// was still being written: read on from its record; nothing read and
	// a head of a few bytes of a line: not even the same inode (truncated
	// since, its copy beside it) is the saved file
	2134629028553541591, 15667734472605187316, 15667734472605185275,
	// an empty copy followed at a start as the rotated file, written,
	// and the file truncated before the next look: a copy of what was
	// read, not late lines
	10363852688638680228,
	// a rotated file read to its end, then compressed, its done record
	// on the rotated key given to the next file, which was deleted, not
	// rotated beside it: the compressed copy read again at a restart
	8760728629073188985,
	// an empty copy followed at a start as the rotated file and saved so,
	// then filled by copytruncate with lines read through the log, and a
	// kill before the copy's done record was saved: the copy taken up
	// from the log's offset, not from its start
	1605318392511315282,
	// the path missing at a first start, then rotated, compressed and
	// made again between two looks: the start's position of the new file
	// saved before the compressed file was read, then a kill (a restart
	// took the compressed file for history)
	5837395237685723532,
	// copytruncate's copy taken as a line was being written (no newline),
	// the line finished before the truncate and read whole from the log,
	// the copy compressed: its half line counted again from the .gz
	5688663137558756443,
	// a start that found the path missing read a file rotated beside it
	// under a key of its own, then a kill before the path's position was
	// saved: the next start took the path for new and read the file,
	// compressed since, again despite its done record
	3199943557213094828,
	// an older rotated file's record taken up at a start from its
	// compressed copy, whose head was the saved file's too (a copy by
	// copytruncate): read again from 0 as one of the files rotated since
	14679169760706818632, 15238634763756606690,
	// a symlink swapped to access-9, -10 and -11 between two looks: the
	// directory listing put access-10 first, so access-9 was followed for
	// late lines and access-10, which its writer still wrote to, was done
	18249835098625393278,
	// the same, with the older target written after the newer one was
	// made (ordered by mtime, the newer one, where the writer went on,
	// was done)
	1985469585040027094,
	// a path new under a glob (deleted while stopped, made again) whose
	// start saved its position before the next look read a file rotated
	// and compressed beside it since: a kill between the two, and the
	// restart took that file for history
	12905148655358952977,
}

func TestModel(t *testing.T) {
	if s := os.Getenv("TAIL_MODEL_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("TAIL_MODEL_SEED=%q: %v", s, err)
		}
		// Both ways, as a regression seed runs.
		for _, parts := range []bool{false, true} {
			st := &modelStats{why: map[string]int{}}
			runModel(t, seed, st, parts, true, true)
			t.Logf("seed %d (written in parts=%v): %s", seed, parts, st)
		}
		return
	}
	n := 300
	if testing.Short() {
		n = 50
	}
	if s := os.Getenv("TAIL_MODEL_N"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("TAIL_MODEL_N=%q: %v", s, err)
		}
		n = v
	}
	base := rand.Uint64()
	if s := os.Getenv("TAIL_MODEL_BASE"); s != "" {
		base, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("model: %d regression seeds (each twice: copies and compressed files written at once, and in parts), then %d random sequences from seed %d (replay one with TAIL_MODEL_SEED=<seed>)", len(modelRegressions), n, base)
	st := &modelStats{why: map[string]int{}}
	for _, seed := range modelRegressions {
		// The seeds found before copies were written in parts make
		// the sequence they failed with only that way.
		runModel(t, seed, st, false, false, true)
		runModel(t, seed, st, true, false, true)
	}
	// Every failing sequence fails the test, printed with its seed.
	var failed []uint64
	for i := 0; i < n; i++ {
		seed := base + uint64(i)
		if !runModel(t, seed, st, true, false, true) {
			failed = append(failed, seed)
			if len(failed) >= 5 && os.Getenv("TAIL_MODEL_ALL") == "" {
				t.Fatalf("stopping after %d failing seeds: %v (TAIL_MODEL_ALL=1 runs on)", len(failed), failed)
			}
		}
	}
	t.Logf("model: %s", st)
	if len(failed) > 0 {
		t.Errorf("model: %d of %d random sequences failed: seeds %v", len(failed), n, failed)
	}
}

// modelOff reports whether TAIL_MODEL_OFF (a comma-separated list) turns
// an operation off, to find which one a failure needs.
func modelOff(op string) bool {
	for _, o := range strings.Split(os.Getenv("TAIL_MODEL_OFF"), ",") {
		if o == op {
			return true
		}
	}
	return false
}

type modelStats struct {
	sequences, ops, written, required, exact, exempt, exemptCounted int
	why                                                             map[string]int
}

// Why a line may be counted once or not at all (never twice).
const (
	// In no file on disk nor held open by the Tailer at some moment:
	// logrotate destroyed it (written between copytruncate's copy and
	// its truncate, in a file deleted before it was read, or deleted
	// while the daemon was stopped). A file rotated while stopped and
	// still on disk is on disk: its lines are required.
	exemptDestroyed = "destroyed"
	// In a file not live at a first start (no saved position at all:
	// nothing was ever committed), history that is replay's to read.
	exemptHistory = "history"
	// Split in two by copytruncate (its halves are allowed fragments).
	exemptSplit = "split"
)

func (s *modelStats) String() string {
	return fmt.Sprintf("%d sequences, %d operations, %d lines written: %d of %d required lines counted exactly once; %d exempt (%d destroyed by logrotate, %d history at a first start, %d split by copytruncate; %d of them counted once)",
		s.sequences, s.ops, s.written, s.exact, s.required, s.exempt, s.why[exemptDestroyed], s.why[exemptHistory], s.why[exemptSplit], s.exemptCounted)
}

// mfile is one inode the model knows: the lines wholly in it.
type mfile struct {
	name     string // path relative to the directory; "" once unlinked
	dev, ino uint64
	ids      []int
	gz       bool
	history  bool // not live at a first start: never the daemon's to read
}

type pendingLine struct {
	text string
	pos  []tail.Position
}

type model struct {
	t     *testing.T
	rng   *rand.Rand
	dir   string
	trace []string

	// the sequence's logrotate configuration
	dateext, compress, delay, symlink, glob bool
	keep                                    int

	live    *mfile   // the file the log's path (or its symlink) names
	rotated []*mfile // newest first
	files   []*mfile // every inode ever made
	day     int
	targets int
	globs   []*mfile

	wf      *os.File // the writer's descriptor
	wm      *mfile   // the file it writes to
	reopen  bool     // the writer has not reopened since a rotation
	moved   time.Time
	gzLater *mfile // compress without delaycompress: gzipped after the reopen
	partial int    // id of a line half written, or -1
	partN   int    // bytes of it written
	split   map[int]bool
	texts   []string
	exempt  map[int]string // why a line need not be counted (exempt*)
	counts  map[int]int
	garbage []string
	clock   time.Time
	// parts: copytruncate may write its copy, and gzip a compressed
	// file, in parts, choosing by parted (a stream of its own)
	parts  bool
	parted *rand.Rand
	// later: choices added after seeds were found with parted, so that
	// those seeds still make the sequences they failed with
	later    *rand.Rand
	tl       *tail.Tailer
	pending  []pendingLine
	saved    map[string]tail.Position
	patterns []string
	failed   bool
	verbose  bool

	graveyard string
	graves    int
	// lastHeld are the files the Tailer held at the last look; released
	// those it closed while running (since the last kill).
	lastHeld, released map[[2]uint64]bool
}

type traceWriter struct{ m *model }

func (w traceWriter) Write(p []byte) (int, error) {
	w.m.logf("  tail: %s", strings.TrimSpace(string(p)))
	return len(p), nil
}

const modelRotateWait = 30 * time.Second

var fullLine = regexp.MustCompile(`^L(\d{6})-[a-z]*-E$`)

// runModel runs one sequence; a failure is an error when fatal, else
// only logged with its trace.
func runModel(t *testing.T, seed uint64, st *modelStats, parts, verbose, fatal bool) bool {
	dir := t.TempDir()
	graveyard := t.TempDir()
	m := &model{graveyard: graveyard, t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), dir: dir, partial: -1,
		parts: parts, parted: rand.New(rand.NewPCG(seed^0x5bd1e995, seed)), later: rand.New(rand.NewPCG(seed^0x27d4eb2f, seed)),
		split: map[int]bool{}, exempt: map[int]string{}, released: map[[2]uint64]bool{}, counts: map[int]int{}, saved: map[string]tail.Position{},
		clock: time.Now().Add(time.Hour), verbose: verbose} // after every birth time
	defer func() {
		if m.tl != nil {
			m.tl.Close()
		}
		if m.wf != nil {
			m.wf.Close()
		}
	}()
	m.dateext = m.rng.IntN(3) == 0
	switch m.rng.IntN(3) {
	case 1:
		m.compress = true
	case 2:
		m.compress, m.delay = true, true
	}
	m.symlink = m.rng.IntN(5) == 0 && !modelOff("symlink")
	m.glob = m.rng.IntN(3) == 0
	m.keep = 3 + m.rng.IntN(3)
	m.logf("seed %d: dateext=%v compress=%v delaycompress=%v symlink=%v glob=%v rotate=%d written in parts=%v", seed, m.dateext, m.compress, m.delay, m.symlink, m.glob, m.keep, parts)
	if m.symlink {
		must(t, os.Mkdir(filepath.Join(dir, "data"), 0o755))
		m.live = m.create(m.nextTarget())
		must(t, os.Symlink(m.live.name, filepath.Join(dir, "access.log")))
	} else {
		m.live = m.create("access.log")
	}
	m.patterns = []string{filepath.Join(dir, "access.log")}
	if m.glob {
		m.patterns = []string{filepath.Join(dir, "*.log")}
	}
	m.openWriter(m.live)
	m.start()
	nops := 20 + m.rng.IntN(40)
	for i := 0; i < nops && !m.failed; i++ {
		m.step()
		st.ops++
	}
	if !m.failed {
		m.finish()
	}
	if !m.failed {
		m.check(st)
	}
	st.sequences++
	if (m.failed && fatal) || verbose {
		for _, l := range m.trace {
			t.Log(l)
		}
	}
	if m.failed {
		report := t.Logf
		if fatal {
			report = t.Errorf
		}
		report("seed %d failed (replay: TAIL_MODEL_SEED=%d go test -run TestModel -v ./ingest/tail; written in parts=%v)", seed, seed, parts)
	}
	return !m.failed
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (m *model) logf(format string, args ...any) {
	m.trace = append(m.trace, fmt.Sprintf(format, args...))
}

func (m *model) fail(format string, args ...any) {
	m.logf("FAIL: "+format, args...)
	m.failed = true
}

func (m *model) abs(name string) string { return filepath.Join(m.dir, name) }

// remove deletes a file as far as the Tailer can tell: it moves to a
// directory no one looks in, so that its inode is not reused. (Reused
// inodes are real, but file systems reuse them at different rates; the
// Tailer never trusts an inode alone where it matters.)
func (m *model) remove(name string) {
	m.graves++
	must(m.t, os.Rename(m.abs(name), filepath.Join(m.graveyard, strconv.Itoa(m.graves))))
}

func (m *model) nextTarget() string {
	m.targets++
	return fmt.Sprintf("data/access-%d.log", m.targets)
}

// create makes an empty file and its model.
func (m *model) create(name string) *mfile {
	f, err := os.OpenFile(m.abs(name), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	must(m.t, err)
	f.Close()
	mf := &mfile{name: name}
	m.identify(mf)
	m.touch(mf)
	m.files = append(m.files, mf)
	return mf
}

func (m *model) identify(mf *mfile) {
	fi, err := os.Stat(m.abs(mf.name))
	must(m.t, err)
	st := fi.Sys().(*syscall.Stat_t)
	mf.dev, mf.ino = uint64(st.Dev), st.Ino
}

// touch dates a file by the model's clock, as a write at that time would.
func (m *model) touch(mf *mfile) {
	p := m.abs(mf.name)
	if mf.name == "" {
		if mf != m.wm {
			return
		}
		p = "/proc/self/fd/" + strconv.Itoa(int(m.wf.Fd()))
	}
	must(m.t, os.Chtimes(p, m.clock, m.clock))
}

func (m *model) openWriter(mf *mfile) {
	if m.wf != nil {
		m.wf.Close()
	}
	f, err := os.OpenFile(m.abs(mf.name), os.O_WRONLY|os.O_APPEND, 0)
	must(m.t, err)
	m.wf, m.wm = f, mf
}

func (m *model) newText() int {
	id := len(m.texts)
	pad := strings.Repeat(string(rune('a'+m.rng.IntN(26))), m.rng.IntN(80))
	m.texts = append(m.texts, fmt.Sprintf("L%06d-%s-E\n", id, pad))
	return id
}

// finishPartial writes the rest of a half-written line.
func (m *model) finishPartial() {
	if m.partial < 0 {
		return
	}
	id := m.partial
	_, err := m.wf.WriteString(m.texts[id][m.partN:])
	must(m.t, err)
	m.touch(m.wm)
	if !m.split[id] {
		m.wm.ids = append(m.wm.ids, id)
	}
	if m.wm.history {
		m.exempt[id] = exemptHistory
	}
	m.partial = -1
}

// write appends n lines through the writer's descriptor, the last maybe
// only in part.
func (m *model) write(n int, partialEnd bool) {
	m.finishPartial()
	var b strings.Builder
	for i := 0; i < n; i++ {
		id := m.newText()
		if i == n-1 && partialEnd {
			m.partial, m.partN = id, 1+m.rng.IntN(len(m.texts[id])-1)
			b.WriteString(m.texts[id][:m.partN])
			break
		}
		b.WriteString(m.texts[id])
		m.wm.ids = append(m.wm.ids, id)
		if m.wm.history {
			m.exempt[id] = exemptHistory
		}
	}
	_, err := m.wf.WriteString(b.String())
	must(m.t, err)
	m.touch(m.wm)
	m.logf("write %d lines to %s%s (ids up to %d)", n, m.wm.name, map[bool]string{true: ", the last in part"}[partialEnd], len(m.texts)-1)
}

func (m *model) writeGlob() {
	var mf *mfile
	if len(m.globs) == 0 || m.rng.IntN(3) == 0 {
		mf = m.create(fmt.Sprintf("other-%d.log", len(m.globs)+1))
		m.globs = append(m.globs, mf)
	} else {
		mf = m.globs[m.rng.IntN(len(m.globs))]
	}
	n := 1 + m.rng.IntN(4)
	var b strings.Builder
	for i := 0; i < n; i++ {
		id := m.newText()
		b.WriteString(m.texts[id])
		mf.ids = append(mf.ids, id)
	}
	f, err := os.OpenFile(m.abs(mf.name), os.O_WRONLY|os.O_APPEND, 0)
	must(m.t, err)
	_, err = f.WriteString(b.String())
	f.Close()
	must(m.t, err)
	m.touch(mf)
	m.logf("write %d lines to %s", n, mf.name)
}

func (m *model) step() {
	m.clock = m.clock.Add(time.Duration(m.rng.IntN(3000)) * time.Millisecond)
	if (m.reopen || m.live.name == "") && m.clock.Sub(m.moved) > modelRotateWait/2 {
		// postrotate reopens well within rotate_wait
		m.doReopen()
	}
	switch r := m.rng.IntN(100); {
	case r < 28:
		m.write(1+m.rng.IntN(6), m.rng.IntN(3) == 0)
	case r < 46:
		m.tick(-1)
	case r < 52:
		m.commit(m.rng.IntN(len(m.pending) + 1))
	case r < 58:
		if m.reopen || m.live.name == "" {
			m.doReopen()
		} else {
			m.tick(-1)
		}
	case r < 64 && !m.symlink:
		m.rotateCreate()
	case r < 64:
		m.swap()
	case r < 69 && !m.symlink && !modelOff("copytruncate"):
		m.copytruncate()
	case r < 72 && !m.symlink && !modelOff("delete"):
		m.deleteLive()
	case r < 76 && m.glob:
		m.writeGlob()
	case r < 80 && !modelOff("kill"):
		m.kill(m.rng.IntN(2) == 0)
	case r < 84:
		m.stop()
	case r < 90:
		if m.tl == nil {
			m.start()
		} else {
			m.tick(-1)
		}
	case r < 93 && !m.reopen && m.gzLater == nil && m.live.name != "":
		m.clock = m.clock.Add(modelRotateWait + 31*time.Second)
		m.logf("clock jumps past rotate_wait")
	default:
		m.write(1+m.rng.IntN(3), false)
	}
	m.reach()
}

// name is a rotated file's name at index i (0 is the newest).
func (m *model) rotName(i int, mf *mfile) string {
	gz := ""
	if mf.gz {
		gz = ".gz"
	}
	if m.dateext {
		return mf.name[:strings.Index(mf.name, "-")+9] + gz
	}
	return fmt.Sprintf("access.log.%d%s", i+1, gz)
}

func (m *model) gzip(mf *mfile) *mfile {
	data, err := os.ReadFile(m.abs(mf.name))
	must(m.t, err)
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(data)
	w.Close()
	name := mf.name + ".gz"
	if m.parts && m.tl != nil && m.parted.IntN(2) == 0 {
		m.gzipInParts(name, b.Bytes())
	} else {
		must(m.t, os.WriteFile(m.abs(name), b.Bytes(), 0o644))
	}
	gz := &mfile{name: name, gz: true, ids: append([]int{}, mf.ids...)}
	m.identify(gz)
	// logrotate dates the compressed file as the original.
	fi, err := os.Stat(m.abs(mf.name))
	must(m.t, err)
	must(m.t, os.Chtimes(m.abs(name), fi.ModTime(), fi.ModTime()))
	m.files = append(m.files, gz)
	m.remove(mf.name)
	mf.name = ""
	return gz
}

// shift makes room for a new .1: drops the oldest beyond rotate, gzips
// the plain .1 with delaycompress, renames the rest one up.
func (m *model) shift() {
	for len(m.rotated) >= m.keep {
		old := m.rotated[len(m.rotated)-1]
		m.rotated = m.rotated[:len(m.rotated)-1]
		m.remove(old.name)
		m.logf("  logrotate deletes %s", old.name)
		old.name = ""
	}
	if m.delay && len(m.rotated) > 0 && !m.rotated[0].gz {
		m.rotated[0] = m.gzip(m.rotated[0])
	}
	for i := len(m.rotated) - 1; i >= 0; i-- {
		mf := m.rotated[i]
		to := m.rotName(i+1, mf)
		if to != mf.name {
			must(m.t, os.Rename(m.abs(mf.name), m.abs(to)))
			mf.name = to
		}
	}
}

func (m *model) newRotatedName() string {
	if m.dateext {
		m.day++
		return fmt.Sprintf("access.log-202612%02d", m.day)
	}
	return "access.log.1"
}

// rotateCreate is logrotate's default: rename, create, postrotate
// signals the writer (later: doReopen).
func (m *model) rotateCreate() {
	if m.reopen || m.live.name == "" {
		m.doReopen()
	}
	m.logf("rotate (rename + create)")
	m.shift()
	name := m.newRotatedName()
	must(m.t, os.Rename(m.abs(m.live.name), m.abs(name)))
	m.live.name = name
	m.rotated = append([]*mfile{m.live}, m.rotated...)
	if m.compress && !m.delay {
		m.gzLater = m.live
	}
	m.live = m.create("access.log")
	m.reopen, m.moved = true, m.clock
}

// doReopen is the writer reopening its log (nginx on USR1), then
// logrotate compressing what it rotated.
func (m *model) doReopen() {
	m.finishPartial()
	if m.live.name == "" { // deleted: the writer creates it again
		m.live = m.create("access.log")
	}
	m.openWriter(m.live)
	m.reopen = false
	m.logf("writer reopens %s", m.live.name)
	if m.gzLater != nil {
		for i, r := range m.rotated {
			if r == m.gzLater {
				m.rotated[i] = m.gzip(r)
				m.logf("  logrotate compresses it to %s", m.rotated[i].name)
			}
		}
		m.gzLater = nil
	}
}

func (m *model) copytruncate() {
	if m.reopen || m.live.name == "" {
		m.doReopen()
	}
	m.logf("copytruncate")
	m.shift()
	name := m.newRotatedName()
	data, err := os.ReadFile(m.abs(m.live.name))
	must(m.t, err)
	ids := append([]int{}, m.live.ids...)
	if m.partial >= 0 {
		m.split[m.partial] = true
		m.exempt[m.partial] = exemptSplit
	}
	var cp *mfile
	if m.parts && m.parted.IntN(2) == 0 {
		cp = m.copyInParts(name, data)
	} else {
		must(m.t, os.WriteFile(m.abs(name), data, 0o644))
		cp = &mfile{name: name}
		m.identify(cp)
		m.touch(cp)
		m.files = append(m.files, cp)
		m.rotated = append([]*mfile{cp}, m.rotated...)
	}
	cp.ids = ids
	if m.rng.IntN(3) == 0 {
		m.write(1+m.rng.IntN(2), false) // lost: after the copy, before the truncate
	}
	if m.tl != nil && m.rng.IntN(4) == 0 {
		m.tick(-1)
	}
	must(m.t, os.Truncate(m.abs(m.live.name), 0))
	m.touch(m.live)
	m.logf("  truncated")
	m.live.ids = nil
	if m.compress && !m.delay {
		m.rotated[0] = m.gzip(cp)
	}
}

// gzipInParts writes a compressed file as gzip does, a buffer at a time,
// while the daemon may look (the original is still there).
//
// The file is opened for each part, so that no descriptor of the model's
// own is open while the Tailer looks (heldInodes would take it for the
// Tailer's).
func (m *model) gzipInParts(name string, data []byte) {
	f, err := os.OpenFile(m.abs(name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	must(m.t, err)
	f.Close()
	if m.later.IntN(3) == 0 {
		m.logf("  %s is empty yet", name)
		m.tick(-1) // (created, nothing written yet)
		m.reach()
	}
	at := 0
	for at < len(data) {
		c := min(len(data), at+1+m.parted.IntN(len(data)))
		f, err := os.OpenFile(m.abs(name), os.O_WRONLY|os.O_APPEND, 0)
		must(m.t, err)
		_, err = f.Write(data[at:c])
		f.Close()
		must(m.t, err)
		at = c
		m.logf("  %s has %d of %d bytes", name, c, len(data))
		if c < len(data) && m.parted.IntN(2) == 0 {
			m.tick(-1)
			m.reach()
		}
	}
}

// copyInParts writes copytruncate's copy as logrotate does, a buffer at a
// time, while the daemon may look, read, be killed or start, and the writer
// appends to the live file (lines after the copy's end: destroyed by the
// truncate unless read before it). Its choices come from their own random
// stream, so that a seed's other operations are those it makes without.
func (m *model) copyInParts(name string, data []byte) *mfile {
	main := m.rng
	m.rng = m.parted
	defer func() { m.rng = main }()
	cp := m.create(name)
	m.rotated = append([]*mfile{cp}, m.rotated...)
	cuts := []int{}
	for n := 1 + m.rng.IntN(3); len(cuts) < n; {
		cuts = append(cuts, m.rng.IntN(len(data)+1))
	}
	sort.Ints(cuts)
	cuts = append(cuts, len(data))
	at := 0
	for _, c := range cuts {
		f, err := os.OpenFile(m.abs(name), os.O_WRONLY|os.O_APPEND, 0)
		must(m.t, err)
		_, err = f.Write(data[at:c])
		f.Close()
		must(m.t, err)
		at = c
		m.clock = m.clock.Add(time.Duration(m.rng.IntN(500)) * time.Millisecond)
		m.touch(cp)
		m.logf("  copy has %d of %d bytes", c, len(data))
		if c == len(data) {
			break
		}
		switch r := m.rng.IntN(10); {
		case r < 4:
			m.tick(-1)
		case r < 5 && !modelOff("kill"):
			m.kill(m.rng.IntN(2) == 0)
		case r < 6:
			if m.tl == nil {
				m.start()
			} else {
				m.tick(-1)
			}
		case r < 7:
			m.commit(m.rng.IntN(len(m.pending) + 1))
		case r < 8:
			m.write(1+m.rng.IntN(2), false) // after the copy's end
		}
		// (what the Tailer holds after each operation, as step does: a
		// kill lets go of files without the Tailer letting go of them)
		m.reach()
	}
	return cp
}

func (m *model) deleteLive() {
	if m.reopen || m.live.name == "" {
		m.doReopen()
	}
	m.remove(m.live.name)
	m.logf("delete %s (the writer still holds it)", m.live.name)
	m.live.name = ""
	m.reopen, m.moved = true, m.clock
	if m.rng.IntN(2) == 0 {
		m.live = m.create("access.log")
		m.logf("  and recreate it")
	}
}

func (m *model) swap() {
	if m.reopen {
		m.doReopen()
	}
	mf := m.create(m.nextTarget())
	tmp := m.abs("access.log.tmp-link")
	must(m.t, os.Symlink(mf.name, tmp))
	must(m.t, os.Rename(tmp, m.abs("access.log")))
	m.logf("symlink swapped to %s", mf.name)
	m.live = mf
	m.reopen, m.moved = true, m.clock
}

var errKilled = errors.New("killed")

// tick runs one Tick; with failAfter >= 0 the process dies after that
// many lines were handed over.
func (m *model) tick(failAfter int) {
	if m.tl == nil {
		return
	}
	n := 0
	var got []string
	err := m.tl.Tick(context.Background(), m.clock, func(l *tail.Line) error {
		if failAfter >= 0 && n >= failAfter {
			return errKilled
		}
		n++
		p := pendingLine{pos: []tail.Position{l.Pos}}
		if l.Extra != nil {
			p.pos = append(p.pos, *l.Extra)
		}
		if m.verbose {
			m.logf("  emit %q@%d file=%s pos=%v extra=%v", string(l.Text), l.Offset, filepath.Base(l.File), l.Pos, l.Extra)
		}
		if l.PositionOnly {
			got = append(got, fmt.Sprintf("pos %s@%d", filepath.Base(l.Pos.Key), l.Pos.Offset))
		} else if g := fullLine.FindStringSubmatch(string(l.Text)); g != nil {
			got = append(got, g[1]+"@"+filepath.Base(l.File))
		}
		if !l.PositionOnly {
			if l.TooLong {
				p.text = "<too long>"
			} else {
				p.text = string(l.Text)
			}
		}
		m.pending = append(m.pending, p)
		return nil
	})
	if failAfter >= 0 && errors.Is(err, errKilled) {
		m.logf("tick: killed after %d lines", n)
		return
	}
	if err != nil {
		m.fail("tick: %v", err)
	}
	m.logf("tick: %d lines %v", n, got)
}

// commit saves the first n pending lines and their positions, as the
// daemon's flush does.
func (m *model) commit(n int) {
	for _, p := range m.pending[:n] {
		for _, pos := range p.pos {
			m.saved[pos.Key] = pos
		}
		if p.text == "" {
			continue
		}
		if g := fullLine.FindStringSubmatch(p.text); g != nil {
			id, _ := strconv.Atoi(g[1])
			m.counts[id]++
			if m.counts[id] > 1 {
				m.fail("line %d counted %d times", id, m.counts[id])
			}
		} else {
			m.garbage = append(m.garbage, p.text)
		}
	}
	m.pending = m.pending[n:]
	m.logf("commit %d (%d pending)", n, len(m.pending))
}

func (m *model) start() {
	var pos []tail.Position
	for _, p := range m.saved {
		pos = append(pos, p)
	}
	var log *slog.Logger
	if m.verbose {
		log = slog.New(slog.NewTextHandler(traceWriter{m}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	m.tl = tail.New(tail.Options{Patterns: m.patterns, Positions: pos, RotateWait: modelRotateWait, Logger: log})
	m.logf("start with %d saved positions %v", len(pos), pos)
	if len(pos) == 0 {
		// A first start reads the live files; what was rotated before
		// is history (replay's business), not the daemon's.
		live := map[int]bool{}
		isLive := map[*mfile]bool{}
		for _, f := range append([]*mfile{m.live}, m.globs...) {
			if f.name != "" {
				isLive[f] = true
				for _, id := range f.ids {
					live[id] = true
				}
			}
		}
		for _, f := range m.files {
			f.history = !isLive[f]
		}
		if m.partial >= 0 {
			live[m.partial] = true
		}
		for id := range m.texts {
			if !live[id] && m.exempt[id] == "" {
				m.exempt[id] = exemptHistory
			}
		}
		m.tick(-1)
	}
}

// kill drops the Tailer and everything not committed (kill -9), maybe in
// the middle of a tick.
func (m *model) kill(midTick bool) {
	if m.tl == nil {
		return
	}
	if midTick {
		m.tick(m.rng.IntN(8))
	}
	m.tl.Close()
	m.tl = nil
	m.leaked()
	m.pending = nil
	m.released = map[[2]uint64]bool{} // read but not committed: gone with it
	m.logf("kill -9")
}

// stop is a graceful stop: what was handed over is committed.
func (m *model) stop() {
	if m.tl == nil {
		return
	}
	m.commit(len(m.pending))
	m.tl.Close()
	m.tl = nil
	m.leaked()
	m.logf("stop")
}

// leaked fails when a file is still open after the Tailer was closed (a
// descriptor dropped without Close, on an error path): it would hold a
// deleted file's lines for the model, and a daemon's descriptors.
func (m *model) leaked() {
	held := m.heldInodes()
	for _, f := range m.files {
		if held[[2]uint64{f.dev, f.ino}] {
			m.fail("still open after Close: %q (inode %d)", f.name, f.ino)
		}
	}
}

// reach exempts lines that are in no file any more that is on disk or
// held open by the Tailer: logrotate destroyed them.
func (m *model) reach() {
	held := m.heldInodes()
	if m.tl != nil {
		// A file the running Tailer let go of was its to finish:
		// what it did not read then is lost, not destroyed.
		for id := range m.lastHeld {
			if !held[id] {
				m.released[id] = true
				if m.verbose {
					m.logf("  the Tailer let go of inode %d", id[1])
				}
			}
		}
	}
	m.lastHeld = held
	ok := map[int]bool{}
	for _, f := range m.files {
		if id := [2]uint64{f.dev, f.ino}; f.name != "" || held[id] || m.released[id] {
			for _, id := range f.ids {
				ok[id] = true
			}
		}
	}
	if m.partial >= 0 {
		ok[m.partial] = true
	}
	for id := range m.texts {
		if !ok[id] && m.exempt[id] == "" {
			m.exempt[id] = exemptDestroyed
		}
	}
}

// heldInodes are the files this process holds open, the writer's
// descriptor left out.
func (m *model) heldInodes() map[[2]uint64]bool {
	out := map[[2]uint64]bool{}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		m.t.Fatalf("the model needs /proc/self/fd: %v", err)
	}
	wfd := ""
	if m.wf != nil {
		wfd = strconv.Itoa(int(m.wf.Fd()))
	}
	for _, e := range ents {
		if e.Name() == wfd {
			continue
		}
		fi, err := os.Stat("/proc/self/fd/" + e.Name())
		if err != nil {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() {
			out[[2]uint64{uint64(st.Dev), st.Ino}] = true
		}
	}
	return out
}

// finish lets everything settle: the writer finishes and reopens, the
// daemon runs until rotated files are done, then stops gracefully.
func (m *model) finish() {
	m.logf("-- settle")
	if m.reopen || m.live.name == "" {
		m.doReopen()
	}
	m.finishPartial()
	m.reach()
	if m.tl == nil {
		m.start()
	}
	for i := 0; i < 3; i++ {
		m.tick(-1)
		m.clock = m.clock.Add(modelRotateWait + 31*time.Second)
	}
	m.tick(-1)
	m.stop()
}

func (m *model) check(st *modelStats) {
	split := map[string]bool{}
	for id := range m.split {
		txt := strings.TrimSuffix(m.texts[id], "\n")
		for i := 1; i < len(txt); i++ {
			split[txt[:i]], split[txt[i:]] = true, true
		}
	}
	for _, g := range m.garbage {
		if !split[g] {
			m.fail("a line that was never written: %q", g)
		}
	}
	for id := range m.texts {
		st.written++
		c := m.counts[id]
		if why := m.exempt[id]; why != "" {
			st.exempt++
			st.why[why]++
			if c == 1 {
				st.exemptCounted++
			}
			continue
		}
		st.required++
		if c == 1 {
			st.exact++
		} else {
			m.fail("line %d (%q) counted %d times, want once", id, strings.TrimSpace(m.texts[id][:8]), c)
		}
	}
}
