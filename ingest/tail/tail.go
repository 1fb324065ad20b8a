// Package tail follows live log files through every kind of rotation and
// reports each complete line exactly once, with the position a restart can
// resume from.
//
// A position is (path, device, inode, head, offset): the file a path named
// when the line was read, a fingerprint of its first bytes (inodes get
// reused), and the offset just after the line. Callers persist positions
// in the same transaction as what the lines produced, in the order they
// were reported; any prefix of what was reported is a state a restart
// takes up (so a file found is saved before anything newer is read).
//
// The saved head is "n:hex" (the fingerprint of the first n <= HeadBytes
// bytes) followed by fields: "t=" when it was taken (the file's mtime),
// "a=" the fingerprint of the file read before it (short heads only), "r="
// the fingerprint of what was read when the head covers more than that (a
// copy taken before the head grew is shorter than the head), "p=" short
// fingerprints of the start up to each line end inside the head that was
// read (a copy copytruncate took while the reader raced it is shorter
// still), and on the path's key "l=" when the patterns were first looked
// at (by the first run whose positions were saved). "done " before it
// marks a file read to its end; "gone t=.. a=.." a path that named no
// file; an empty head names nothing (a free key, or a position from a
// version that did not date them).
//
// Every file of a path the Tailer reads is followed on its own, under its
// own key: the path's key holds the file the path names; the rotated key
// (path plus RotatedSuffix) the file it named before, read for late lines;
// ExtraKey(path, n) (n >= 2) the other rotated files still read for late
// lines, files found beside the path and saved as unread before anything
// newer is read, and done records of files read to their end that are
// still on disk (or compressed copies of them). A rotated file is let go
// only once it has been quiet for RotateWait, never because another one
// rotated after it.
//
// On start, per path, what the saved positions can match on disk and what
// each match means:
//
//	saved (path key)             on disk                               means: read
//	---------------------------  ------------------------------------  -----------------------------------------
//	none                         the file                              first start: from 0 (or its end: StartAtEnd);
//	                                                                   a restart (other keys saved): from 0, and
//	                                                                   the siblings written since the patterns
//	                                                                   were first looked at (the earliest "l=";
//	                                                                   without one, the last save) whole: they
//	                                                                   passed through a path new since a look
//	file F, head H, offset o     same inode, starts with H, size >= o  F itself: resume at o
//	file F (H empty, or o = 0    same inode                            nothing was read of F: as truncated
//	and H shorter than 64 bytes)                                       (a few bytes start every line)
//	file F                       same inode, shorter or other head     truncated (copytruncate): the oldest
//	                                                                   sibling starting with H (or with "r=",
//	                                                                   at least o long) from o, later siblings
//	                                                                   whole, then F from 0; a sibling
//	                                                                   starting with H but shorter than o, or
//	                                                                   whose whole lines are a "p=" prefix, is
//	                                                                   a copy taken before o (read): only the
//	                                                                   siblings after it, whole
//	file F, o = 0, H a few bytes  any                                  nothing read: every sibling since "t="
//	of a line                                                          (after "a=") whole, not even F's inode
//	                                                                   taken for F (it may be truncated since)
//	file F                       another inode                         rotated: the oldest sibling that is F
//	                                                                   or a copy of it (by H or "r=": renamed,
//	                                                                   gzipped, copied) from o, later siblings
//	                                                                   whole, the newest plain one followed on
//	                                                                   for late lines, then the path from 0
//	file F, nothing holds H      (deleted, H empty, or H a few bytes   every sibling rotated since whole: after
//	                             of a line, F's inode gone)            the previous file (rotated key, "a=") in
//	                                                                   logrotate's order and written since "t="
//	file F, path a symlink       F beside another target               F from o (or followed on), every other
//	                                                                   target written since "t=" whole and
//	                                                                   followed on for late lines
//	any                          a sibling the path starts with in     copytruncate's copy, the truncate still
//	                             full (all its bytes)                  to come: nothing (the path, read from
//	                                                                   0, holds it); a done record once the
//	                                                                   path is read past it
//	any, rotated key taken up    the rotated key's file R (by inode)   siblings older than R are older than
//	                                                                   what the path saved: not read
//	any                          a sibling a done record names         read before: only what it got since
//	                                                                   (from the record's offset), never whole
//	any                          a file an ExtraKey follows            taken up by that key: not read again
//	"gone t=.. a=.."             whatever the path names               the path was gone: siblings written
//	                                                                   since "t=" after "a=" whole, the
//	                                                                   newest followed on, the path from 0
//	empty head (undated "gone")  whatever the path names               from 0
//
//	saved (rotated key, ExtraKey)  on disk                             means
//	-----------------------------  ----------------------------------  -----------------------------------------
//	"done ..." (rotated key)       -                                   read to its end: nothing to do, but it
//	                                                                   bounds where the path's copies are (an
//	                                                                   ExtraKey takes the record over when the
//	                                                                   key goes to another file while the file
//	                                                                   or a compressed copy is on disk)
//	"done H" o (ExtraKey)          the file by inode and H, size o,    read to its end: nothing; not read
//	                               or a compressed copy of it          whole either (a compressed copy of the
//	                                                                   path's saved content holding more than
//	                                                                   o: read on, as a grown file)
//	"done H" o (ExtraKey)          the file by inode and H, longer     late lines since: read from o; but a
//	                                                                   copy of the path's saved file ("p=",
//	                                                                   "r=") was being written when recorded:
//	                                                                   only past what the path read
//	"done H" (ExtraKey)            neither the file nor a copy         the key is free for another file
//	file R, head, offset o         R by inode and head, plain          followed from o for late lines
//	file R, head, offset o         a compressed copy of R (by head)    read from o, then done
//	file R                         nothing holds it                    done (its writer's lines died with it)
//	one inode under two keys       -                                   a stop between two saves of a
//	                                                                   rotation: read once, from the later
//	                                                                   offset; the other key let go
//	empty head                     -                                   a free key
//
// An empty fingerprint (a file empty when saved) names nothing: its inode
// is trusted only if the file was born before the position was taken
// (statx), and it bounds nothing. A fingerprint shorter than 64 bytes is
// matched, but used as a bound only when it covers a whole line (a few
// bytes of a line start many files; a whole log line rarely two).
//
// While running, the Tailer keeps every file it reads open. When the path
// starts to name another file (rename+create, delete+recreate, a swapped
// symlink) the old descriptor is still read: a writer that has not reopened
// yet (nginx before USR1) keeps appending to it, and those late lines are
// read for RotateWait after the last one, under the rotated key (an older
// one still read moves to an ExtraKey). A sibling that appears while the
// path is followed is unread unless its content proves otherwise: a copy
// of the current file (copytruncate, seen before or after the truncate) is
// read from the offset read so far, a copy of its new content after a
// truncation from 0. copytruncate writes its copy while the Tailer may
// look: a plain sibling the current file starts with in full (all its
// bytes, even a few of a line) is its copy, maybe still being written:
// the file holds its lines, so it gets a done record once the file is
// read past it (at once when it is no longer than what was read), and is
// looked at again each time it changes; so is a copy of no more than what
// was read found once the file is truncated (told by the first bytes read,
// kept in memory; plain or compressed), and a rotated file followed from
// its start, nothing read of it yet, that turns out to be the file's
// start (found empty, written since) is let go as such a copy (the file
// truncated since: a copy of what was read is read; one of more is read
// on from where the file was read to). A head of
// a few bytes of a line proves no copy. A compressed file whose stream is
// cut short (or a .gz file without gzip's magic yet) is one gzip is
// still writing: not there yet (its original is), here and at a start; a
// file found empty, then compressed, is known by its content. A file
// whose start is that of a file accounted for (a rename, or a compressed
// copy of one) is skipped; at a rotation, a sibling the new file starts
// with in full is its copy (nothing to read), and siblings older than the
// rotated file in logrotate's order are copies of its earlier content
// (read whole, the rotated file still followed); anything
// else passed through the path between two looks (rotated twice, or
// created, written and rotated): a plain one is followed from its start
// for late lines, a compressed one read whole. Files found beside a
// truncated file are saved as unread before its new content is read. A
// path that appears after the first Tick (under a glob, or missing at the
// start) reads whole the siblings written since the first Tick (or the
// earlier first look a saved "l=" tells). A path followed again after it
// was let go (gone under a glob, then back) starts from what was reported
// for it, not from the positions the Tailer was made with. A sibling that
// appears or changes while a start takes up the saved positions (logrotate
// racing it) is accounted for only if the start reported it, or it starts
// with a file the start reported or a done record names, and is no copy of
// the path's file: else the next look finds it new.
//
// Not exercised by the model test: inode reuse (the model keeps deleted
// files' inodes, file systems differ in how soon they reuse them; the
// Tailer never trusts an inode alone where it matters). Copies and
// compressed files still being written are (the model writes them in
// parts while the Tailer looks, is killed and starts).
//
// Why not github.com/nxadm/tail, the usual Go tail library: its lines
// carry no file identity and it reopens a renamed or truncated path behind
// the caller's back, so a position cannot be tied to an inode exactly; on
// rename it switches to the new file at once, losing late writes and,
// because it selects between "modified" and "deleted" at random, sometimes
// the unread end of the old file; it calls os.Exit on stat errors other than
// "not found" and when an inotify watcher cannot be made; its inotify watch
// follows a symlink's target, so a swapped symlink goes unnoticed; and it
// misses a truncation followed by growth past the old size. Exactly-once
// counting needs the reader to own the descriptor and the offset, so Tick
// reads with pread on descriptors it holds and decides what every change
// means; Watch (fsnotify on the files' directories) only wakes the caller
// to Tick at once, and the caller still polls (every poll_interval) for
// what events miss.
package tail

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spraywatch/spraywatch/ingest"
)

// HeadBytes is how much of a file's start its fingerprint covers.
const HeadBytes = 256

// RotatedSuffix ends the position key of a rotated file still being read
// for late writes.
const RotatedSuffix = " (rotated)"

// Position is how far a file has been read. Key is the followed path (or
// the path plus RotatedSuffix); Head is empty once a rotated file is done.
type Position struct {
	Key        string
	Dev, Inode uint64
	Head       string
	Offset     int64
}

// Line is one complete line. The Line and its Text are valid only until
// emit returns; Text is nil for a line longer than MaxLineBytes (TooLong).
type Line struct {
	Text    []byte
	TooLong bool
	// PositionOnly lines carry no text, only positions to save (after a
	// rotation or truncation, or when a rotated file is done).
	PositionOnly bool
	// Extra is a second position that must be saved with Pos.
	Extra *Position
	// File is the path the file had when it was opened, Offset the line's
	// first byte; Pos is the position just after the line.
	File   string
	Offset int64
	Pos    Position
}

// Options configure a Tailer.
type Options struct {
	// Patterns are paths or globs. Files matching a glob later are read
	// from their start. Names that look rotated (x.log.1, x.log.2.gz,
	// x.log-20261128) are never followed as live files.
	Patterns []string
	// Positions are the saved positions, from the store.
	Positions []Position
	// StartAtEnd starts files that have no saved position at their end
	// when they exist at the first Tick; files that appear later are read
	// from the start regardless.
	StartAtEnd bool
	// RotateWait is how long a rotated file is still read after its last
	// new line, for writers that have not reopened yet. Default 1m.
	RotateWait time.Duration
	// MaxLineBytes: longer lines are reported TooLong. Default
	// ingest.MaxLineBytes.
	MaxLineBytes int
	Logger       *slog.Logger
}

// Status is what a followed path looks like, for metrics and health.
type Status struct {
	Path string
	// Size and Offset of the current file; Behind is Size-Offset plus what
	// a rotated file still holds.
	Size, Offset, Behind int64
	// Err is the last error opening or reading the path (nil when read).
	Err error
	// LastRead is when a line was last read.
	LastRead time.Time

	dev, ino  uint64 // the current file, whose size Status looks up
	oldBehind int64
}

// Tailer follows the files of one source.
type Tailer struct {
	o      Options
	log    *slog.Logger
	saved  map[string]Position
	files  map[string]*follower
	ticked bool
	// lastTick is the time of the last Tick, firstTick of the first.
	lastTick, firstTick time.Time
	// savedAt is the latest time a saved position was taken at (zero
	// on a first start).
	savedAt time.Time
	// lookedAt is when the patterns were first looked at by the runs
	// whose positions were saved (the earliest "l=" of the saved path
	// positions; zero when none says so).
	lookedAt time.Time
	// look is what this run stamps on the path positions it reports
	// ("l="): the earliest look it knows of.
	look time.Time

	mu     sync.Mutex
	status map[string]Status
}

// New returns a Tailer; nothing is opened until the first Tick.
func New(o Options) *Tailer {
	if o.RotateWait <= 0 {
		o.RotateWait = time.Minute
	}
	if o.MaxLineBytes <= 0 {
		o.MaxLineBytes = ingest.MaxLineBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	t := &Tailer{o: o, log: o.Logger, saved: map[string]Position{}, files: map[string]*follower{}, status: map[string]Status{}}
	for _, p := range o.Positions {
		t.saved[p.Key] = p
		if at := headTime(p.Head); at.After(t.savedAt) {
			t.savedAt = at
		}
		if at := lookTime(p.Head); !at.IsZero() && (t.lookedAt.IsZero() || at.Before(t.lookedAt)) {
			t.lookedAt = at
		}
	}
	return t
}

// Close releases every descriptor.
func (t *Tailer) Close() {
	for _, f := range t.files {
		f.cur.close()
		f.old.close()
		for _, x := range f.extra {
			x.close()
		}
	}
}

// Status returns the state of every followed path, sorted by path.
func (t *Tailer) Status() []Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Status, 0, len(t.status))
	for _, s := range t.status {
		// The size now, not at the last report: a long read of a
		// backlog, or a reader held up downstream, still shows what
		// is behind.
		if fi, err := os.Stat(s.Path); err == nil && s.ino != 0 {
			if dev, ino := devIno(fi); dev == s.dev && ino == s.ino {
				s.Size = fi.Size()
				s.Behind = max(0, s.Size-s.Offset) + s.oldBehind
			}
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Tick finds new files, notices rotations and reads every new complete
// line. now is the wall time (for RotateWait and backoff).
func (t *Tailer) Tick(ctx context.Context, now time.Time, emit func(*Line) error) error {
	first := !t.ticked
	t.ticked = true
	if first {
		t.firstTick = now
		t.look = earliest(now, t.since())
	}
	t.lastTick = now
	live := map[string]bool{}
	for _, path := range t.expand() {
		live[path] = true
		if _, ok := t.files[path]; !ok {
			f := &follower{t: t, key: path, startAtEnd: first && t.o.StartAtEnd}
			if _, ok := t.saved[path]; !ok {
				// No position: the path is new (under a glob, or missing
				// at every look before). What was rotated beside it since
				// the patterns were first looked at, in this run or in one
				// before whose positions were saved, passed through it
				// between two looks or while stopped: not history. (A
				// first start, nothing saved: history.)
				f.fresh = t.since()
				if !first {
					f.fresh = earliest(t.firstTick, f.fresh)
				}
			} else if !first {
				f.fresh = t.firstTick // (start takes up what was saved)
			}
			t.files[path] = f
		}
	}
	paths := make([]string, 0, len(t.files))
	for p := range t.files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return nil
		}
		f := t.files[p]
		if !live[p] && f.cur == nil && f.old == nil && len(f.extra) == 0 {
			// A globbed file that is gone and fully read.
			delete(t.files, p)
			t.mu.Lock()
			delete(t.status, p)
			t.mu.Unlock()
			continue
		}
		n := 0
		err := f.tick(ctx, now, func(l *Line) error {
			t.stamp(f, &l.Pos)
			if err := emit(l); err != nil {
				return err
			}
			// What was reported is what a follower made again for the
			// path (gone under a glob, then back) starts from.
			t.saved[l.Pos.Key] = l.Pos
			f.note(l.Pos)
			if l.Extra != nil {
				t.saved[l.Extra.Key] = *l.Extra
				f.note(*l.Extra)
			}
			if n++; n%progressEvery == 0 {
				t.progress(f)
			}
			return nil
		})
		var stop emitError
		if errors.As(err, &stop) {
			return stop.err
		}
		t.report(f, err, now)
	}
	return nil
}

