package detect

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
	"net/netip"

	"github.com/spraywatch/spraywatch/ingest"
)

// AttemptKey identifies an attempts row before aggregation.
type AttemptKey struct {
	Source     string
	Minute     int64
	IP         netip.Addr
	Identity   string
	Credential string
	Outcome    ingest.Outcome
}

// AttemptCount is the aggregated count for a key and its first line.
type AttemptCount struct {
	Count int64
	Pos   ingest.Pos
}

// Attempts aggregates events into per-minute rows, and routine successes
// into hourly ones (AddRoutine), until they are flushed.
//
// It runs on the goroutine that counts and judges every line, and under a
// flood nearly every line is a row of its own, so a line must cost one
// hash and one probe: rows live in chunks in the order they were made, and
// an open-addressing table of 64-bit words (a tag of the row's hash and
// the row's number) finds them. The table holds no pointers, so the
// collector never scans it, and the chunks are reused from flush to flush.
//
// An aggregate made by NewDeferredAttempts only logs the lines it is given,
// and aggregates them, in order, when it is first read: on the goroutine
// that writes it, off the one that counts.
type Attempts struct {
	// slots is the table, a power of two long: 0 is free, otherwise the
	// upper half of the row's hash and the row's number plus one.
	slots  []uint64
	chunks [][]pendingRow
	n      int // rows made, including those Take emptied
	live   int // rows with a count

	deferred bool
	lines    []loggedLine // counted, not yet aggregated
}

// loggedLine is what a row needs of a line a deferred aggregate was given:
// its row's key and hash, hashed while the line's strings are in the
// counting core's cache (the reader then finds the row by the hash and
// compares the strings by their pointers, interned as they are), its
// minute and position.
type loggedLine struct {
	rowKey
	h      uint64
	minute int64
	pos    ingest.Pos
}

// pendingRow is an aggregated row: a minute's events of one key, or an
// hour's routine successes of one (address, identity, credential).
type pendingRow struct {
	// What a line that finds its row reads comes first, within two
	// cache lines.
	h     uint64
	count int64 // 0: emptied by Take, waiting to be found again
	// first and last are a routine row's first and last Unix minutes (a
	// per-minute row's minute).
	first, last int64
	rowKey
	pos ingest.Pos // the first line
}

// rowKey is what tells rows apart.
type rowKey struct {
	source, identity, credential string
	ip                           netip.Addr
	slot                         int64 // Unix minute, or a routine row's hour (see hourOf)
	kind                         uint8 // the outcome, or routineKind
}

// routineKind is the kind of a row of routine successes.
const routineKind = 0xff

// rowChunk rows are allocated at a time; keptChunks of them survive a
// Clear (a daemon's batch of a flood is about 25,000 rows).
const (
	rowChunk   = 1024
	keptChunks = 32
)

// rowSeed seeds the rows' hashes, per process: an attacker who chooses the
// identities and keys cannot choose them to collide.
var rowSeed = maphash.MakeSeed()

// NewAttempts returns an empty aggregate.
func NewAttempts() *Attempts { return &Attempts{} }

// NewDeferredAttempts returns an empty aggregate that defers the work of
// Add and AddRoutine to its first reader (Len, Each, Take, Absorb, Clear,
// or a store writing it), which makes the same rows from the lines in the
// order they came. A replay hands its batches to a writer goroutine, and
// so moves that work off the goroutine that counts and judges every line.
func NewDeferredAttempts() *Attempts { return &Attempts{deferred: true} }

// Add counts one event.
func (a *Attempts) Add(ev *ingest.Event) {
	if a.deferred {
		a.log(ev, uint8(ev.Outcome))
		return
	}
	a.add(ev, uint8(ev.Outcome))
}

// AddRoutine counts a routine success (see RoutineMinutes): the engine
// judged that nothing around it failed.
func (a *Attempts) AddRoutine(ev *ingest.Event) {
	if a.deferred {
		a.log(ev, routineKind)
		return
	}
	a.add(ev, routineKind)
}

func (a *Attempts) log(ev *ingest.Event, kind uint8) {
	a.lines = append(a.lines, loggedLine{pos: ev.Pos})
	l := &a.lines[len(a.lines)-1]
	l.rowKey, l.minute = keyOf(ev, kind)
	l.h = a.hash(&l.rowKey)
}