// since is the earliest time a path without a position may have had
// files rotated beside it that were never read: when the patterns were
// first looked at (saved "l="), else, for positions saved without it, the
// last save; zero on a first start.
func (t *Tailer) since() time.Time {
	if !t.lookedAt.IsZero() {
		return t.lookedAt
	}
	return t.savedAt
}

// stamp adds to a path's position when the patterns were first looked at
// ("l="), so that a restart knows it from any path's saved position.
func (t *Tailer) stamp(f *follower, p *Position) {
	if p.Key == f.key && p.Head != "" && !t.look.IsZero() {
		p.Head += " l=" + strconv.FormatInt(t.look.UnixNano(), 10)
	}
}

// lookTime is the "l=" of a saved head (zero when it has none).
func lookTime(head string) time.Time {
	ns, err := strconv.ParseInt(headField(head, "l"), 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// earliest is the earlier of two times, a zero one left out.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

type emitError struct{ err error }

func (e emitError) Error() string { return e.err.Error() }

func (t *Tailer) report(f *follower, err error, now time.Time) {
	st := f.status()
	st.Err = err
	if err != nil && (f.lastErr == nil || err.Error() != f.lastErr.Error() || now.Sub(f.lastLogged) > 5*time.Minute) {
		t.log.Warn("cannot read log file; retrying", "path", f.key, "err", err, "retry_in", f.backoff)
		f.lastLogged = now
	}
	if err == nil && f.lastErr != nil {
		t.log.Info("reading log file again", "path", f.key)
	}
	f.lastErr = err
	t.mu.Lock()
	t.status[f.key] = st
	t.mu.Unlock()
}

// status is what the follower looks like now.
func (f *follower) status() Status {
	st := Status{Path: f.key, LastRead: f.lastRead}
	if f.cur != nil {
		st.Offset, st.dev, st.ino = f.cur.off, f.cur.dev, f.cur.ino
		if fi, serr := f.cur.f.Stat(); serr == nil {
			st.Size = fi.Size()
			st.Behind = max(0, st.Size-st.Offset)
		}
	}
	for _, x := range append([]*file{f.old}, f.extra...) {
		if x == nil {
			continue
		}
		if fi, serr := x.f.Stat(); serr == nil {
			st.oldBehind += max(0, fi.Size()-x.off)
		}
	}
	st.Behind += st.oldBehind
	return st
}

// progressEvery is how many lines a long read reports its progress after.
const progressEvery = 4096

// progress updates a follower's status in the middle of a long read.
func (t *Tailer) progress(f *follower) {
	st := f.status()
	t.mu.Lock()
	if old, ok := t.status[f.key]; ok {
		st.Err = old.Err
	}
	t.status[f.key] = st
	t.mu.Unlock()
}

// expand lists the live files the patterns name now.
func (t *Tailer) expand() []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range t.o.Patterns {
		matches := []string{p}
		if strings.ContainsAny(p, "*?[") {
			matches, _ = filepath.Glob(p)
		}
		for _, m := range matches {
			if seen[m] || (m != p && looksRotated(m)) {
				continue
			}
			if fi, err := os.Stat(m); err == nil && fi.IsDir() {
				continue
			}
			seen[m] = true
			out = append(out, m)
		}
	}
	return out
}

var rotatedName = regexp.MustCompile(`(\.\d+|[-_.]\d{8}|[-_.]\d{4}-\d{2}-\d{2})(\.(gz|bz2|xz|zst))?$|\.(gz|bz2|xz|zst)$`)

func looksRotated(path string) bool { return rotatedName.MatchString(filepath.Base(path)) }

// follower follows one path.
type follower struct {
	t          *Tailer
	key        string
	startAtEnd bool // no saved position at the first Tick: start at the end
	started    bool
	missing    time.Time // when the path was first found gone
	cur        *file     // the file the path names
	old        *file     // the file it named before a rotation, read for late lines
	oldIdle    time.Time
	// extra are older rotated files still read for late lines (each
	// under its own key, ExtraKey): a file is let go only once it has
	// been quiet for RotateWait, never because another one rotated.
	extra []*file
	// recs are the positions saved under the path's ExtraKeys: older
	// rotated files still read, and files read to their end ("done ")
	// that may still be on disk.
	recs       map[string]Position
	grown      []recorded           // files a start found grown since their record
	pending    map[[2]uint64]string // files saved as unread, by identity: their keys
	copying    map[[2]uint64]bool   // copies of what was read of the file, maybe still being written
	recheck    bool                 // (a truncation: covered ones are looked at, changed or not)
	covered    map[[2]uint64]handle // copies of the file's start not read past yet
	lastRead   time.Time
	lastErr    error
	lastLogged time.Time
	backoff    time.Duration
	retryAt    time.Time
	// sibs are the rotated siblings seen at the last look, by identity,
	// with the fingerprint of their content; known are fingerprints of
	// files already accounted for (siblings seen, files finished).
	sibs  map[[2]uint64]sibling
	known map[string]bool
	neigh map[[2]uint64]bool // files beside a symlink's target at the last rotation
	// lastDone fingerprints the file read last before the current one:
	// saved with a short head, it bounds where a restart looks.
	lastDone string
	resumed  [2]uint64 // the copy of the rotated file a start read
	// taken are the copies (compressed since) of older rotated files
	// that a start drained from their own records.
	taken map[[2]uint64]bool
	// fresh is, for a path that appeared after the first Tick (a new
	// file under a glob), the time of the first Tick, and for a path
	// without a position at a restart, the time of the last save: its
	// siblings written since passed through it and are not history.
	fresh time.Time

	// startSaw, while the look after a start records what is there,
	// tells the siblings the start accounted for (see step).
	startSaw func(id [2]uint64, fi fs.FileInfo, h *handle) bool
}

func (f *follower) tick(ctx context.Context, now time.Time, emit func(*Line) error) error {
	if err := f.readExtra(now, emit); err != nil {
		return err
	}
	if copied, err := f.asCopy(f.old, emit); err != nil {
		return err
	} else if copied {
		f.old.close()
		f.old = nil
	}
	if f.old != nil {
		n, err := f.old.read(f.t.o.MaxLineBytes, false, emit)
		var stop emitError
		if errors.As(err, &stop) {
			return err
		}
		if err != nil {
			// The live file must not stall behind a rotated one that
			// cannot be read any more.
			f.t.log.Warn("rotated file unreadable; giving it up", "path", f.old.path, "err", err)
			f.old.close()
			f.old = nil
		} else if n > 0 {
			f.oldIdle, f.lastRead = now, now
		} else if now.Sub(f.oldIdle) >= f.t.o.RotateWait {
			if err := f.finishOld(emit); err != nil {
				return err
			}
		}
	}
	if now.Before(f.retryAt) {
		return f.lastErr
	}
	err := f.step(ctx, now, emit)
	var stop emitError
	if err != nil && !errors.As(err, &stop) {
		f.backoff = min(max(2*f.backoff, time.Second), 30*time.Second)
		f.retryAt = now.Add(f.backoff)
	} else {
		f.backoff, f.retryAt = 0, time.Time{}
	}
	return err
}

// readExtra reads the older rotated files for late lines, and finishes
// those quiet for RotateWait.
func (f *follower) readExtra(now time.Time, emit func(*Line) error) error {
	keep := f.extra[:0]
	var ferr error
	for _, x := range f.extra {
		if ferr != nil {
			keep = append(keep, x)
			continue
		}
		if copied, err := f.asCopy(x, emit); err != nil {
			ferr = err
			keep = append(keep, x)
			continue
		} else if copied {
			x.close()
			continue
		}
		n, err := x.read(f.t.o.MaxLineBytes, false, emit)
		var stop emitError
		switch {
		case errors.As(err, &stop):
			ferr = err
			keep = append(keep, x)
		case err != nil:
			f.t.log.Warn("rotated file unreadable; giving it up", "path", x.path, "err", err)
			x.close()
		case n > 0:
			x.idle, f.lastRead = now, now
			keep = append(keep, x)
		case now.Sub(x.idle) >= f.t.o.RotateWait:
			if err := f.finish(x, emit); err != nil {
				ferr = err
				keep = append(keep, x)
			}
		default:
			keep = append(keep, x)
		}
	}
	f.extra = keep
	return ferr
}

// asCopy lets go of a rotated file followed from its start, nothing read
// of it yet, whose content turns out to be all the current file's start:
// copytruncate's copy, found empty (at a start, or between two looks)
// and written since. The current file holds its lines: the copy's key
// says it read once the current file is read past it (else the key is
// let go and the copy covered), and it is looked at again as it changes.
// (A renamed file's late lines are not the next file's start.)
func (f *follower) asCopy(x *file, emit func(*Line) error) (bool, error) {
	if x == nil || x.off != 0 || x.skipping || f.cur == nil {
		return false, nil
	}
	fi, err := x.f.Stat()
	if err != nil || fi.Size() == 0 {
		return false, nil
	}
	h := &handle{path: x.path, f: x.f, dev: x.dev, ino: x.ino, size: fi.Size(), mtime: fi.ModTime()}
	buf := make([]byte, HeadBytes)
	n, _ := x.f.ReadAt(buf, 0)
	h.first, h.head = buf[:n], headOf(buf[:n])
	if !headMatches(f.cur.f, f.cur.head) {
		// The current file was truncated since (not handled yet): a
		// copy of what was read is read; one of more of it is read on
		// from where the current file was read to.
		if end, ok := f.cur.readCopy(h); ok && end <= f.cur.off {
			return f.copyRead(x, h, end, emit)
		}
		if h.size > f.cur.off && ((distinct(f.cur.head) && h.startsWith(f.cur.head)) || f.cur.startsAs(h)) {
			x.off = f.cur.off
		}
		return false, nil
	}
	if !f.cur.startsWithAll(h) {
		return false, nil
	}
	f.t.log.Info("a rotated file followed from its start is a copy of the log's start (copytruncate); the log holds its lines", "path", f.key, "copy", x.path)
	if end := h.linesEnd(); end > 0 && f.cur.off >= end {
		return f.copyRead(x, h, end, emit)
	}
	f.cover(h)
	return true, wrapEmit(emit(&Line{Pos: Position{Key: x.key}, File: x.path, PositionOnly: true}))
}

// copyRead lets go of x, a copy of what was read of the current file,
// saving it read to end under its key (the rotated key is let go, the
// record kept under a key of its own).
func (f *follower) copyRead(x *file, h *handle, end int64, emit func(*Line) error) (bool, error) {
	f.watch([2]uint64{h.dev, h.ino})
	l := &Line{File: x.path, Offset: end, PositionOnly: true}
	if extraKeyOf(f.key, x.key) {
		l.Pos = f.donePos(h, x.key, end)
	} else {
		// (the rotated key names the file before the path's: it is
		// let go, the record kept under a key of its own)
		l.Pos, l.Extra = f.donePos(h, f.recordKey(h.dev, h.ino), end), &Position{Key: x.key}
	}
	if err := wrapEmit(emit(l)); err != nil {
		return false, err
	}
	f.note(l.Pos)
	return true, nil
}

// retire moves the rotated file to the older ones still read for late
// lines, under a key of its own, so that the rotated key is free for the
// next one.
func (f *follower) retire(now time.Time, emit func(*Line) error) error {
	old := f.old
	if old == nil {
		return nil
	}
	f.old = nil
	old.key = f.slot()
	old.idle = f.oldIdle
	if old.idle.IsZero() {
		old.idle = now
	}
	f.extra = append(f.extra, old)
	f.remember(old.head)
	return wrapEmit(emit(&Line{Pos: old.position(), File: old.path, Offset: old.off, PositionOnly: true}))
}

// keepRecord saves the done record the rotated key holds under a key of
// its own before the rotated key is given to another file, when the file
// it names, or a compressed copy of it, is still on disk: a restart that
// finds it beside the path then knows it read. (Logrotate's order tells
// as much only while the file that takes the key is renamed beside it,
// not when that one is deleted; and a file's mtime may be that of the
// next one's birth.)
func (f *follower) keepRecord(emit func(*Line) error) error {
	r := f.t.saved[f.key+RotatedSuffix]
	if !strings.HasPrefix(r.Head, donePrefix) || !headKnown(fingerprintOf(r.Head)) || f.old.is(r.Dev, r.Inode) {
		return nil
	}
	var present []*handle
	defer func() { closeAll(present) }()
	for _, p := range f.places() {
		if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() {
			if h, err := openHandle(p); err == nil {
				present = append(present, h)
			}
		}
	}
	if !recordOnDisk(r, present) {
		return nil
	}
	r.Key = f.recordKey(r.Dev, r.Inode)
	if err := wrapEmit(emit(&Line{Pos: r, File: f.key, PositionOnly: true})); err != nil {
		return err
	}
	f.note(r)
	return nil
}

// note keeps track of what is saved under the path's ExtraKeys.
func (f *follower) note(p Position) {
	if !extraKeyOf(f.key, p.Key) {
		return
	}
	f.loadRecs()
	f.recs[p.Key] = p
}

// loadRecs takes the saved ExtraKeys of the path.
func (f *follower) loadRecs() {
	if f.recs != nil {
		return
	}
	f.recs = map[string]Position{}
	for k, p := range f.t.saved {
		if extraKeyOf(f.key, k) {
			f.recs[k] = p
		}
	}
}

// slot is a free ExtraKey: none of the files still read uses it, and the
// file its done record names is no longer among the path's siblings.
func (f *follower) slot() string {
	f.loadRecs()
	used := map[string]bool{}
	for _, x := range f.extra {
		used[x.key] = true
	}
	for _, k := range f.pending {
		used[k] = true
	}
	var present []*handle
	defer func() { closeAll(present) }()
	looked := false
	for n := 2; ; n++ {
		k := ExtraKey(f.key, n)
		if used[k] {
			continue
		}
		r, ok := f.recs[k]
		if ok && strings.HasPrefix(r.Head, donePrefix) {
			if !looked {
				looked = true
				for _, p := range f.places() {
					if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() {
						if h, err := openHandle(p); err == nil {
							present = append(present, h)
						}
					}
				}
			}
			if recordOnDisk(r, present) {
				continue
			}
		}
		return k
	}
}

// places are where the files of the path's records can be: its rotated
// siblings and, for a symlink into another directory, the files beside
// its target with the target's extension.
func (f *follower) places() []string {
	out := siblings(f.key)
	real, err := filepath.EvalSymlinks(f.key)
	if err != nil || filepath.Dir(real) == filepath.Dir(f.key) {
		return out
	}
	ents, err := os.ReadDir(filepath.Dir(real))
	if err != nil || len(ents) > 5000 {
		return out
	}
	for _, e := range ents {
		if p := filepath.Join(filepath.Dir(real), e.Name()); e.Type().IsRegular() && filepath.Ext(p) == filepath.Ext(real) {
			out = append(out, p)
		}
	}
	return out
}

// recordOnDisk reports whether the file a done record names, or a copy of
// it (compressed), is among hs.
func recordOnDisk(r Position, hs []*handle) bool {
	fp := fingerprintOf(r.Head)
	for _, h := range hs {
		if h.dev == r.Dev && h.ino == r.Inode {
			return true
		}
		if headKnown(fp) && (distinct(fp) || h.wholeLines(fp)) && h.extendsShort(fp) {
			return true
		}
	}
	return false
}

// linesEnd is where the last complete line of a plain file ends (0 when
// it holds none): a record of it says no more than its lines.
func (h *handle) linesEnd() int64 {
	if h.f == nil || h.gz {
		return 0
	}
	buf := make([]byte, 64<<10)
	for end := h.size; end > 0; {
		lo := max(0, end-int64(len(buf)))
		n, _ := h.f.ReadAt(buf[:end-lo], lo)
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return lo + int64(i) + 1
		}
		end = lo
	}
	return 0
}

// extendsShort is extends for any non-empty fingerprint.
func (h *handle) extendsShort(fp string) bool {
	n, ok := headLen(fp)
	return ok && n > 0 && n <= len(h.first) && headOf(h.first[:n]) == fingerprintOf(fp)
}

// markDone saves that a file (a rotated file or a copy) was read to off,
// under a key of its own, so that a restart that finds it again reads
// only what was written to it since.
func (f *follower) markDone(h *handle, key string, off int64, emit func(*Line) error) error {
	if !extraKeyOf(f.key, key) {
		key = f.recordKey(h.dev, h.ino)
	}
	p := f.donePos(h, key, off)
	if err := wrapEmit(emit(&Line{Pos: p, File: h.path, Offset: off, PositionOnly: true})); err != nil {
		return err
	}
	f.note(p)
	return nil
}

// recorded reports whether h is a file read to its end before (a done
// record names it); when it has grown since, it is kept to be read on from
// the record (readRecorded), else closed.
func (f *follower) recorded(h *handle, saved Position) bool {
	r, ok := f.recordOf(h)
	if !ok {
		return false
	}
	if (!h.gz && h.size == r.Offset) || (h.gz && !(f.ofSaved(h, saved) && h.wholeEnd() > r.Offset)) {
		// (a compressed copy holds no late lines; but one of the
		// path's saved content, recorded while the copy was still being
		// written, holds more than its record says: read on as below)
		h.close()
		return true
	}
	f.grown = append(f.grown, recorded{h, r})
	return true
}

// ofSaved reports whether h is a copy of the content a saved position
// names (by its head, what was read, or a line end inside the head).
func (f *follower) ofSaved(h *handle, saved Position) bool {
	if headKnown(saved.Head) && distinct(saved.Head) && h.startsWith(saved.Head) {
		return true
	}
	if holdsRead(saved, h) {
		return true
	}
	return readPrefix(saved, h)
}

// holdsRead reports whether h starts with what was read of the file a
// saved position names (its "r=" fingerprint; a few bytes of a line tell
// only when they are whole lines).
func holdsRead(saved Position, h *handle) bool {
	r := headField(saved.Head, "r")
	return headKnown(r) && (distinct(r) || h.wholeLines(r)) && h.startsWith(r)
}

type recorded struct {
	h *handle
	r Position
}

// readRecorded reads on the files read to their end before that have
// grown since (late lines), under their records' keys. A copy of the
// path's saved file that grew (copytruncate finishing it after its record
// was saved) holds what the path's position says was read: read only from
// past that, if anything.
func (f *follower) readRecorded(saved Position, emit func(*Line) error) error {
	grown := f.grown
	f.grown = nil
	defer func() {
		for _, g := range grown {
			g.h.close()
		}
	}()
	for i, g := range grown {
		grown[i].h = nil
		if readPrefix(saved, g.h) {
			f.t.log.Info("a copy of the log read before has grown (copytruncate finished it); the log held what it got", "path", f.key, "copy", g.h.path)
			err := f.markDone(g.h, g.r.Key, g.h.wholeEnd(), emit)
			g.h.close()
			if err != nil {
				return err
			}
			continue
		}
		from := g.r.Offset
		if saved.Offset > from && holdsRead(saved, g.h) {
			from = saved.Offset // (a copy of the path's file: read that far)
		}
		f.t.log.Info("a rotated file read before has grown; reading what was added", "path", f.key, "rotated", g.h.path, "offset", from)
		like := &file{key: g.r.Key, dev: g.r.Dev, ino: g.r.Inode, head: fingerprintOf(g.r.Head), off: from}
		if err := f.drain(g.h, like, emit); err != nil {
			return err
		}
	}
	return nil
}

// recordCopies gives done records, at a start that resumes the path's
// file, to the siblings that are copies of what was read of it
// (copytruncate's, its truncate to come), and notes those of more of it:
// taken for history at this start, a restart after the truncate would read
// them again.
func (f *follower) recordCopies(cur *file, emit func(*Line) error) error {
	for _, p := range siblings(f.key) {
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		h, err := openHandle(p)
		if err != nil {
			continue
		}
		if _, ok := f.recordOf(h); ok || h.gz || h.size == 0 || !cur.startsWithAll(h) {
			h.close()
			continue
		}
		if end := h.linesEnd(); end > 0 && h.size <= cur.off {
			err = f.markDone(h, f.key, end, emit)
			f.watch([2]uint64{h.dev, h.ino}) // (maybe still being written)
		} else {
			f.cover(h)
		}
		h.close()
		if err != nil {
			return err
		}
	}
	return nil
}

// cover notes a copy of the current file's start (copytruncate's, before
// its truncate): once the file has been read past it, it gets a done
// record, so that a restart after the truncate does not read it again.
//
// The copy may still be being written: it is looked at again when it
// changes (its record then says how much of it the file was read past).
func (f *follower) cover(h *handle) {
	if f.covered == nil {
		f.covered = map[[2]uint64]handle{}
	}
	f.watch([2]uint64{h.dev, h.ino})
	end := h.linesEnd()
	if end == 0 {
		return // a few bytes of a line tell no copy
	}
	f.covered[[2]uint64{h.dev, h.ino}] = handle{path: h.path, dev: h.dev, ino: h.ino, size: end, mtime: h.mtime, head: h.head}
}

// watch looks at a sibling again each time it changes (a copy maybe
// still being written).
func (f *follower) watch(id [2]uint64) {
	if f.copying == nil {
		f.copying = map[[2]uint64]bool{}
	}
	f.copying[id] = true
}

// withCovered wraps emit so that the line that reads the current file
// past a copy of its start carries the copy's done record (Extra): saved
// with the line, never apart from it.
func (f *follower) withCovered(emit func(*Line) error) func(*Line) error {
	if len(f.covered) == 0 {
		return emit
	}
	return func(l *Line) error {
		if l.Extra == nil && !l.PositionOnly && f.cur != nil {
			for id, h := range f.covered {
				if l.Pos.Offset < h.size || !headMatches(f.cur.f, f.cur.head) {
					continue
				}
				rec := f.donePos(&h, f.recordKey(h.dev, h.ino), h.size)
				l.Extra = &rec
				delete(f.covered, id)
				f.note(rec)
				break
			}
		}
		return emit(l)
	}
}

// markCovered saves done records for the copies the current file has been
// read past.
func (f *follower) markCovered(emit func(*Line) error) error {
	for id, h := range f.covered {
		if f.cur == nil || f.cur.off < h.size || !headMatches(f.cur.f, f.cur.head) {
			continue // (not read past, or truncated since: not yet known)
		}
		delete(f.covered, id)
		if !headMatches(f.cur.f, h.head) {
			continue // truncated meanwhile: the truncation handled it
		}
		if err := f.markDone(&h, f.key, h.size, emit); err != nil {
			return err
		}
	}
	return nil
}

// claimed reports whether a file on disk is taken up by a key already:
// followed, or named by a done record.
func (f *follower) claimed(h *handle) bool {
	if f.follows(h.dev, h.ino) {
		return true
	}
	_, ok := f.recordOf(h)
	return ok
}

// recordKey is the key of the done record of a file, or a free one.
func (f *follower) recordKey(dev, ino uint64) string {
	f.loadRecs()
	keys := make([]string, 0, len(f.recs))
	for k := range f.recs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if r := f.recs[k]; strings.HasPrefix(r.Head, donePrefix) && r.Dev == dev && r.Inode == ino {
			return k
		}
	}
	return f.slot()
}

// donePos is the done record of a file read to off.
func (f *follower) donePos(h *handle, key string, off int64) Position {
	head := donePrefix + h.head
	if !f.t.lastTick.IsZero() {
		head += " t=" + strconv.FormatInt(f.t.lastTick.UnixNano(), 10)
	}
	return Position{Key: key, Dev: h.dev, Inode: h.ino, Head: head, Offset: off}
}

// recordOf finds the done record of a file on disk: the same file by
// inode and head (an empty file only when it was born before the record),
// at least as long as what was read.
func (f *follower) recordOf(h *handle) (Position, bool) {
	f.loadRecs()
	keys := make([]string, 0, len(f.recs))
	for k := range f.recs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		r := f.recs[k]
		if !strings.HasPrefix(r.Head, donePrefix) {
			continue
		}
		fp := fingerprintOf(r.Head)
		if !h.startsWith(fp) || (!h.gz && h.size < r.Offset) {
			continue
		}
		if h.dev == r.Dev && h.ino == r.Inode {
			if !headKnown(fp) && h.bornAfter(headTime(r.Head)) {
				continue
			}
			return r, true
		}
		// A copy of it (compressed, or copied whole): by content, when
		// the fingerprint tells a file.
		if headKnown(fp) && (distinct(fp) || h.wholeLines(fp)) {
			if !h.gz && h.size > r.Offset && f.present(r.Dev, r.Inode) {
				// The file itself is there too: it holds what the
				// copy has more.
				r.Offset = h.size
			}
			return r, true
		}
	}
	return Position{}, false
}

// present reports whether a file with this identity is among the path's
// candidates.
func (f *follower) present(dev, ino uint64) bool {
	for _, p := range f.places() {
		if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() {
			if d, i := devIno(fi); d == dev && i == ino {
				return true
			}
		}
	}
	return false
}

// pend saves a file found beside the path as unread, under a key of its
// own, before anything newer is read: a restart then reads it from the
// start (or from where it got), whatever the positions saved after say.
func (f *follower) pend(h *handle, emit func(*Line) error) error {
	id := [2]uint64{h.dev, h.ino}
	if _, ok := f.pending[id]; ok {
		return nil
	}
	if f.pending == nil {
		f.pending = map[[2]uint64]string{}
	}
	key := f.slot()
	f.pending[id] = key
	head := h.head + " t=" + strconv.FormatInt(h.mtime.UnixNano(), 10)
	return wrapEmit(emit(&Line{Pos: Position{Key: key, Dev: h.dev, Inode: h.ino, Head: head}, File: h.path, PositionOnly: true}))
}

// unpend returns the key a file was saved under as unread ("" when it
// was not), forgetting it.
func (f *follower) unpend(h *handle) string {
	id := [2]uint64{h.dev, h.ino}
	key := f.pending[id]
	delete(f.pending, id)
	return key
}

// dropPending lets go of the key of a file saved as unread that turns out
// to need no reading.
func (f *follower) dropPending(h *handle, emit func(*Line) error) error {
	if key := f.unpend(h); key != "" {
		return wrapEmit(emit(&Line{Pos: Position{Key: key}, File: h.path, PositionOnly: true}))
	}
	return nil
}

// follow reads a plain rotated file from its start and follows it on for
// late lines, under a key of its own, until it is quiet for RotateWait.
// It takes h over.
func (f *follower) follow(h *handle, emit func(*Line) error) error {
	return f.followFrom(h, 0, emit)
}

// followFrom is follow from an offset.
func (f *follower) followFrom(h *handle, off int64, emit func(*Line) error) error {
	key := f.unpend(h)
	if key == "" {
		key = f.slot()
	}
	x, err := newFile(key, h.path, h.f, off)
	if err != nil {
		h.close()
		return err
	}
	h.f = nil
	x.idle = f.t.lastTick
	f.extra = append(f.extra, x)
	if err := wrapEmit(emit(&Line{Pos: x.position(), File: x.path, PositionOnly: true})); err != nil {
		return err
	}
	if _, err := x.read(f.t.o.MaxLineBytes, false, emit); err != nil {
		return err
	}
	return nil
}

// ExtraKey is the position key of the n-th (n >= 2) rotated file of path
// still read for late lines.
func ExtraKey(path string, n int) string {
	return path + " (rotated " + strconv.Itoa(n) + ")"
}

// extraKeyOf reports whether key is an ExtraKey of path.
func extraKeyOf(path, key string) bool {
	rest, ok := strings.CutPrefix(key, path+" (rotated ")
	if !ok || !strings.HasSuffix(rest, ")") {
		return false
	}
	n, err := strconv.Atoi(strings.TrimSuffix(rest, ")"))
	return err == nil && n >= 2
}

// follows reports whether the file is one still read for late lines.
func (f *follower) follows(dev, ino uint64) bool {
	if f.old.is(dev, ino) {
		return true
	}
	for _, x := range f.extra {
		if x.is(dev, ino) {
			return true
		}
	}
	return false
}

// copiedFrom reports whether h holds the content of a file still read
// for late lines (a compressed copy).
func (f *follower) copiedFrom(h *handle) bool {
	if f.old.copiedTo(h) {
		return true
	}
	for _, x := range f.extra {
		if x.copiedTo(h) {
			return true
		}
	}
	return false
}

// finish reads what is left of a rotated file, a last partial line
// included, and marks its position done.
func (f *follower) finish(old *file, emit func(*Line) error) error {
	// A last line without its newline stays unread: the done record
	// says where the lines end, so a restart that finds the file grown
	// (its writer finished the line) reads the line whole, once.
	if _, err := old.read(f.t.o.MaxLineBytes, false, emit); err != nil {
		return err
	}
	old.close()
	f.remember(old.head)
	done := Position{Key: old.key, Dev: old.dev, Inode: old.ino, Head: donePrefix + old.head, Offset: old.off}
	return wrapEmit(emit(&Line{Pos: done, File: old.path, Offset: old.off, PositionOnly: true}))
}

// finishOld reads what is left of the rotated file, a last partial line
// included, and marks its position done.
func (f *follower) finishOld(emit func(*Line) error) error {
	old := f.old
	if _, err := old.read(f.t.o.MaxLineBytes, true, emit); err != nil {
		return err
	}
	f.old = nil
	old.close()
	f.remember(old.head)
	done := Position{Key: old.key, Dev: old.dev, Inode: old.ino, Head: donePrefix + old.head, Offset: old.off}
	return wrapEmit(emit(&Line{Pos: done, File: old.path, Offset: old.off, PositionOnly: true}))
}

func wrapEmit(err error) error {
	if err != nil {
		return emitError{err}
	}
	return nil
}