// keyOf is the key of ev's row of kind (a per-minute row of its outcome,
// or an hourly one of routine successes), and ev's Unix minute.
func keyOf(ev *ingest.Event, kind uint8) (rowKey, int64) {
	m := ev.Time.Unix() / 60
	k := rowKey{source: ev.Source, identity: ev.Identity, credential: ev.Credential, ip: ev.IP, slot: m, kind: kind}
	if kind == routineKind {
		k.slot = hourOf(m)
	}
	return k, m
}

// add counts ev in its row of kind.
func (a *Attempts) add(ev *ingest.Event, kind uint8) {
	k, m := keyOf(ev, kind)
	a.addKey(&k, a.hash(&k), m, &ev.Pos)
}

// addKey counts a line of minute m and position pos in row k of hash h.
func (a *Attempts) addKey(k *rowKey, h uint64, m int64, pos *ingest.Pos) {
	r, made := a.findHashed(k, h)
	if !made && r.count > 0 {
		r.count++
		r.first, r.last = min(r.first, m), max(r.last, m)
		return
	}
	r.count, r.pos, r.first, r.last = 1, *pos, m, m
	a.live++
}

// settle aggregates the lines a deferred aggregate logged.
func (a *Attempts) settle() {
	if len(a.lines) == 0 {
		return
	}
	for i := range a.lines {
		l := &a.lines[i]
		a.addKey(&l.rowKey, l.h, l.minute, &l.pos)
	}
	clear(a.lines) // drop the strings they hold
	a.lines = a.lines[:0]
}

// findHashed returns row k, of hash h, making an empty one (made) if there
// is none.
func (a *Attempts) findHashed(k *rowKey, h uint64) (*pendingRow, bool) {
	if 4*(a.n+1) > 3*len(a.slots) {
		a.grow()
	}
	mask := uint64(len(a.slots) - 1)
	tag := h &^ (1<<32 - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := a.slots[i]
		if s == 0 {
			a.slots[i] = tag | uint64(a.n+1)
			return a.newRow(k, h), true
		}
		if s&^(1<<32-1) == tag {
			if r := a.row(int(s&(1<<32-1)) - 1); r.h == h && r.rowKey == *k {
				return r, false
			}
		}
	}
}

// newRow appends an empty row for k.
func (a *Attempts) newRow(k *rowKey, h uint64) *pendingRow {
	c := a.n / rowChunk
	if c == len(a.chunks) {
		a.chunks = append(a.chunks, make([]pendingRow, rowChunk))
	}
	r := &a.chunks[c][a.n%rowChunk]
	r.rowKey, r.h = *k, h
	a.n++
	return r
}

func (a *Attempts) row(i int) *pendingRow { return &a.chunks[i/rowChunk][i%rowChunk] }

// grow doubles the table and places every row again.
func (a *Attempts) grow() {
	a.resize(max(1024, 2*len(a.slots)))
	for i := range a.n {
		a.place(a.row(i).h, i)
	}
}

func (a *Attempts) resize(n int) {
	if n == len(a.slots) {
		clear(a.slots)
	} else {
		a.slots = make([]uint64, n)
	}
}

// place puts row i, of hash h, in the first free slot of its probe.
func (a *Attempts) place(h uint64, i int) {
	mask := uint64(len(a.slots) - 1)
	for j := h & mask; ; j = (j + 1) & mask {
		if a.slots[j] == 0 {
			a.slots[j] = h&^(1<<32-1) | uint64(i+1)
			return
		}
	}
}

// hash is k's 64-bit hash: each string hashed where it lies, folded with
// the fixed fields.
func (a *Attempts) hash(k *rowKey) uint64 {
	h := fold(maphash.String(rowSeed, k.identity), maphash.String(rowSeed, k.credential))
	h = fold(h, maphash.String(rowSeed, k.source)^uint64(k.slot))
	ip := k.ip.As16()
	tag := uint64(k.ip.BitLen())<<8 | uint64(k.kind)
	if z := k.ip.Zone(); z != "" {
		tag ^= maphash.String(rowSeed, z)
	}
	return fold(fold(h, binary.LittleEndian.Uint64(ip[:8])), binary.LittleEndian.Uint64(ip[8:])^tag)
}

// fold mixes b into a (a multiply-xor step, as wyhash's).
func fold(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a^0xa0761d6478bd642f, b^0xe7037ed1a0b428db)
	return hi ^ lo
}