func (f *follower) step(ctx context.Context, now time.Time, emit func(*Line) error) error {
	if !f.started {
		_, saved := f.t.saved[f.key]
		if saved {
			f.fresh = time.Time{} // start takes up what was rotated since
		}
		// The siblings as they were before the start looked, and the
		// files it reported positions of: logrotate may rename, copy and
		// truncate while it looks, and a file that appeared or changed
		// meanwhile was not accounted for by it (a copytruncate copy
		// made then holds lines the truncated path no longer has).
		before := siblingStats(f.key)
		took, tookHeads := map[[2]uint64]bool{}, map[string]bool{}
		for k, p := range f.t.saved {
			// Files read to their end before (done records).
			if fp := fingerprintOf(p.Head); (k == f.key+RotatedSuffix || extraKeyOf(f.key, k)) &&
				strings.HasPrefix(p.Head, donePrefix) && headKnown(fp) && distinct(fp) {
				tookHeads[fp] = true
			}
		}
		err := f.start(now, func(l *Line) error {
			for _, p := range []*Position{&l.Pos, l.Extra} {
				if p != nil {
					took[[2]uint64{p.Dev, p.Inode}] = true
					if fp := fingerprintOf(p.Head); headKnown(fp) && distinct(fp) {
						tookHeads[fp] = true
					}
				}
			}
			return emit(l)
		})
		if afterStart != nil {
			afterStart()
		}
		if f.sibs == nil || (err == nil && saved) {
			// What is there at the first try is accounted for (history,
			// or taken up by start); what appears later, while the path
			// is still missing, is not, unless a start from a saved
			// position took it up. Nor is what appeared or changed while
			// the start looked, unless it took it up: the next look
			// finds it new.
			f.sibs = nil
			f.startSaw = func(id [2]uint64, fi fs.FileInfo, h *handle) bool {
				if b, ok := before[id]; took[id] || (ok && b.size == fi.Size() && b.mtime.Equal(fi.ModTime())) {
					return true
				}
				// A copy of the current file is the next look's (read
				// from the offset read so far); one of another file the
				// start reported (renamed or compressed since) is known.
				if c := f.cur; c != nil && len(c.first) > 0 && len(h.first) > 0 &&
					(bytes.HasPrefix(h.first, c.first) || bytes.HasPrefix(c.first, h.first)) {
					return false
				}
				for fp := range tookHeads {
					if h.extends(fp) {
						return true
					}
				}
				return false
			}
			f.newSiblings()
			f.startSaw = nil
			f.newNeighbours()
		}
		if err != nil {
			return err
		}
		f.started = true
	}
	if f.cur == nil {
		nf, err := openFile(f.key, f.key, 0)
		if errors.Is(err, fs.ErrNotExist) && (f.old != nil || len(f.extra) > 0) {
			return nil // moved away; its writer has not reopened it yet
		}
		if err != nil {
			return err
		}
		f.cur = nf
	}
	// Has the path moved on to another file?
	fi, err := os.Stat(f.key)
	switch {
	case err == nil:
		f.missing = time.Time{}
		if dev, ino := devIno(fi); dev != f.cur.dev || ino != f.cur.ino {
			return f.rotate(now, emit)
		}
	case errors.Is(err, fs.ErrNotExist):
		// Moved or deleted and not yet recreated: the held descriptor
		// still reads whatever the writer appends (nginx until USR1),
		// until it has been quiet for RotateWait.
		if f.missing.IsZero() {
			f.missing = now
		}
		quiet := f.missing
		if f.lastRead.After(quiet) {
			quiet = f.lastRead
		}
		if now.Sub(quiet) >= f.t.o.RotateWait {
			return f.gone(emit)
		}
	default:
		return fmt.Errorf("stat %s: %w", f.key, err)
	}
	// Truncated, or rewritten from the start (copytruncate)?
	if trunc, err := f.cur.truncated(); err != nil {
		return err
	} else if trunc {
		return f.truncate(emit, nil)
	}
	// A copy made since the last look (copytruncate's copy, the truncate
	// maybe still to come)?
	if err := f.absorb(emit, nil); err != nil {
		return err
	}
	return f.readCurrent(now, emit)
}

// gone finishes a file whose path has been gone for RotateWait: whatever
// appears at the path later is read from its start.
func (f *follower) gone(emit func(*Line) error) error {
	if _, err := f.cur.read(f.t.o.MaxLineBytes, true, emit); err != nil {
		return err
	}
	f.t.log.Info("log file gone; will read it from the start if it comes back", "path", f.key)
	// Files made at the path after it went are later than this.
	since := f.missing
	if fi, err := f.cur.f.Stat(); err == nil && fi.ModTime().Before(since) {
		since = fi.ModTime()
	}
	f.done(f.cur.head)
	f.cur.close()
	f.cur = nil
	return wrapEmit(emit(&Line{Pos: f.gonePos(since), File: f.key, PositionOnly: true}))
}

// goneHead is the saved head of a path that names no file: dated ("t=")
// and, when known, with the file read last ("a="), so that a restart reads
// whole what was made at the path and rotated away since.
const goneHead = "gone"

func (f *follower) gonePos(since time.Time) Position {
	head := goneHead + " t=" + strconv.FormatInt(since.UnixNano(), 10)
	if f.lastDone != "" {
		head += " a=" + f.lastDone
	}
	return Position{Key: f.key, Head: head}
}

// rotate moves the current file aside, reading it on for late lines, and
// opens what the path names now from its start.
func (f *follower) rotate(now time.Time, emit func(*Line) error) error {
	// Truncated before it was moved (copytruncate, then a rename)? Then
	// its copy first and its new content from 0.
	var passed []*handle
	defer func() { closeAll(passed) }()
	if trunc, err := f.cur.truncated(); err != nil {
		return err
	} else if trunc {
		if err := f.truncate(emit, &passed); err != nil {
			return err
		}
	} else if err := f.absorb(emit, &passed); err != nil {
		return err
	}
	if _, err := f.cur.read(f.t.o.MaxLineBytes, false, emit); err != nil {
		return err
	}
	nf, err := openFile(f.key, f.key, 0)
	if err != nil {
		return err
	}
	if f.old != nil {
		if err := f.retire(now, emit); err != nil {
			nf.close()
			return err
		}
	}
	f.t.log.Info("log rotated; reading the new file and the old one for late lines", "path", f.key,
		"old_inode", f.cur.ino, "new_inode", nf.ino)
	f.old, f.oldIdle = f.cur, now
	f.old.key = f.key + RotatedSuffix
	if p := locate(f.key, f.old.dev, f.old.ino); p != "" {
		f.old.path = p // evidence names the file where its lines now are
	}
	f.done(f.old.head)
	f.cur = nf
	// Files that passed through the path between two looks (rotated
	// twice, or created, written and rotated): read whole, under the
	// path's key, after the old file has moved to its own.
	var hs, earlier []*handle
	more := append(f.newSiblings(), f.newNeighbours()...)
	more, passed = append(passed, more...), nil
	defer func() {
		// (those not taken, when the caller stops it half way)
		closeAll(more)
		closeAll(hs)
		closeAll(earlier)
	}()
	order := rotationOrder(f.key)
	oldAt, oldIn := order[f.old.path]
	for i, h := range more {
		more[i] = nil
		if f.follows(h.dev, h.ino) || f.copiedFrom(h) || (h.gz && !headKnown(h.head)) {
			// the old file itself, renamed or compressed; nothing
			err := f.dropPending(h, emit)
			h.close()
			if err != nil {
				return err
			}
			continue
		}
		if f.cur.startsWithAll(h) {
			// copytruncate's copy of the new file, not truncated yet:
			// the new file, read from 0, holds all of it.
			f.cover(h)
			err := f.dropPending(h, emit)
			h.close()
			if err != nil {
				return err
			}
			continue
		}
		if at, ok := order[h.path]; oldIn && ok && at < oldAt {
			// Rotated before the old file: copies of its earlier
			// content (copytruncate), not files that passed through
			// the path after it; read whole, and the old file is
			// still the one a writer may append to.
			earlier = append(earlier, h)
			continue
		}
		hs = append(hs, h)
	}
	for i, h := range earlier {
		earlier[i] = nil
		f.t.log.Info("a copy of the rotated file was made between two looks; reading it whole", "path", f.key, "copy", h.path)
		if err := f.drainFound(h, emit); err != nil {
			return err
		}
	}
	if len(hs) > 0 {
		// The newest of them is the one a writer that has not reopened
		// yet still writes to: it is followed for late lines, and the
		// file read so far is done.
		if err := f.retire(now, emit); err != nil {
			return err
		}
	}
	for i, h := range hs {
		hs[i] = nil
		f.t.log.Info("a file was rotated through the path between two looks; reading it", "path", f.key, "rotated", h.path)
		if i == len(hs)-1 && !h.gz && f.pending[[2]uint64{h.dev, h.ino}] != "" {
			// Saved as unread already: followed under that key.
			if err := f.follow(h, emit); err != nil {
				return err
			}
			break
		}
		if i == len(hs)-1 && !h.gz {
			of, err := newFile(f.key+RotatedSuffix, h.path, h.f, 0)
			if err != nil {
				h.close()
				return err
			}
			f.old, f.oldIdle = of, now
			break
		}
		if err := f.drainFound(h, emit); err != nil {
			return err
		}
	}
	if f.old != nil {
		f.done(f.old.head)
	}
	f.cur.after = f.lastDone
	// The old file's position moves to its own key as the new file takes
	// over the path's: both in one line, so they are saved together.
	l := &Line{Pos: f.cur.position(), File: f.cur.path, PositionOnly: true}
	if f.old != nil {
		if err := f.keepRecord(emit); err != nil {
			return err
		}
		old := f.old.position()
		l.Extra = &old
	}
	if err := wrapEmit(emit(l)); err != nil {
		return err
	}
	return f.readCurrent(now, emit)
}

// truncate handles copytruncate: lines written between the last read and
// the copy are in the copy, so it is drained first when it can be found.
func (f *follower) truncate(emit func(*Line) error, rest *[]*handle) error {
	f.t.log.Info("log truncated; reading from its start", "path", f.key, "inode", f.cur.ino)
	// Copies the file was to be read past are looked at again, changed
	// or not: one may have been finished, and the file truncated, before
	// the file was read that far (they hold what it did not read).
	f.recheck = true
	err := f.absorb(emit, rest)
	f.recheck = false
	if err != nil {
		return err
	}
	// A copy of the new content may have moved the file on already.
	if trunc, err := f.cur.truncated(); err != nil {
		return err
	} else if trunc {
		f.done(f.cur.head)
		f.cur.off, f.cur.skipping = 0, false
		f.cur.head = ""
		if err := f.cur.refreshHead(); err != nil {
			return err
		}
	}
	f.cur.after = f.lastDone
	if err := wrapEmit(emit(&Line{Pos: f.cur.position(), File: f.cur.path, PositionOnly: true})); err != nil {
		return err
	}
	_, err = f.cur.read(f.t.o.MaxLineBytes, false, emit)
	return err
}

// absorb reads the copies and rotated files that appeared beside the path
// since the last look: a copy of the current file (copytruncate) from the
// offset read so far, anything else whole. The current file's identity
// keys them, so that a restart finds them again as copies.
//
// With rest, files that are not copies are left to the caller (a
// rotation: they passed through the path).
func (f *follower) absorb(emit func(*Line) error, rest *[]*handle) error {
	hs := f.newSiblings()
	defer closeAll(hs)
	if len(hs) == 0 {
		return nil
	}
	cur := f.cur
	changed := false
	for i, h := range hs {
		hs[i] = nil
		if f.follows(h.dev, h.ino) || f.copiedFrom(h) {
			h.close()
			continue
		}
		if r, ok := f.recordOf(h); ok && h.size > 0 && h.wholeEnd() <= r.Offset {
			// Read to its end before: its done record says so (a start
			// took it up from a record of it, the path's own position
			// not saved yet).
			h.close()
			continue
		}
		id := [2]uint64{h.dev, h.ino}
		delete(f.copying, id)
		delete(f.covered, id) // (what it was at the last look, if anything)
		if !h.gz && h.size == 0 {
			// An empty file says nothing yet (copytruncate's copy may
			// be about to be written): looked at again when it changes.
			f.watch(id)
			h.close()
			continue
		}
		if !h.gz && h.size <= cur.off && headMatches(cur.f, cur.head) && cur.startsWithAll(h) {
			// (what was read is still the file's start: not truncated
			// and written again since, when its copy would be unread)
			// A copy of what was read of the file, maybe still being
			// written (copytruncate's copy, its truncate to come):
			// nothing to read yet; looked at again when it changes.
			f.watch(id)
			// Saved as read, so that a restart does not take it for
			// a file that passed through the path.
			var err error
			if end := h.linesEnd(); end > 0 {
				err = f.markDone(h, f.key, end, emit)
			}
			h.close()
			if err != nil {
				return err
			}
			continue
		}
		if end, ok := cur.readCopy(h); ok {
			// A copy of what was read, the file truncated since (its
			// copy caught while being written, then finished, maybe
			// compressed): nothing to read; looked at again when it
			// changes.
			if !h.gz {
				f.watch(id)
			}
			err := f.markDone(h, f.key, end, emit)
			h.close()
			if err != nil {
				return err
			}
			continue
		}
		if !h.gz && rest == nil && headMatches(cur.f, cur.head) && cur.startsWithAll(h) {
			// More of the file than was read, and all of it the file's
			// start: a copy being written (copytruncate's, caught with
			// a few bytes, maybe in the middle of a line, its truncate
			// to come). The file holds its lines and is read on from
			// the offset; the copy gets a done record once the file is
			// read past it, and is looked at again when it changes.
			f.cover(h)
			h.close()
			continue
		}
		// A copy of the file: its start is what was read (a short
		// fingerprint proves little), or the file still starts with
		// the copy's content (copied, not truncated yet).
		wholeHead := distinct(h.head) || int64(len(h.first)) == h.size || (h.gz && len(h.first) < HeadBytes)
		// (and a few bytes of a line tell no file: every line starts so)
		wholeHead = wholeHead && (distinct(h.head) || h.wholeLines(h.head))
		// The file no longer holds what was read (truncated, and
		// written again): a copy of its new content is unread.
		stale := headKnown(cur.head) && !headMatches(cur.f, cur.head)
		ofRead := headKnown(cur.head) && (distinct(cur.head) || h.wholeLines(cur.head)) && h.startsWith(cur.head) && (h.gz || h.size >= cur.off)
		if !ofRead && !h.gz && h.size >= cur.off && cur.startsAs(h) {
			// (shorter than the head: by the bytes read, kept)
			ofRead = true
		}
		ofNew := headKnown(h.head) && wholeHead && headMatches(cur.f, h.head) && (stale || h.gz || h.size >= cur.off)
		if ofRead || ofNew {
			from := cur.off
			if !ofRead && stale {
				from = 0
			}
			f.t.log.Info("log copied (copytruncate); reading the copy from the offset read", "path", f.key, "copy", h.path, "offset", from)
			// Keyed by the copy's head, which covers at least what
			// the file's did: a restart finds the copy by it.
			like := &file{key: f.key, dev: cur.dev, ino: cur.ino, mtime: h.mtime, head: h.head, off: from}
			copyHead, before := h.head, f.lastDone
			if err := f.drain(h, like, emit); err != nil {
				return err
			}
			fi, err := cur.f.Stat()
			if err != nil {
				return err
			}
			if headMatches(cur.f, copyHead) && fi.Size() >= like.off {
				// Not truncated yet: the copy was the file's start,
				// and may still be being written: looked at again
				// when it changes (its record then says how much).
				// It is no file read before this one ("a=" bounds
				// where a restart looks: a copy of the file's content
				// may hold what comes after what was read).
				f.lastDone = before
				if !h.gz {
					f.watch(id)
				}
				if stale {
					// (what was read of the file before it was
					// truncated is the file read before)
					f.done(cur.head)
					cur.off, cur.skipping, cur.head = like.off, false, ""
				} else {
					cur.off = max(cur.off, like.off)
				}
			} else {
				cur.off, cur.skipping, cur.head = 0, false, ""
			}
			if err := cur.refreshHead(); err != nil {
				return err
			}
		} else if rest == nil && stale && cur.startsWithAll(h) {
			// A few bytes of the file's new content (the truncation is
			// being handled: it is read from 0): copytruncate's copy
			// being written. The file holds its lines.
			f.cover(h)
			h.close()
			continue
		} else if rest != nil {
			// Left to the caller, which reads the file's new content
			// first: saved as found (unread) before that.
			if err := f.pend(h, emit); err != nil {
				h.close()
				return err
			}
			*rest = append(*rest, h)
			continue
		} else {
			f.t.log.Info("a file was rotated beside the path between two looks; reading it whole", "path", f.key, "rotated", h.path)
			if !h.gz {
				// Its writer may not have reopened yet: followed.
				if err := f.follow(h, emit); err != nil {
					return err
				}
				continue
			}
			like := &file{key: f.key, dev: cur.dev, ino: cur.ino, mtime: h.mtime, head: h.head}
			if err := f.drain(h, like, emit); err != nil {
				return err
			}
		}
		changed = true
	}
	if !changed {
		return nil
	}
	// The file's own position once every file found was taken up (a
	// position of the file's new content saved before a file found
	// beside it is would date that file as read).
	cur.after = f.lastDone
	return wrapEmit(emit(&Line{Pos: cur.position(), File: cur.path, Offset: cur.off, PositionOnly: true}))
}

// newSiblings opens the rotated siblings of the path that were not there
// at the last look and whose content is not known (a rename, or a
// compressed copy, of a file accounted for), oldest first. The first look
// only records what is there.
func (f *follower) newSiblings() []*handle {
	if f.known == nil {
		f.known = map[string]bool{}
	}
	// A listing that raced a rename (logrotate shifting .1 to .2 while
	// the names are read) may miss a file: the first look would not know
	// it, and a later one take it for new. Such a look is made again.
	known := f.known
	for try := 0; ; try++ {
		f.known = maps.Clone(known)
		out, now, raced := f.lookSiblings()
		if raced && try < 3 {
			closeAll(out)
			continue
		}
		f.sibs = now
		if len(f.known) > 256 {
			// Forget all but what is there now.
			f.known = map[string]bool{}
			for _, s := range now {
				f.known[s.head] = true
			}
		}
		return out
	}
}

// lookSiblings is one look of newSiblings; raced reports a name listed
// that was gone when opened.
func (f *follower) lookSiblings() (out []*handle, now map[[2]uint64]sibling, raced bool) {
	first := f.sibs == nil
	now = map[[2]uint64]sibling{}
	for _, group := range ingest.ReplayOrder(siblings(f.key)) {
		for _, p := range group {
			if p == f.key {
				continue
			}
			fi, err := os.Lstat(p)
			if errors.Is(err, fs.ErrNotExist) {
				raced = true
			}
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
			dev, ino := devIno(fi)
			id := [2]uint64{dev, ino}
			seen, ok := f.sibs[id]
			_, covered := f.covered[id]
			if ok && seen.size == fi.Size() && seen.mtime.Equal(fi.ModTime()) && !(f.recheck && covered) {
				now[id] = seen
				continue
			}
			h, err := openHandle(p)
			if errors.Is(err, fs.ErrNotExist) {
				raced = true
			}
			if err != nil {
				continue
			}
			if first && !f.fresh.IsZero() && !h.mtime.Before(f.fresh) {
				// Written since the last look, under a path that is
				// new: it passed through the path, the next look
				// reads it.
				h.close()
				continue
			}
			if h.partialGz() {
				// Being compressed (its original is still there): not
				// there yet; the next look sees it anew.
				h.close()
				continue
			}
			if first && f.startSaw != nil && !f.cur.is(dev, ino) && !f.follows(dev, ino) && !f.startSaw(id, fi, h) {
				// Made or changed while a start looked: the next look's.
				h.close()
				continue
			}
			now[id] = sibling{head: h.head, size: h.size, mtime: h.mtime}
			// The same file, grown or renamed, or one whose content is
			// accounted for; an inode may have been freed and reused.
			// (A copy being written is looked at again as it changes,
			// known or not; one that was empty and is now compressed
			// is gzip's output: known by its content.)
			looking := f.copying[id] && !h.gz
			if first || (!looking && ((ok && h.extends(seen.head)) || f.isKnown(h))) || f.cur.is(h.dev, h.ino) || f.follows(h.dev, h.ino) {
				f.known[h.head] = true
				h.close()
				continue
			}
			f.known[h.head] = true
			out = append(out, h)
		}
	}
	return out, now, raced
}

// afterStart, when set (by tests only), runs between a follower's start
// and the look that records what its start accounted for: what happens to
// the files meanwhile (logrotate racing a start) is what a test puts
// there.
var afterStart func()

// siblingStats is what each sibling of path looks like (by Lstat). A
// listing that races logrotate's renames may miss a file: the names are
// listed until two listings agree (or a few times), and what any of them
// found is kept.
func siblingStats(path string) map[[2]uint64]sibling {
	out := map[[2]uint64]sibling{}
	add := func(names []string) map[string][2]uint64 {
		ids := map[string][2]uint64{}
		for _, p := range names {
			if fi, err := os.Lstat(p); err == nil && p != path {
				dev, ino := devIno(fi)
				ids[p] = [2]uint64{dev, ino}
				out[ids[p]] = sibling{size: fi.Size(), mtime: fi.ModTime()}
			}
		}
		return ids
	}
	ids := add(siblings(path))
	for try := 0; try < 3; try++ {
		again := add(siblings(path))
		if maps.Equal(ids, again) {
			break
		}
		ids = again
	}
	return out
}

// sibling is what a rotated sibling looked like at the last look.
type sibling struct {
	head  string
	size  int64
	mtime time.Time
}

// newNeighbours opens the files that appeared beside a symlink's target
// since the last rotation, when the targets live in another directory
// than the link and share the new target's extension: targets the link
// pointed to between two looks. The first call only records.
func (f *follower) newNeighbours() []*handle {
	real, err := filepath.EvalSymlinks(f.key)
	if err != nil || filepath.Dir(real) == filepath.Dir(f.key) {
		return nil
	}
	first := f.neigh == nil
	ents, err := os.ReadDir(filepath.Dir(real))
	if err != nil || len(ents) > 5000 {
		return nil
	}
	now := map[[2]uint64]bool{}
	var out []*handle
	for _, e := range ents {
		p := filepath.Join(filepath.Dir(real), e.Name())
		if !e.Type().IsRegular() || filepath.Ext(p) != filepath.Ext(real) || p == real {
			continue
		}
		if _, live := f.t.files[p]; live {
			continue
		}
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		dev, ino := devIno(fi)
		id := [2]uint64{dev, ino}
		now[id] = true
		if first || f.neigh[id] || f.cur.is(dev, ino) || f.follows(dev, ino) {
			continue
		}
		h, err := openHandle(p)
		if err != nil {
			continue
		}
		if f.isKnown(h) {
			h.close()
			continue
		}
		out = append(out, h)
	}
	f.neigh = now
	// Oldest first, as siblings come: in the order the link pointed to
	// them, which their names tell with numbers read as numbers (access-9
	// before access-10, which a directory listing puts first). Not by
	// mtime: the writer may still have appended to the older one after the
	// newer one was made, and the newer one is where it goes on.
	sort.SliceStable(out, func(i, j int) bool { return naturalLess(out[i].path, out[j].path) })
	return out
}