// Absorb adds the counts of newer to a, keeping a's first positions, and
// leaves newer as it was. The lines a deferred newer has not aggregated
// yet go into a's rows directly.
func (a *Attempts) Absorb(newer *Attempts) {
	a.settle()
	for i := range newer.n {
		nr := newer.row(i)
		if nr.count == 0 {
			continue
		}
		r, made := a.findHashed(&nr.rowKey, nr.h)
		if made || r.count == 0 {
			r.count, r.pos, r.first, r.last = nr.count, nr.pos, nr.first, nr.last
			a.live++
			continue
		}
		r.count += nr.count
		r.first, r.last = min(r.first, nr.first), max(r.last, nr.last)
	}
	for i := range newer.lines { // they came after newer's rows
		l := &newer.lines[i]
		a.addKey(&l.rowKey, l.h, l.minute, &l.pos)
	}
}

// Len returns the number of pending rows.
func (a *Attempts) Len() int {
	a.settle()
	return a.live
}

// MaxLen is at least Len, and costs nothing: the rows, plus the lines a
// deferred aggregate has not aggregated yet.
func (a *Attempts) MaxLen() int { return a.live + len(a.lines) }

// Each calls fn with every pending row, in the order they were made, for
// stores outside this package. A row of routine successes over several
// minutes comes as two per-minute rows, one for its first minute (count 1)
// and one for its last (the rest), so a store without a last_minute column
// keeps what restore needs of it.
func (a *Attempts) Each(fn func(AttemptKey, AttemptCount)) {
	a.settle()
	for i := range a.n {
		r := a.row(i)
		if r.count == 0 {
			continue
		}
		key := AttemptKey{Source: r.source, Minute: r.slot, IP: r.ip, Identity: r.identity, Credential: r.credential,
			Outcome: ingest.Outcome(r.kind)}
		if r.kind != routineKind {
			fn(key, AttemptCount{Count: r.count, Pos: r.pos})
			continue
		}
		key.Outcome, key.Minute = ingest.Success, r.first
		if r.last == r.first {
			fn(key, AttemptCount{Count: r.count, Pos: r.pos})
			continue
		}
		fn(key, AttemptCount{Count: 1, Pos: r.pos})
		key.Minute = r.last
		fn(key, AttemptCount{Count: r.count - 1, Pos: r.pos})
	}
}

// Clear drops the pending rows, once a store has written them. The table
// and the first chunks keep their room, for a caller that reuses the
// aggregate.
func (a *Attempts) Clear() {
	clear(a.lines)
	a.lines = a.lines[:0]
	for c := 0; c*rowChunk < a.n; c++ {
		clear(a.chunks[c][:min(rowChunk, a.n-c*rowChunk)]) // drop the strings they hold
	}
	if len(a.chunks) > keptChunks {
		clear(a.chunks[keptChunks:])
		a.chunks = a.chunks[:keptChunks]
	}
	// A table far larger than this batch needed shrinks to fit it.
	n := len(a.slots)
	for n > 1024 && 8*a.n < n {
		n /= 2
	}
	a.resize(n)
	a.n, a.live = 0, 0
}

// Take removes n from row k's count (a store found those written after
// all), dropping the row when nothing is left of it. k is a row as Each
// gave it: a success's count is taken from its per-minute row first, then
// from its hour's routine row.
func (a *Attempts) Take(k AttemptKey, n int64) {
	a.settle()
	if a.n == 0 {
		return
	}
	if r := a.lookup(rowKey{source: k.Source, identity: k.Identity, credential: k.Credential, ip: k.IP,
		slot: k.Minute, kind: uint8(k.Outcome)}); r != nil {
		took := min(n, r.count)
		if r.count -= took; r.count <= 0 {
			r.count = 0
			a.live--
		}
		n -= took
	}
	if n <= 0 || k.Outcome != ingest.Success {
		return
	}
	if r := a.lookup(rowKey{source: k.Source, identity: k.Identity, credential: k.Credential, ip: k.IP,
		slot: hourOf(k.Minute), kind: routineKind}); r != nil {
		if r.count -= n; r.count <= 0 {
			r.count = 0
			a.live--
		}
	}
}

// lookup returns k's row with a count, or nil.
func (a *Attempts) lookup(k rowKey) *pendingRow {
	h := a.hash(&k)
	mask := uint64(len(a.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := a.slots[i]
		if s == 0 {
			return nil
		}
		if s&^(1<<32-1) == h&^(1<<32-1) {
			if r := a.row(int(s&(1<<32-1)) - 1); r.h == h && r.rowKey == k {
				if r.count == 0 {
					return nil
				}
				return r
			}
		}
	}
}