// naturalLess orders names with their runs of digits compared as numbers.
func naturalLess(a, b string) bool {
	digits := func(s string) int {
		n := 0
		for n < len(s) && s[n] >= '0' && s[n] <= '9' {
			n++
		}
		return n
	}
	for a != "" && b != "" {
		if da, db := digits(a), digits(b); da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

// isKnown reports whether a file's content is, or extends, that of a file
// accounted for (a rotated file grown, or compressed after it grew).
func (f *follower) isKnown(h *handle) bool {
	if !headKnown(h.head) {
		return false // an empty file is no copy of anything
	}
	if f.known[h.head] {
		return true
	}
	for k := range f.known {
		if h.extends(k) {
			return true
		}
	}
	return false
}

// done notes the file read last (an empty one says nothing).
func (f *follower) done(head string) {
	if headKnown(head) {
		f.lastDone = head
	}
}

// remember notes a file's content as accounted for.
func (f *follower) remember(head string) {
	if f.known == nil {
		f.known = map[string]bool{}
	}
	f.known[head] = true
}

func closeAll(hs []*handle) {
	for _, h := range hs {
		h.close()
	}
}

// drain reads an opened file (plain or gzip) from like's offset to its
// end, reporting lines under like's key and identity, whose offset it
// advances. It closes h. Files are opened when found, so that a rotation
// running meanwhile cannot swap one for another.
func (f *follower) drain(h *handle, like *file, emit func(*Line) error) error {
	defer h.close()
	f.done(h.head)
	if like.f == nil {
		like.copied = h.first
	}
	r, err := h.content()
	if err != nil {
		return fmt.Errorf("drain %s: %w", h.path, err)
	}
	if _, err := io.CopyN(io.Discard, r, like.off); errors.Is(err, io.EOF) {
		f.t.log.Warn("rotated file is shorter than the saved offset; nothing to drain", "path", h.path, "offset", like.off)
		return nil
	} else if err != nil {
		return fmt.Errorf("drain %s: %w", h.path, err)
	}
	f.t.log.Info("reading rotated file from the saved offset", "path", h.path, "offset", like.off)
	lr := ingest.NewLineReader(r, like.off, f.t.o.MaxLineBytes)
	read := like.off
	for {
		line, off, err := lr.Next()
		if errors.Is(err, io.EOF) {
			return f.markDone(h, like.key, read, emit)
		}
		if err == nil && lr.Offset()-off == int64(len(line)) {
			// A last line without its newline: in a plain file its
			// writer may not be done with it (a file a restart follows
			// on); in any file it may be the half a copytruncate split
			// off, whose line the log holds whole (compressed since:
			// the copy was taken as the line was being written).
			return f.markDone(h, like.key, read, emit)
		}
		l := &Line{File: h.path, Offset: off}
		switch {
		case errors.Is(err, ingest.ErrTooLong):
			l.TooLong = true
		case err != nil:
			return fmt.Errorf("drain %s: %w", h.path, err)
		default:
			l.Text = line
		}
		like.off = lr.Offset()
		read = like.off
		l.Pos = like.position()
		if err := wrapEmit(emit(l)); err != nil {
			return err
		}
	}
}

// start applies the saved position, draining what was rotated while the
// daemon was down. A rotated file that is still plain (not compressed) and
// the newest of its siblings is followed on for RotateWait, as after a
// rotation seen live: its writer may not have reopened yet.
//
// The path may be missing (moved away, its writer not reopened yet): the
// saved files are still taken up, and the path is read from 0 when it
// appears.
func (f *follower) start(now time.Time, emit func(*Line) error) error {
	// A start that fails half way is tried again from what it reported.
	emit = f.t.remember(emit)
	cur, err := openFile(f.key, f.key, 0)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	missing := err
	if missing != nil {
		f.startAtEnd = false // when it appears, it is read whole
	}
	fail := func(err error) error {
		cur.close()
		f.old.close()
		f.old = nil
		for _, x := range f.extra {
			x.close()
		}
		f.extra = nil
		return err
	}
	old, ok := f.t.saved[f.key+RotatedSuffix]
	ok = ok && old.Head != "" && !strings.HasPrefix(old.Head, donePrefix)
	var extra []Position
	for k, x := range f.t.saved {
		if extraKeyOf(f.key, k) && x.Head != "" && !strings.HasPrefix(x.Head, donePrefix) {
			extra = append(extra, x)
		}
	}
	sort.Slice(extra, func(i, j int) bool { return extra[i].Key < extra[j].Key })
	// One file saved under two keys (a stop between the saves of a
	// rotation, or a file taken up again): read once, from the later
	// offset; the other key is let go.
	kept := map[[2]uint64]int{}
	drop := map[int]bool{}
	for i, x := range extra {
		id := [2]uint64{x.Dev, x.Inode}
		if j, seen := kept[id]; seen && x.Inode != 0 {
			if extra[j].Offset >= x.Offset {
				drop[i] = true
				continue
			}
			drop[j] = true
		}
		kept[id] = i
	}
	if j, seen := kept[[2]uint64{old.Dev, old.Inode}]; ok && seen && old.Inode != 0 {
		if old.Offset >= extra[j].Offset {
			drop[j] = true
		} else {
			done := Position{Key: old.Key, Dev: old.Dev, Inode: old.Inode, Head: donePrefix + fingerprintOf(old.Head), Offset: old.Offset}
			if err := wrapEmit(emit(&Line{Pos: done, File: f.key, PositionOnly: true})); err != nil {
				return fail(err)
			}
			ok = false
		}
	}
	for i, x := range extra {
		if drop[i] {
			if err := wrapEmit(emit(&Line{Pos: Position{Key: x.Key}, File: f.key, PositionOnly: true})); err != nil {
				return fail(err)
			}
			continue
		}
		if err := f.resumeExtra(x, cur, now, emit); err != nil {
			return fail(err)
		}
	}
	if ok {
		if err := f.resume(old, cur, now, emit); err != nil {
			return fail(err)
		}
	}
	saved, ok := f.t.saved[f.key]
	switch {
	case !ok && cur == nil:
	case cur == nil:
		if saved.Head != "" {
			if err := f.catchUp(saved, cur, now, emit); err != nil {
				return fail(err)
			}
		}
	case !ok:
		if f.startAtEnd {
			cur.off = cur.size
			cur.seekLineStart()
		}
		// A copy of the file's start beside it (copytruncate's, maybe
		// still being written) holds nothing the file does not: a done
		// record once the file is read past it.
		if err := f.recordCopies(cur, emit); err != nil {
			return fail(err)
		}
	case saved.Dev == cur.dev && saved.Inode == cur.ino && headMatches(cur.f, saved.Head) && cur.size >= saved.Offset && headKnown(saved.Head) &&
		(saved.Offset > 0 || distinct(saved.Head)):
		// (nothing read, and a few bytes that every line starts with:
		// the file may have been truncated and written again, as below)
		cur.off = saved.Offset // resume
		if err := f.recordCopies(cur, emit); err != nil {
			return fail(err)
		}
	case saved.Dev == cur.dev && saved.Inode == cur.ino:
		// Truncated (or rewritten) while down: the copy holds the rest,
		// and copies made after it are read whole.
		f.t.log.Info("log truncated while stopped; reading its copy from the saved offset, then the log from its start", "path", f.key)
		if err := f.catchUp(saved, cur, now, emit); err != nil {
			return fail(err)
		}
	case saved.Head == "":
		// The file was gone when last read (an undated position):
		// read what is there now whole.
	case strings.HasPrefix(saved.Head, goneHead+" "):
		// Gone when last read: what was made at the path since and
		// rotated away, whole, then the path from 0.
		if err := f.catchUp(saved, cur, now, emit); err != nil {
			return fail(err)
		}
	default:
		// Rotated while down: the saved file, then whatever was rotated
		// after it, then the new file from 0.
		if err := f.catchUp(saved, cur, now, emit); err != nil {
			return fail(err)
		}
	}
	if cur == nil && f.old == nil && len(f.extra) == 0 {
		if ok && saved.Head != "" {
			// Drained what was saved; the path starts afresh.
			if err := emit(&Line{Pos: f.gonePos(now), File: f.key, PositionOnly: true}); err != nil {
				return wrapEmit(err)
			}
		}
		return missing
	}
	if f.old != nil {
		f.done(f.old.head)
	}
	f.cur = cur
	if cur != nil && !ok && (f.sibs != nil || !f.fresh.IsZero()) {
		// The path appeared after a look found it missing (or could not
		// read it), or is new (under a glob, or without a position at a
		// restart): what was rotated beside it since is read before its
		// position is saved. That position is dated after those files,
		// and a restart that found only it would take them for history.
		if f.sibs == nil {
			// No look yet: the first one takes what was there before
			// fresh for history (and passes over what was written
			// since, which the absorb's look then reads).
			closeAll(f.newSiblings())
		}
		if err := f.absorb(emit, nil); err != nil {
			f.cur = nil
			return fail(err)
		}
	}
	if cur != nil {
		cur.after = f.lastDone
	}
	l := &Line{Pos: f.gonePos(now), File: f.key, PositionOnly: true}
	if cur != nil {
		l.Pos, l.Offset = cur.position(), cur.off
	}
	if f.old != nil {
		if err := f.keepRecord(emit); err != nil {
			return fail(err)
		}
		old := f.old.position()
		l.Extra = &old
	}
	return wrapEmit(emit(l))
}

// remember wraps emit so that the saved positions follow what was
// reported.
func (t *Tailer) remember(emit func(*Line) error) func(*Line) error {
	return func(l *Line) error {
		if err := emit(l); err != nil {
			return err
		}
		t.saved[l.Pos.Key] = l.Pos
		if l.Extra != nil {
			t.saved[l.Extra.Key] = *l.Extra
		}
		return nil
	}
}

// resumeExtra takes up an older rotated file that was still being read
// for late lines: followed on when it is there, a copy of it drained.
func (f *follower) resumeExtra(x Position, cur *file, now time.Time, emit func(*Line) error) error {
	for _, y := range f.extra {
		if y.key == x.Key {
			return nil // taken up by a start tried before
		}
	}
	h := findFile(f.key, x, cur, Position{}, f.t.files, f.claimed)
	done := Position{Key: x.Key, Dev: x.Dev, Inode: x.Inode, Head: donePrefix + fingerprintOf(x.Head), Offset: x.Offset}
	if h == nil {
		return wrapEmit(emit(&Line{Pos: done, File: f.key, PositionOnly: true}))
	}
	from := f.readThroughPath(x, h)
	if h.dev == x.Dev && h.ino == x.Inode && !h.gz {
		of, err := newFile(x.Key, h.path, h.f, from)
		if err != nil {
			return err
		}
		of.idle = now
		f.extra = append(f.extra, of)
		return nil
	}
	like := &file{key: x.Key, dev: x.Dev, ino: x.Inode, head: fingerprintOf(x.Head), off: from}
	path := h.path
	if f.taken == nil {
		f.taken = map[[2]uint64]bool{}
	}
	f.taken[[2]uint64{h.dev, h.ino}] = true
	if err := f.drain(h, like, emit); err != nil {
		return err
	}
	if r := f.recs[x.Key]; strings.HasPrefix(r.Head, donePrefix) && r.Inode != x.Inode {
		// The copy read is the record now (it is what is on disk).
		return nil
	}
	done.Offset = like.off
	return wrapEmit(emit(&Line{Pos: done, File: path, PositionOnly: true}))
}

// readThroughPath is the offset a rotated file saved at rec.Offset is
// taken up from. A file saved before it was written (copytruncate's copy,
// saved while still empty or part written) may since hold the start of
// the path's saved file, whose lines to its offset were read through the
// path: those are not read again from the copy.
func (f *follower) readThroughPath(rec Position, h *handle) int64 {
	saved, ok := f.t.saved[f.key]
	if !ok || (saved.Dev == rec.Dev && saved.Inode == rec.Inode) || saved.Offset <= rec.Offset {
		return rec.Offset
	}
	if !holdsRead(saved, h) {
		return rec.Offset
	}
	f.t.log.Info("a rotated file saved before it was written is a copy of the log (copytruncate); taking it up where the log was read to", "path", f.key, "copy", h.path, "offset", saved.Offset)
	if !h.gz && h.size < saved.Offset {
		return h.size
	}
	return saved.Offset
}

// resume takes up a rotated file that was still being read for late lines.
func (f *follower) resume(old Position, cur *file, now time.Time, emit func(*Line) error) error {
	h := findFile(f.key, old, cur, Position{}, f.t.files, f.claimed)
	// Done, the identity kept: the path's saved file was rotated after it.
	done := Position{Key: old.Key, Dev: old.Dev, Inode: old.Inode, Head: donePrefix + fingerprintOf(old.Head), Offset: old.Offset}
	if h == nil {
		return wrapEmit(emit(&Line{Pos: done, File: f.key, PositionOnly: true}))
	}
	from := f.readThroughPath(old, h)
	if h.dev == old.Dev && h.ino == old.Inode && !h.gz {
		of, err := newFile(old.Key, h.path, h.f, from)
		if err != nil {
			return err
		}
		f.old, f.oldIdle = of, now
		return nil
	}
	like := &file{key: old.Key, dev: old.Dev, ino: old.Inode, head: fingerprintOf(old.Head), off: from}
	path := h.path
	f.resumed = [2]uint64{h.dev, h.ino}
	if err := f.drain(h, like, emit); err != nil {
		return err
	}
	done.Offset = like.off
	return wrapEmit(emit(&Line{Pos: done, File: path, PositionOnly: true}))
}

// catchUp reads what was written to the path's saved file after its
// offset and every file rotated after it: the oldest sibling that is the
// saved file or a copy of it (by head: renamed, compressed, copied by
// copytruncate) from the offset, every later sibling whole. Only siblings
// rotated after prev (the file the path named before) and not last
// written before the position was taken are considered. When no sibling
// holds the saved file (deleted, or it was empty: an empty fingerprint
// names nothing), those siblings are all read whole.
func (f *follower) catchUp(saved Position, cur *file, now time.Time, emit func(*Line) error) error {
	hs, neigh := f.rotatedSince(saved, f.t.saved[f.key+RotatedSuffix], cur)
	defer closeAll(hs)
	defer closeAll(neigh)
	if err := f.readRecorded(saved, emit); err != nil {
		return err
	}
	if cur.is(saved.Dev, saved.Inode) {
		// The link still names the saved file: no other target is due.
		closeAll(neigh)
		neigh = nil
	}
	if err := f.catchUpTargets(saved, neigh, now, emit); err != nil {
		return err
	}
	anchor, bound := -1, -1
	// Nothing read, and a head of a few bytes of a line (the same bytes
	// may start the file's content after a truncation, and its copy's):
	// no sibling is the saved file, not even its inode; every one since
	// is read whole.
	nothing := saved.Offset == 0 && !distinct(saved.Head)
	if headKnown(saved.Head) && !nothing {
		read := headField(saved.Head, "r")
		for i, h := range hs {
			if !(h.dev == saved.Dev && h.ino == saved.Inode) && readPrefix(saved, h) {
				// A copy taken before the file was read to o (its
				// whole lines, by "p="; they tell a file as lines do).
				bound = i
				continue
			}
			if !distinct(saved.Head) && !h.wholeLines(saved.Head) && !(h.dev == saved.Dev && h.ino == saved.Inode) {
				// A few bytes of a line (nothing read, or only a last
				// partial line): they tell no file but the same inode
				// (every sibling since is read whole).
				continue
			}
			if !h.startsWith(saved.Head) {
				if read != "" && h.startsWith(read) && (h.gz || h.size >= saved.Offset) {
					anchor = i // a copy taken before the head grew
					break
				}
				continue
			}
			if h.gz || h.size >= saved.Offset {
				anchor = i
				break
			}
			// A copy of the saved file taken before it was read to
			// the offset (copytruncate seen while running): read.
			bound = i
		}
	}
	if anchor < 0 && bound >= 0 {
		f.t.log.Info("log copied before the saved offset and truncated; reading the files rotated after the copy whole", "path", f.key, "copy", hs[bound].path)
		// The copy is read: its record says so (it may have been
		// saved while the copy was still being written).
		if end := hs[bound].wholeEnd(); end > 0 {
			if err := f.markDone(hs[bound], f.key, end, emit); err != nil {
				return err
			}
		}
		closeAll(hs[:bound+1])
		hs = hs[bound+1:]
	} else if anchor < 0 && headKnown(saved.Head) && len(neigh) == 0 && headTime(saved.Head).IsZero() {
		// A symlink's old target, beside the new one (an undated
		// position)?
		if h := findFile(f.key, saved, cur, Position{}, f.t.files, f.claimed); h != nil {
			if h.dev == saved.Dev && h.ino == saved.Inode && !h.gz && f.old == nil {
				of, err := newFile(f.key+RotatedSuffix, h.path, h.f, saved.Offset)
				if err != nil {
					h.close()
					return err
				}
				f.old, f.oldIdle = of, now
				return nil
			}
			like := &file{key: f.key, dev: saved.Dev, ino: saved.Inode, head: fingerprintOf(saved.Head), off: saved.Offset}
			return f.drain(h, like, emit)
		}
	}
	if anchor < 0 && bound >= 0 {
	} else if anchor < 0 {
		if headTime(saved.Head).IsZero() && f.t.saved[f.key+RotatedSuffix].Key == "" {
			// Saved by a version that did not date positions: without
			// a date or a previous file, older siblings cannot be told
			// from newer ones.
			hs = nil
		}
		if headKnown(saved.Head) {
			f.t.log.Warn("the file last read was rotated away and is gone; reading the files rotated since whole", "path", f.key, "inode", saved.Inode, "files", len(hs))
		}
	} else {
		f.t.log.Info("log rotated while stopped; reading the rotated file from the saved offset", "path", f.key, "rotated", hs[anchor].path)
		h := hs[anchor]
		if anchor == len(hs)-1 && h.dev == saved.Dev && h.ino == saved.Inode && !h.gz {
			// The newest rotated file may still get late lines: follow
			// it (an older one taken up from the rotated key is still
			// followed, under a key of its own).
			if err := f.retire(now, emit); err != nil {
				return err
			}
			of, err := newFile(f.key+RotatedSuffix, h.path, h.f, saved.Offset)
			if err != nil {
				return err
			}
			hs[anchor] = nil
			f.old, f.oldIdle = of, now
			return nil
		}
		like := &file{key: f.key, dev: saved.Dev, ino: saved.Inode, mtime: h.mtime, head: fingerprintOf(saved.Head), off: saved.Offset}
		hs[anchor] = nil
		if err := f.drain(h, like, emit); err != nil {
			return err
		}
		// Later siblings: not modified before it, which guards against
		// naming schemes that order otherwise (compressing may date a
		// file by when it was compressed).
		rest := hs[anchor+1:]
		for i, n := range rest {
			if n.dev == h.dev && n.ino == h.ino || (!n.gz && !h.gz && n.mtime.Before(h.mtime)) {
				f.t.log.Info("a rotated file last written before the one the saved position names; not read", "path", f.key, "rotated", n.path, "saved", h.path)
				n.close()
				rest[i] = nil
			}
		}
		hs = rest
	}
	for i, n := range hs {
		if n == nil {
			continue
		}
		hs[i] = nil
		if i == len(hs)-1 && !n.gz {
			// The newest rotated file may still get late lines: follow
			// it (start saves its position with the path's), and finish
			// an older one taken up from the rotated key.
			if f.old != nil {
				if err := f.retire(now, emit); err != nil {
					n.close()
					return err
				}
			}
			of, err := newFile(f.key+RotatedSuffix, n.path, n.f, 0)
			if err != nil {
				n.close()
				return err
			}
			f.old, f.oldIdle = of, now
			return nil
		}
		next := &file{key: f.key, dev: n.dev, ino: n.ino, mtime: n.mtime, head: n.head}
		if err := f.drain(n, next, emit); err != nil {
			return err
		}
	}
	return nil
}

// rotatedSince opens the siblings that may hold what was written to the
// path after saved, oldest first: rotated after prev, and written since
// saved was taken.
func (f *follower) rotatedSince(saved, prev Position, cur *file) (sibs, neigh []*handle) {
	since := headTime(saved.Head)
	prevFP, prevSame := fingerprintOf(prev.Head), ""
	if !distinct(prevFP) {
		prevFP, prevSame = "", prevFP
	}
	if !headKnown(prevSame) {
		prevSame = ""
	}
	afterFP := headField(saved.Head, "a")
	if !headKnown(afterFP) || afterFP == fingerprintOf(saved.Head) {
		afterFP = ""
	}
	var out []*handle
	// A listing that raced logrotate renaming the siblings one up (a
	// name gone when looked at, or the names or the files they name
	// changed meanwhile) may have missed the file a name had: it is made
	// again (what a look kept to read on is let go).
	grown := len(f.grown)
	for try := 0; ; try++ {
		names := siblings(f.key)
		ids := siblingIDs(names)
		var raced bool
		out, raced = f.lookRotated(names, saved, cur, since, prevFP, prevSame, afterFP)
		if try >= 3 || (!raced && maps.Equal(ids, siblingIDs(siblings(f.key)))) {
			break
		}
		closeAll(out)
		for _, g := range f.grown[grown:] {
			g.h.close()
		}
		f.grown = f.grown[:grown]
	}
	return out, f.targetsSince(saved, prev, cur)
}

// siblingIDs is the file each name names (by Lstat).
func siblingIDs(names []string) map[string][2]uint64 {
	ids := make(map[string][2]uint64, len(names))
	for _, p := range names {
		if fi, err := os.Lstat(p); err == nil {
			dev, ino := devIno(fi)
			ids[p] = [2]uint64{dev, ino}
		}
	}
	return ids
}

// lookRotated is one look of rotatedSince over the names listed; raced
// reports a name that was gone when looked at.
func (f *follower) lookRotated(names []string, saved Position, cur *file, since time.Time, prevFP, prevSame, afterFP string) (out []*handle, raced bool) {
	for _, group := range ingest.ReplayOrder(names) {
		for _, p := range group {
			if _, live := f.t.files[p]; live || p == f.key {
				continue
			}
			fi, err := os.Lstat(p)
			if errors.Is(err, fs.ErrNotExist) {
				raced = true
			}
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
			h, err := openHandle(p)
			if errors.Is(err, fs.ErrNotExist) {
				raced = true
			}
			if err != nil {
				continue
			}
			switch {
			case f.old.is(h.dev, h.ino) || f.resumed == [2]uint64{h.dev, h.ino}:
				// The file before, taken up already from the rotated
				// key by its identity: what is older is older than it.
				closeAll(out)
				out = nil
			case f.follows(h.dev, h.ino), f.taken[[2]uint64{h.dev, h.ino}]:
				// (an older rotated file taken up already by its own key,
				// or its copy drained from its record: its head may be
				// the saved file's, copied by copytruncate)
			case !(h.dev == saved.Dev && h.ino == saved.Inode) && !(headKnown(saved.Head) && h.startsWith(saved.Head)) && f.recorded(h, saved):
				// (read to its end before, and its own record says so:
				// only what was written to it since is read, from its
				// record)
				continue
			case cur.is(h.dev, h.ino), prevSame != "" && h.head == prevSame, f.follows(h.dev, h.ino), f.copiedFrom(h):
				// (the rotated file taken up already, or a copy of it; an
				// older one still read for late lines)
			case cur != nil && cur.startsWithAll(h):
				// (copytruncate's copy of the live file, not truncated
				// yet: the live file, read from 0, holds all of it)
				f.cover(h)
			case (prevFP != "" && h.startsWith(prevFP)) || (afterFP != "" && h.startsWith(afterFP) && (distinct(afterFP) || h.wholeLines(afterFP))):
				// (an empty file's fingerprint bounds nothing, and its
				// inode may since belong to another file)
				closeAll(out) // older than the file before
				out = nil
			case !since.IsZero() && h.mtime.Before(since):
			case h.partialGz():
				// (being compressed: its original is still there)
			default:
				out = append(out, h)
				continue
			}
			h.close()
		}
	}
	return out, raced
}

// targetsSince opens, for a path that is a symlink into another
// directory, the files beside its target (same extension) written since
// saved was taken, the file before (prev) left out: the targets it
// pointed to since.
func (f *follower) targetsSince(saved, prev Position, cur *file) []*handle {
	since := headTime(saved.Head)
	real, err := filepath.EvalSymlinks(f.key)
	if err != nil || filepath.Dir(real) == filepath.Dir(f.key) || since.IsZero() {
		return nil
	}
	ents, err := os.ReadDir(filepath.Dir(real))
	if err != nil || len(ents) > 5000 {
		return nil
	}
	afterFP := headField(saved.Head, "a")
	if !headKnown(afterFP) || afterFP == fingerprintOf(saved.Head) {
		afterFP = ""
	}
	var out []*handle
	for _, e := range ents {
		p := filepath.Join(filepath.Dir(real), e.Name())
		if _, live := f.t.files[p]; live || !e.Type().IsRegular() || filepath.Ext(p) != filepath.Ext(real) {
			continue
		}
		h, err := openHandle(p)
		if err != nil {
			continue
		}
		isSaved := h.dev == saved.Dev && h.ino == saved.Inode && h.startsWith(saved.Head)
		if !isSaved && !f.follows(h.dev, h.ino) && f.recorded(h, saved) {
			continue // read to its end before; on from its record if grown
		}
		// (the target read before the saved one, by its content)
		before := !isSaved && afterFP != "" && h.startsWith(afterFP) && (distinct(afterFP) || h.wholeLines(afterFP))
		if before || cur.is(h.dev, h.ino) || f.follows(h.dev, h.ino) || (!isSaved && h.dev == prev.Dev && h.ino == prev.Inode) || (!isSaved && h.mtime.Before(since)) {
			h.close()
			continue
		}
		out = append(out, h)
	}
	return out
}

// catchUpTargets reads a symlink's targets since saved, oldest first: the
// saved one from its offset, the others whole, and the newest (a writer
// that has not reopened may still write to it) followed on for late lines.
// Positions are dated by the newest file read so far, so that a restart
// reads again only what came after.
func (f *follower) catchUpTargets(saved Position, hs []*handle, now time.Time, emit func(*Line) error) error {
	isSaved := func(h *handle) bool {
		return h.dev == saved.Dev && h.ino == saved.Inode && h.startsWith(saved.Head)
	}
	sort.SliceStable(hs, func(i, j int) bool {
		if a, b := isSaved(hs[i]), isSaved(hs[j]); a != b {
			return a
		}
		return hs[i].mtime.Before(hs[j].mtime)
	})
	dated := headTime(saved.Head)
	for i, h := range hs {
		hs[i] = nil
		like := &file{key: f.key, dev: h.dev, ino: h.ino, head: h.head}
		if isSaved(h) {
			like = &file{key: f.key, dev: saved.Dev, ino: saved.Inode, head: fingerprintOf(saved.Head), off: saved.Offset}
		} else {
			f.t.log.Info("the symlink pointed to this file while stopped; reading it whole", "path", f.key, "target", h.path)
		}
		if i == len(hs)-1 && !h.gz {
			if f.old != nil {
				if err := f.retire(now, emit); err != nil {
					h.close()
					return err
				}
			}
			of, err := newFile(f.key+RotatedSuffix, h.path, h.f, like.off)
			if err != nil {
				h.close()
				return err
			}
			f.old, f.oldIdle = of, now
			return nil
		}
		if h.mtime.After(dated) {
			dated = h.mtime
		}
		like.mtime = dated
		if !h.gz {
			// A writer may still write to any of them (the link was
			// swapped before it reopened): followed, under its own key.
			if err := f.followFrom(h, like.off, emit); err != nil {
				return err
			}
			continue
		}
		if err := f.drain(h, like, emit); err != nil {
			return err
		}
	}
	return nil
}

// file is an open file read with pread from off.
type file struct {
	key       string
	path      string
	f         *os.File
	dev, ino  uint64
	size      int64
	mtime     time.Time
	head      string
	first     []byte // the bytes head fingerprints (while the file holds them)
	after     string // fingerprint of the file read before this one
	off       int64
	idle      time.Time // when a rotated file last gave a line
	skipping  bool      // inside a line longer than the limit
	skipStart int64
	buf       []byte
	memo      headMemo // position's head once the read is past the head
	// copied, for a file drained from another (a rotated copy or the
	// same inode), is that file's first bytes: what was read of this one
	// up to the offset. They give its positions "r=" and "p=", by which a
	// restart finds the copy again when this file is gone.
	copied []byte
}

// headMemo is the head position made last for a read past the file's
// first bytes, with what it was made from: past them, the head depends
// on nothing the read changes, and each line would otherwise hash the
// head's line ends again.
type headMemo struct {
	head, after string
	mtime       time.Time
	first       []byte
	out         string
}

func openFile(key, path string, off int64) (*file, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	nf, err := newFile(key, path, fh, off)
	if err != nil {
		fh.Close()
		return nil, err
	}
	return nf, nil
}

// newFile reads the open fh from off; it takes fh over on success.
func newFile(key, path string, fh *os.File, off int64) (*file, error) {
	fi, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("open %s: is a directory", path)
	}
	dev, ino := devIno(fi)
	nf := &file{key: key, path: path, f: fh, dev: dev, ino: ino, size: fi.Size(), mtime: fi.ModTime(), off: off}
	if err := nf.refreshHead(); err != nil {
		return nil, err
	}
	return nf, nil
}

// copiedTo reports whether h holds this file's content (a compressed
// copy): by its start when the fingerprint is long enough to tell, else
// only when it is the same.
func (x *file) copiedTo(h *handle) bool {
	if x == nil || !headKnown(x.head) {
		return false
	}
	if distinct(x.head) {
		return h.startsWith(x.head)
	}
	return h.head == x.head
}

// startsWithAll reports whether x starts with all of a plain, non-empty
// file's content: h is a copy of x's start (copytruncate before its
// truncate).
func (x *file) startsWithAll(h *handle) bool {
	if x == nil || h.gz || h.size == 0 {
		return false
	}
	fi, err := x.f.Stat()
	if err != nil || fi.Size() < h.size {
		return false
	}
	a, b := make([]byte, 32<<10), make([]byte, 32<<10)
	for off := int64(0); off < h.size; {
		n := int(min(int64(len(a)), h.size-off))
		if got, _ := h.f.ReadAt(a[:n], off); got < n {
			return false
		}
		if got, _ := x.f.ReadAt(b[:n], off); got < n || !bytes.Equal(a[:n], b[:n]) {
			return false
		}
		off += int64(n)
	}
	return true
}

// is reports whether x is the file with this device and inode.
func (x *file) is(dev, ino uint64) bool { return x != nil && x.dev == dev && x.ino == ino }

func (x *file) close() {
	if x != nil && x.f != nil {
		x.f.Close()
		x.f = nil
	}
}

func (x *file) position() Position {
	return Position{Key: x.key, Dev: x.dev, Inode: x.ino, Head: x.positionHead(), Offset: x.off}
}

// positionHead is the head a position saves: the fingerprint with what
// tells the file's copies apart (see positionHeadFresh). Once the read is
// past the head and the first bytes held (its own, or a drained copy's),
// it no longer depends on the offset, so it is made once for them.
func (x *file) positionHead() string {
	n, _ := headLen(x.head)
	if x.off < int64(max(n, len(x.first), len(x.copied))) {
		return x.positionHeadFresh()
	}
	m := &x.memo
	if m.out == "" || m.head != x.head || m.after != x.after || !m.mtime.Equal(x.mtime) || !sameBytes(m.first, x.first) {
		*m = headMemo{head: x.head, after: x.after, mtime: x.mtime, first: x.first, out: x.positionHeadFresh()}
	}
	return m.out
}

// sameBytes reports whether a and b are the same slice (not only equal
// bytes): the first bytes held are replaced, never written over.
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func (x *file) positionHeadFresh() string {
	head := x.head
	if !x.mtime.IsZero() {
		// When it was taken tells later copies of the file from older
		// siblings (a short fingerprint matches many files).
		head += " t=" + strconv.FormatInt(x.mtime.UnixNano(), 10)
	}
	if n, _ := headLen(x.head); n < HeadBytes && x.after != "" && x.after != x.head {
		// and the file read before it bounds where its copies are.
		head += " a=" + x.after
	}
	if n, _ := headLen(x.head); x.off > 0 && x.off < int64(n) {
		// The fingerprint of what was read, when the head covers more:
		// a copy taken before the head grew is shorter than the head
		// but holds all that was read.
		if x.f != nil {
			buf := make([]byte, x.off)
			if got, _ := x.f.ReadAt(buf, 0); int64(got) == x.off {
				head += " r=" + headOf(buf)
			}
		} else if int64(len(x.copied)) >= x.off {
			head += " r=" + headOf(x.copied[:x.off])
		}
	}
	if p := x.linePrefixes(); p != "" {
		head += " p=" + p
	}
	return head
}

// maxPrefixes is how many line ends inside the head "p=" lists.
const maxPrefixes = 16

// linePrefixes fingerprints x's start up to each line end inside the
// head that was read ("p=n:hex,..."): a copy taken while copytruncate
// raced the reader is shorter than the head and than what was read, yet
// a restart that finds the file truncated tells it read by them.
func (x *file) linePrefixes() string {
	first := x.first
	switch {
	case len(first) > 0 && headMatchesBytes(first, x.head):
		first = first[:len(first)-1] // (its end is the head itself)
	case x.f == nil && len(x.copied) > 0:
		first = x.copied // drained from a copy: what was read of it
	default:
		return ""
	}
	var b strings.Builder
	n := 0
	for i, c := range first {
		if c != '\n' || int64(i+1) > x.off {
			continue
		}
		if n++; n > maxPrefixes {
			break
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(prefixOf(first[:i+1]))
	}
	return b.String()
}

// prefixOf is a short fingerprint of a file's first bytes ("n:hex").
func prefixOf(b []byte) string {
	sum := sha256.Sum256(b)
	return strconv.Itoa(len(b)) + ":" + hex.EncodeToString(sum[:4])
}

// readPrefix reports whether h holds no more than what a saved position
// says was read of its file, by the file's start up to a line end ("p="):
// a copy taken before the file was read that far.
func readPrefix(saved Position, h *handle) bool {
	ps := headField(saved.Head, "p")
	if ps == "" {
		return false
	}
	size, end := h.size, int64(0)
	if h.gz {
		size, end = h.gzLines()
	} else {
		end = h.linesEnd()
	}
	if end == 0 || size > saved.Offset || end > int64(len(h.first)) {
		return false
	}
	want := prefixOf(h.first[:end])
	for _, p := range strings.Split(ps, ",") {
		if p == want {
			return true
		}
	}
	return false
}

// donePrefix marks the saved head of a rotated file read to its end.
const donePrefix = "done "

// fingerprintOf is the fingerprint in a saved head: "[done ]n:hex[ t=ns]".
func fingerprintOf(head string) string {
	head = strings.TrimPrefix(head, donePrefix)
	fp, _, _ := strings.Cut(head, " ")
	return fp
}

// headKnown reports whether a saved head fingerprints any bytes: an empty
// file's does not, and its inode may since have been reused.
func headKnown(head string) bool {
	n, _ := headLen(head)
	return n > 0
}

// headField is a "k=v" field of a saved head.
func headField(head, k string) string {
	fs := strings.Fields(strings.TrimPrefix(head, donePrefix))
	if len(fs) == 0 {
		return ""
	}
	for _, f := range fs[1:] {
		if v, ok := strings.CutPrefix(f, k+"="); ok {
			return v
		}
	}
	return ""
}

// headTime is when a fingerprint was taken (zero when unknown).
func headTime(head string) time.Time {
	ns, err := strconv.ParseInt(headField(head, "t"), 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// refreshHead fingerprints the first bytes while the file is shorter than
// HeadBytes (the fingerprint grows with it).
func (x *file) refreshHead() error {
	if n, _ := headLen(x.head); x.head != "" && n >= HeadBytes {
		return nil
	}
	buf := make([]byte, HeadBytes)
	n, err := x.f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	x.head, x.first = headOf(buf[:n]), buf[:n]
	return nil
}

// readCopy reports whether a file (plain or compressed) is a copy of
// what was read of x, no longer than that: its bytes are x's first bytes
// as they were read (by the fingerprint past the head), and it holds a
// whole line (a few bytes of a line start many files). x may have been
// truncated since. end is where its last whole line ends.
func (x *file) readCopy(h *handle) (end int64, ok bool) {
	if len(x.first) == 0 || !headMatchesBytes(x.first, x.head) {
		return 0, false
	}
	n, end := h.size, int64(0)
	if h.gz {
		n, end = h.gzLines()
	} else if n <= x.off {
		end = h.linesEnd()
	}
	if n > x.off || end == 0 {
		return 0, false
	}
	if n <= int64(len(x.first)) {
		return end, int64(len(h.first)) == n && bytes.Equal(h.first, x.first[:n])
	}
	return end, h.startsWith(x.head)
}

// wholeEnd is where the last whole line of a file's content (plain or
// compressed) ends.
func (h *handle) wholeEnd() int64 {
	if h.gz {
		_, end := h.gzLines()
		return end
	}
	return h.linesEnd()
}

// gzLines is a compressed file's content length and where its last whole
// line ends (0, 0 when it cannot be read).
func (h *handle) gzLines() (size, end int64) {
	r, err := h.content()
	if err != nil {
		return 0, 0
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			end = size + int64(i) + 1
		}
		size += int64(n)
		if errors.Is(err, io.EOF) {
			return size, end
		}
		if err != nil {
			return 0, 0
		}
	}
}

// startsAs reports whether a plain file no longer than x's head holds
// x's first bytes as they were read (x may have been truncated since),
// and a whole line.
func (x *file) startsAs(h *handle) bool {
	if h.gz || h.size == 0 || h.size > int64(len(x.first)) || !headMatchesBytes(x.first, x.head) {
		return false
	}
	return int64(len(h.first)) == h.size && bytes.Equal(h.first, x.first[:h.size]) && bytes.IndexByte(h.first, '\n') >= 0
}

// headMatchesBytes reports whether b is what head fingerprints.
func headMatchesBytes(b []byte, head string) bool {
	n, ok := headLen(head)
	return ok && n == len(b) && headOf(b) == fingerprintOf(head)
}

// truncated reports whether the file shrank below what was read, or its
// first bytes changed (truncated and rewritten past the old size).
func (x *file) truncated() (bool, error) {
	fi, err := x.f.Stat()
	if err != nil {
		return false, err
	}
	x.size, x.mtime = fi.Size(), fi.ModTime()
	if x.size < x.off {
		return true, nil
	}
	return !headMatches(x.f, x.head), nil
}

// seekLineStart moves off back to the start of the line it is in, so that
// starting at the end never reports half a line.
func (x *file) seekLineStart() {
	for x.off > 0 {
		lo := max(0, x.off-4096)
		buf := make([]byte, x.off-lo)
		n, _ := x.f.ReadAt(buf, lo)
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			x.off = lo + int64(i) + 1
			return
		}
		x.off = lo
	}
}

// read reports every complete line after off. With final, a last line
// without its newline is reported too. It returns how many lines it read.
func (x *file) read(maxLine int, final bool, emit func(*Line) error) (int, error) {
	if size := max(256<<10, maxLine+1); cap(x.buf) < size {
		x.buf = make([]byte, size)
	}
	n := 0
	l := new(Line) // one for all the lines of this read: emit copies what it keeps
	for {
		buf := x.buf[:cap(x.buf)]
		got, err := x.f.ReadAt(buf, x.off)
		if err != nil && !errors.Is(err, io.EOF) {
			return n, fmt.Errorf("read %s: %w", x.path, err)
		}
		if got == 0 {
			return n, nil
		}
		// Truncated and rewritten since the last check (copytruncate)?
		// Then these bytes may be the new content: leave them to the
		// truncation handling of the next step.
		if !headMatches(x.f, x.head) {
			return n, nil
		}
		if err := x.refreshHead(); err != nil {
			return n, err
		}
		data := buf[:got]
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				break
			}
			*l = Line{File: x.path, Offset: x.off}
			switch {
			case x.skipping:
				l.Offset, l.TooLong, x.skipping = x.skipStart, true, false
			case i > maxLine:
				l.TooLong = true
			default:
				l.Text = data[:i]
			}
			x.off += int64(i + 1)
			data = data[i+1:]
			l.Pos = x.position()
			n++
			if err := wrapEmit(emit(l)); err != nil {
				return n, err
			}
		}
		if len(data) > maxLine || (x.skipping && len(data) > 0) {
			// Inside a line longer than the limit: skip what there is.
			if !x.skipping {
				x.skipping, x.skipStart = true, x.off
			}
			x.off += int64(len(data))
			data = nil
		}
		if got < len(buf) { // at the end of the file
			if final && len(data) > 0 {
				*l = Line{File: x.path, Offset: x.off, Text: data}
				x.off += int64(len(data))
				l.Pos = x.position()
				n++
				return n, wrapEmit(emit(l))
			}
			return n, nil // a partial line waits for its newline
		}
	}
}

func devIno(fi fs.FileInfo) (uint64, uint64) {
	if fi == nil {
		return 0, 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), st.Ino
	}
	return 0, 0
}

// fingerprint hashes a file's first HeadBytes (fewer when it is shorter)
// as "n:hex".
func fingerprint(r io.ReaderAt) (string, error) {
	buf := make([]byte, HeadBytes)
	n, err := r.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return headOf(buf[:n]), nil
}

func headOf(b []byte) string {
	sum := sha256.Sum256(b)
	return strconv.Itoa(len(b)) + ":" + hex.EncodeToString(sum[:8])
}

func headLen(head string) (int, bool) {
	n, _, ok := strings.Cut(fingerprintOf(head), ":")
	if !ok {
		return 0, false
	}
	v, err := strconv.Atoi(n)
	return v, err == nil
}

// headMatches reports whether r starts with the bytes head fingerprints.
func headMatches(r io.ReaderAt, head string) bool {
	n, ok := headLen(head)
	if !ok {
		return false
	}
	buf := make([]byte, n)
	got, err := r.ReadAt(buf, 0)
	if got < n && err != nil {
		return false
	}
	return headOf(buf) == fingerprintOf(head)
}

// readerHeadMatches is headMatches for a stream (a gzip file).
func readerHeadMatches(r io.Reader, head string) bool {
	n, ok := headLen(head)
	if !ok {
		return false
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return false
	}
	return headOf(buf) == fingerprintOf(head)
}

// rotationOrder numbers the rotated siblings of path, oldest first.
func rotationOrder(path string) map[string]int {
	out := map[string]int{}
	for _, group := range ingest.ReplayOrder(siblings(path)) {
		for _, p := range group {
			out[p] = len(out)
		}
	}
	return out
}

// siblings are the rotated files of path: path.1, path.2.gz, path-20261128.
func siblings(path string) []string {
	var out []string
	seen := map[string]bool{}
	for _, pat := range []string{path + ".*", path + "-*", path + "_*"} {
		ms, _ := filepath.Glob(escapeGlob(path) + pat[len(path):])
		for _, m := range ms {
			if !seen[m] && rotatedSuffix(m[len(path):]) {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	return out
}

// rotatedSuffix reports whether what follows a path's name may be a
// rotation's: it holds a digit (x.log.1, x.log-20261130, x.log.2.gz) or
// is a compression suffix (x.log.gz). An editor's x.log.swp, a tool's
// x.log.count or x.log.tmp is not the log's history.
func rotatedSuffix(suffix string) bool {
	if strings.ContainsAny(suffix, "0123456789") {
		return true
	}
	switch filepath.Ext(suffix) {
	case ".gz", ".bz2", ".xz", ".zst":
		return true
	}
	return false
}

func escapeGlob(s string) string {
	r := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`, `\`, `\\`)
	return r.Replace(s)
}

// candidates are the files a rotated file may be found among: the path's
// siblings, and the files beside its symlink's target.
func candidates(path string) []string {
	out := siblings(path)
	seen := map[string]bool{path: true}
	for _, p := range out {
		seen[p] = true
	}
	dirs := []string{filepath.Dir(path)}
	if real, err := filepath.EvalSymlinks(path); err == nil && filepath.Dir(real) != dirs[0] {
		dirs = append(dirs, filepath.Dir(real))
	}
	for _, d := range dirs {
		ents, err := os.ReadDir(d)
		if err != nil || len(ents) > 5000 {
			continue
		}
		for _, e := range ents {
			p := filepath.Join(d, e.Name())
			if !seen[p] && e.Type().IsRegular() {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// locate finds the file with this device and inode among path's
// candidates (where a rotation moved it).
func locate(path string, dev, ino uint64) string {
	for _, p := range candidates(path) {
		if d, i := devIno(statOrNil(p)); d == dev && i == ino {
			return p
		}
	}
	return ""
}

// handle is a file opened while searching for a rotated file.
type handle struct {
	path     string
	f        *os.File
	dev, ino uint64
	size     int64
	mtime    time.Time
	btime    time.Time // when the inode was made (zero when unknown)
	gz       bool
	head     string // fingerprint of the (decompressed) content
	first    []byte // its first HeadBytes
	cut      int    // compressed: 0 not looked at, 1 whole, 2 cut short
}

// extends reports whether the content starts with what fp fingerprints
// (a non-empty fingerprint).
func (h *handle) extends(fp string) bool {
	n, ok := headLen(fp)
	return ok && distinct(fp) && n <= len(h.first) && headOf(h.first[:n]) == fingerprintOf(fp)
}

// wholeLines reports whether the bytes fp fingerprints hold at least one
// complete line: a short fingerprint that ends a line tells a file as well
// as its lines do (a log line is rarely written twice).
func (h *handle) wholeLines(fp string) bool {
	n, ok := headLen(fp)
	return ok && n > 0 && n <= len(h.first) && bytes.IndexByte(h.first[:n], '\n') >= 0
}

// distinctBytes is how long a fingerprint must be to tell one file from
// another by its start alone (a few bytes of a line are shared by many).
const distinctBytes = 64

func distinct(fp string) bool {
	n, _ := headLen(fp)
	return n >= distinctBytes
}

// bornAfter reports whether the file was made after t (false when the
// file system does not say).
func (h *handle) bornAfter(t time.Time) bool { return !h.btime.IsZero() && h.btime.After(t) }

// birthTime is when the open file's inode was made, where the file system
// records it (statx); zero otherwise.
func birthTime(f *os.File) time.Time {
	var st unix.Statx_t
	if err := unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_BTIME, &st); err != nil || st.Mask&unix.STATX_BTIME == 0 {
		return time.Time{}
	}
	return time.Unix(st.Btime.Sec, int64(st.Btime.Nsec))
}

func openHandle(path string) (*handle, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := fh.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		fh.Close()
		return nil, fmt.Errorf("open %s: not a regular file", path)
	}
	h := &handle{path: path, f: fh, size: fi.Size(), mtime: fi.ModTime(), btime: birthTime(fh)}
	h.dev, h.ino = devIno(fi)
	var magic [2]byte
	n, _ := fh.ReadAt(magic[:], 0)
	h.gz = n == 2 && magic == [2]byte{0x1f, 0x8b}
	if !h.gz && h.size > 0 && strings.HasSuffix(path, ".gz") {
		// gzip's output with less than its magic written yet (not
		// there yet: its original is), or no gzip file at all.
		fh.Close()
		return nil, fmt.Errorf("open %s: not a gzip stream (yet)", path)
	}
	r, err := h.content()
	if err != nil {
		fh.Close()
		return nil, err
	}
	buf := make([]byte, HeadBytes)
	got, _ := io.ReadFull(r, buf)
	h.first = buf[:got]
	h.head = headOf(h.first)
	return h, nil
}

// partialGz reports whether a compressed file's stream is cut short:
// gzip is still writing it (its original is still there).
func (h *handle) partialGz() bool {
	if !h.gz {
		return false
	}
	if h.cut == 0 {
		h.cut = 1
		r, err := h.content()
		if err == nil {
			_, err = io.Copy(io.Discard, r)
		}
		if err != nil {
			h.cut = 2
		}
	}
	return h.cut == 2
}

// content reads the file from its start, decompressed.
func (h *handle) content() (io.Reader, error) {
	r := io.NewSectionReader(h.f, 0, 1<<62)
	if !h.gz {
		return r, nil
	}
	return gzip.NewReader(r)
}

// startsWith reports whether the content starts with the bytes head
// fingerprints.
func (h *handle) startsWith(head string) bool {
	r, err := h.content()
	return err == nil && readerHeadMatches(r, head)
}

func (h *handle) close() {
	if h != nil && h.f != nil {
		h.f.Close()
		h.f = nil
	}
}

// findFile finds and opens the file a saved position names: by inode and
// head, else a compressed or copytruncate copy of it by head (the file
// itself may have been truncated and rotated since), the oldest such copy
// rotated after prev (the file the path named before, whose position is
// saved under the rotated key). cur (the file the path names now) is never
// it. A short head matches many files: it is only matched among the
// path's own siblings, and not by files last written before it was taken.
//
// A look that raced logrotate renaming the siblings one up (a name gone
// when opened, or the names or the files they name changed meanwhile) may
// have missed the file: it is made again.
func findFile(path string, saved Position, cur *file, prev Position, followed map[string]*follower, claimed func(*handle) bool) *handle {
	for try := 0; ; try++ {
		names := siblings(path)
		ids := siblingIDs(names)
		h, raced := findFileIn(names, path, saved, cur, prev, followed, claimed)
		if try >= 3 || (!raced && maps.Equal(ids, siblingIDs(siblings(path)))) {
			return h
		}
		h.close()
	}
}

// findFileIn is one look of findFile, names the path's siblings listed.
func findFileIn(names []string, path string, saved Position, cur *file, prev Position, followed map[string]*follower, claimed func(*handle) bool) (_ *handle, raced bool) {
	var copies []*handle
	defer func() { closeAll(copies) }()
	n, _ := headLen(saved.Head)
	weak := n < HeadBytes
	since := headTime(saved.Head)
	sibs := map[string]bool{}
	var order []string
	for _, g := range ingest.ReplayOrder(names) {
		for _, p := range g {
			sibs[p] = true
			order = append(order, p)
		}
	}
	for _, p := range candidates(path) {
		if _, live := followed[p]; !sibs[p] && !live {
			// (a file followed in its own right is no copy)
			order = append(order, p)
		}
	}
	prevFP := fingerprintOf(prev.Head)
	if n, _ := headLen(prevFP); n == 0 {
		prevFP = "" // an empty file's fingerprint matches every file
	}
	for _, p := range order {
		h, err := openHandle(p)
		if errors.Is(err, fs.ErrNotExist) && sibs[p] {
			raced = true
		}
		if err != nil {
			continue
		}
		switch {
		case cur.is(h.dev, h.ino):
		case claimed != nil && claimed(h):
			// (taken up by another key: a file is one key's to read)
		case h.dev == saved.Dev && h.ino == saved.Inode && h.startsWith(saved.Head) &&
			(headKnown(saved.Head) || since.IsZero() || !h.bornAfter(since)):
			// (an empty file's fingerprint proves nothing, and its inode
			// may have been freed and reused by a file born later)
			return h, raced
		case !headKnown(saved.Head):
		case prev.Key != "" && sibs[p] && ((h.dev == prev.Dev && h.ino == prev.Inode) || (prevFP != "" && h.startsWith(prevFP))):
			// The file before the saved one: copies are rotated after it.
			closeAll(copies)
			copies = nil
		case weak && (!sibs[p] || (!since.IsZero() && h.mtime.Before(since))):
		case (h.gz || h.size >= saved.Offset) && h.startsWith(saved.Head) && (distinct(saved.Head) || h.wholeLines(saved.Head)) && !h.partialGz():
			// (a copy by content, when the fingerprint tells a file: a
			// few bytes of a line start many; one being compressed is
			// not there yet, its original is)
			copies = append(copies, h)
			continue
		}
		h.close()
	}
	if len(copies) > 0 {
		h := copies[0]
		copies = copies[1:]
		return h, raced
	}
	return nil, raced
}

func statOrNil(p string) fs.FileInfo {
	fi, err := os.Stat(p)
	if err != nil {
		return nil
	}
	return fi
}

// readCurrent reads the current file on from its offset, marking copies
// its lines cover as read, and notes when it last got a line.
func (f *follower) readCurrent(now time.Time, emit func(*Line) error) error {
	n, err := f.cur.read(f.t.o.MaxLineBytes, false, f.withCovered(emit))
	if n > 0 {
		f.lastRead = now
	}
	if err != nil {
		return err
	}
	return f.markCovered(emit)
}

// drainFound reads h, a file found between two looks, to its end: under
// the key it was saved under as unread, or else under the path's key from
// its start (that position saved first, so that a restart knows it).
func (f *follower) drainFound(h *handle, emit func(*Line) error) error {
	like := &file{key: f.key, dev: h.dev, ino: h.ino, mtime: h.mtime, head: h.head}
	if k := f.unpend(h); k != "" {
		like.key = k
	} else if err := wrapEmit(emit(&Line{Pos: like.position(), File: h.path, PositionOnly: true})); err != nil {
		h.close()
		return err
	}
	return f.drain(h, like, emit)
}
