// Package detect holds spraywatch's detection state: the event-time windows
// of failed and successful attempts grouped by address, network, credential
// and identity, the incidents raised from them, and their SQLite store.
package detect

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
	"net/netip"
	"unsafe"

	"github.com/spraywatch/spraywatch/ingest"
)

// Grouping says what a window group is keyed by.
type Grouping uint8

// Groupings.
const (
	ByIP Grouping = iota
	ByNet
	ByCredential
	ByIdentity
	numGroupings
)

var groupingNames = [...]string{"ip", "net", "credential", "identity"}

func (g Grouping) String() string { return groupingNames[g] }

// GroupKey identifies one group. Only the fields of its grouping are set
// (windows tell keys apart by those alone).
type GroupKey struct {
	Grouping Grouping
	Source   string
	IP       netip.Addr
	Net      netip.Prefix
	Value    string // credential label or identity
}

// String renders the key for people and for storage, e.g. "ip=203.0.113.7".
func (k GroupKey) String() string {
	switch k.Grouping {
	case ByIP:
		return "ip=" + k.IP.String()
	case ByNet:
		return "net=" + k.Net.String()
	}
	return k.Grouping.String() + "=" + k.Value
}

var keySeed = maphash.MakeSeed()

// Hash returns a 64-bit hash of the key, seeded per process (an attacker
// cannot choose keys that collide). Equal keys hash alike; two keys that
// differ collide about once in 2^64.
func (k GroupKey) Hash() uint64 { return k.hashFrom(maphash.String(keySeed, k.Source)) }

// hashFrom is Hash given the hash of the key's source.
func (k GroupKey) hashFrom(source uint64) uint64 {
	h := source + uint64(k.Grouping)
	switch k.Grouping {
	case ByIP:
		return HashAddr(h, k.IP, 0)
	case ByNet:
		return HashAddr(h, k.Net.Addr(), k.Net.Bits()+1)
	}
	return Mix(h, maphash.String(keySeed, k.Value))
}

// HashAddr folds an address into h: its 16 bytes, its size (0 for no
// address), bits (a prefix's, plus one; 0 for an address) and its zone.
func HashAddr(h uint64, a netip.Addr, bits int) uint64 {
	b := a.As16()
	tag := uint64(a.BitLen())<<8 | uint64(bits)
	if z := a.Zone(); z != "" {
		tag ^= maphash.String(keySeed, z)
	}
	return Mix(Mix(h, binary.LittleEndian.Uint64(b[:8])), binary.LittleEndian.Uint64(b[8:])^tag)
}

// Mix folds b into a (a multiply-xor step, as wyhash's).
func Mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a^0xa0761d6478bd642f, b^0xe7037ed1a0b428db)
	return hi ^ lo
}

// Entry aggregates the events of one minute that share address, identity,
// credential and outcome.
type Entry struct {
	Minute     int64 // Unix minute of the events
	IP         netip.Addr
	Identity   string
	Credential string
	Pos        ingest.Pos // the first event's line
	Count      uint32
	Outcome    ingest.Outcome
	Stale      bool // failures of a pair that succeeded before
	// FirstSec and LastSec are the seconds into Minute of the first and
	// last event.
	FirstSec, LastSec uint8
}

// EntryAt returns an entry for events at Unix second t, in minute t/60
// (as attempt rows count them).
func EntryAt(t int64) Entry {
	m := t / 60
	s := uint8(max(0, t-m*60)) // 0 before 1970, where t/60 rounds up
	return Entry{Minute: m, FirstSec: s, LastSec: s}
}

// First returns the Unix second of the entry's first event.
func (e *Entry) First() int64 { return e.Minute*60 + int64(e.FirstSec) }

// Last returns the Unix second of the entry's last event.
func (e *Entry) Last() int64 { return e.Minute*60 + int64(e.LastSec) }

// Group is the retained entries of one key, oldest first (late events are
// appended, so order is by arrival, nearly by time): Len and At read them.
//
// The entries are a ring: n of them from head, in a buffer of mask+1 (a
// power of two). Entries expire from the front nearly in time order, and
// new ones are appended at the back, so a group of steady traffic reuses
// its buffer for as long as it lives instead of growing a slice that its
// front was cut from (an allocation and a copy every few entries).
type Group struct {
	// The fields Add, Prune and TakeDirty touch come first, in one cache
	// line: at high cardinality nearly every group an event reaches is
	// cold, and each line of a group read is a miss.
	hash uint64 // of Key, as the windows' index holds it
	Last int64  // latest Unix minute seen
	// Attempts is the number of retained failed attempts (not stale), a
	// cheap bound that lets rules skip groups that cannot fire.
	Attempts int64
	// ring holds the entries, stored without pointers (strings as symbols
	// of the queue's windows), so that the collector neither scans them nor
	// needs write barriers to copy them; nil or one when there are none.
	ring          *slot
	head, n, mask uint32
	queue         *expiryQueue // of its source and grouping
	id            int32        // index in the windows' slab
	Dirty         bool
	// one holds the first entry: most groups of a flood never get a second,
	// and then cost no allocation of their own.
	one [1]slot
	// The key, but for its source (the queue's), in the third line: the
	// fields of its grouping only (see Key).
	value    string     // credential label or identity
	addr     netip.Addr // IP, or Net's address
	bits     int16      // Net's bits
	grouping Grouping
	// Route is the route of the group's latest failed attempt, set by the
	// caller: what an incident raised on the group is about.
	Route string
}

// Key returns the group's key.
func (g *Group) Key() GroupKey {
	k := GroupKey{Grouping: g.grouping, Source: g.queue.source}
	switch g.grouping {
	case ByIP:
		k.IP = g.addr
	case ByNet:
		k.Net = netip.PrefixFrom(g.addr, int(g.bits))
	default:
		k.Value = g.value
	}
	return k
}

// Grouping returns Key().Grouping.
func (g *Group) Grouping() Grouping { return g.grouping }

// Source returns Key().Source.
func (g *Group) Source() string { return g.queue.source }

// is reports whether the group's key is k, by the fields of k's grouping.
func (g *Group) is(k GroupKey) bool {
	if g.grouping != k.Grouping || g.queue.source != k.Source {
		return false
	}
	switch k.Grouping {
	case ByIP:
		return g.addr == k.IP
	case ByNet:
		return g.addr == k.Net.Addr() && int(g.bits) == k.Net.Bits()
	}
	return g.value == k.Value
}

// setKey sets the group's key but for its source, which its queue holds.
func (g *Group) setKey(k GroupKey) {
	g.grouping, g.value, g.addr, g.bits = k.Grouping, "", netip.Addr{}, 0
	switch k.Grouping {
	case ByIP:
		g.addr = k.IP
	case ByNet:
		g.addr, g.bits = k.Net.Addr(), int16(k.Net.Bits())
	default:
		g.value = k.Value
	}
}

// KeyHash returns Key.Hash(), without reading the key.
func (g *Group) KeyHash() uint64 {
	if g.queue.keyHash {
		return g.hash
	}
	return g.Key().Hash()
}

// Len returns the number of retained entries.
func (g *Group) Len() int { return int(g.n) }

// At returns the i-th retained entry, oldest first.
func (g *Group) At(i int) Entry { return g.queue.syms.entry(g.slot(i)) }

// Minute returns the Unix minute of the i-th retained entry (cheaper than
// At for a caller that filters by time first).
func (g *Group) Minute(i int) int64 { return g.slot(i).minute }

// Identity returns entry i's identity and whether it is a failed attempt,
// without making the whole entry (At): for scans that need no more.
func (g *Group) Identity(i int) (identity string, attempt bool) {
	x := g.slot(i)
	return g.queue.syms.str(x.identity), x.outcome.Attempt()
}

// slot returns the i-th retained entry, oldest first, as the group holds
// it.
func (g *Group) slot(i int) *slot {
	if uint(i) >= uint(g.n) {
		panic("detect: entry index out of range")
	}
	return &unsafe.Slice(g.ring, g.mask+1)[(g.head+uint32(i))&g.mask]
}

// empty makes g hold no entries, in its own one (the next entry needs no
// allocation).
func (g *Group) empty() { g.ring, g.head, g.n, g.mask = &g.one[0], 0, 0, 0 }

// drop makes g hold no entries and no buffer (a freed slot).
func (g *Group) drop() { g.ring, g.head, g.n, g.mask = nil, 0, 0, 0 }

// push appends x, growing the ring when it is full.
func (g *Group) push(x slot) {
	if g.n > g.mask {
		g.resize(2 * (g.mask + 1))
	}
	unsafe.Slice(g.ring, g.mask+1)[(g.head+g.n)&g.mask] = x
	g.n++
}

// popFront drops the oldest entry, shrinking the ring when it is mostly
// empty (a group a flood filled keeps no more than a few times what it
// holds).
func (g *Group) popFront() {
	g.head = (g.head + 1) & g.mask
	g.n--
	if size := g.mask + 1; size > minShrink && g.n <= size/8 {
		g.resize(size / 4)
	}
}

// minShrink is the size of ring below which popFront leaves it alone.
const minShrink = 64

// resize moves the entries to a new ring of size slots, oldest first.
func (g *Group) resize(size uint32) {
	old := unsafe.Slice(g.ring, g.mask+1)
	ring := make([]slot, size)
	for i := range g.n {
		ring[i] = old[(g.head+i)&g.mask]
	}
	g.ring, g.head, g.mask = &ring[0], 0, size-1
}

// slot is an Entry as a group stores it: no pointers, 64 bytes (a cache
// line).
type slot struct {
	minute int64
	ip     [16]byte
	// identity, credential, file, node and zone are symbols; 0 is "". A
	// file's symbol holds its inode too.
	identity, credential, file, node, zone uint32
	count                                  uint32
	offset                                 int64
	ipKind                                 uint8 // 0: no address, 4: IPv4, 6: IPv6
	outcome                                ingest.Outcome
	stale                                  bool
	firstSec, lastSec                      uint8
}

// addrBits is an address as a slot holds it.
type addrBits struct {
	b    [16]byte
	kind uint8
	zone string
}

func bitsOf(a netip.Addr) addrBits {
	switch {
	case !a.IsValid():
		return addrBits{}
	case a.Is4():
		return addrBits{b: a.As16(), kind: 4}
	}
	return addrBits{b: a.As16(), kind: 6, zone: a.Zone()}
}

func (x *slot) addr(s *symbols) netip.Addr {
	switch x.ipKind {
	case 0:
		return netip.Addr{}
	case 4:
		return netip.AddrFrom4([4]byte(x.ip[12:]))
	}
	a := netip.AddrFrom16(x.ip)
	if x.zone != 0 {
		a = a.WithZone(s.str(x.zone))
	}
	return a
}

// symbols holds the strings of retained entries (identities, credential
// labels, node names, zones; file names, with their inodes, in a table of
// their own) by small integers, counting the entries that hold each: a
// symbol is freed with the last entry that held it, so the table never
// holds more than the entries do. The groups of one line, and the lines
// that follow with the same string, share the symbol taken last for that
// field; past those, a string is looked up by the address of its bytes
// (the parser hands the same string for a value it sees often), in a small
// table of the symbols taken lately, so that the entries of a client's
// many minutes share one symbol instead of one each. Equal strings at
// different addresses, or pushed out of that table, take symbols apart
// (a lookup by content would be a hash of every string).
//
// A symbol's bytes are copied into chunks of 64 KiB (a long string into a
// chunk of its own), so that a flood's million one-off strings are a few
// hundred objects without pointers for the collector instead of a million,
// and a symbol is 12 bytes. Bytes in a chunk are written once and never
// changed: the strings handed out point into them, and the collector
// keeps a chunk for as long as one of those is held. The table lets go of
// a chunk once no symbol is in it; when the chunks hold more than twice
// the bytes in use (and half again as much as that), the symbols of the
// chunks less than half in use are copied into new ones (compact), which
// is paid for by the bytes freed since the last time.
type symbols struct {
	// syms are the symbols' places in chunks, each with the number of
	// entries holding it, side by side: taking and freeing a symbol
	// touches one cache line. Symbol 0 is "".
	syms []symbol
	free []uint32
	last [5]uint32 // the symbol taken last, per field
	// recent holds symbols by the address of their string's bytes, as
	// words address<<32 | symbol (a symbol there may have been freed or
	// taken again since: its string is compared before use). Not in the
	// files table.
	recent []uint64
	// inodes are the files' inodes, by symbol (the files table only).
	inodes []uint64
	files  *symbols // the table of file names (nil in the files table)

	// chunks hold the symbols' bytes; chunk 0 is none (""). live is the
	// number of bytes of live symbols in each chunk; cur is the chunk
	// strings are added to (0: none yet).
	chunks     [][]byte
	live       []uint32
	freeChunks []uint32
	cur        uint32
	// held is the capacity of the chunks held, inUse the bytes of live
	// symbols in them.
	held, inUse int
	// compacting: chunks let go of wait in retired until compact is done,
	// so that none is taken again while it runs.
	compacting bool
	retired    []uint32
	compacted  int // compactions so far
}

const (
	fieldIdentity = iota
	fieldCredential
	fieldFile
	fieldNode
	fieldZone
)

const (
	chunkBytes = 1 << 16
	// longString is the longest string kept in a shared chunk; a longer
	// one takes a chunk of its own.
	longString = 4 << 10
)

// compactSlack is the least the chunks hold beyond twice the bytes in use
// before they are compacted (a variable for tests).
var compactSlack = 8 * chunkBytes

type symbol struct {
	chunk uint32
	// span is offset<<16 | length in the chunk; 0 for a chunk holding one
	// string (or for "").
	span uint32
	refs uint32
}

// newSymbols returns a table whose recent table has 1<<recentBits words,
// with a files table.
func newSymbols(recentBits int) *symbols {
	return &symbols{syms: []symbol{{}}, chunks: [][]byte{nil}, live: []uint32{0}, recent: make([]uint64, 1<<recentBits),
		files: &symbols{syms: []symbol{{}}, chunks: [][]byte{nil}, live: []uint32{0}, inodes: []uint64{0}}}
}

func (s *symbols) str(id uint32) string {
	y := s.syms[id]
	c := s.chunks[y.chunk]
	if y.span == 0 {
		return unsafe.String(unsafe.SliceData(c), len(c))
	}
	return unsafe.String(&c[y.span>>16], y.span&0xffff)
}

// ref returns a symbol for str, counting one more entry that holds it.
func (s *symbols) ref(field int, str string) uint32 {
	if str == "" {
		return 0
	}
	id := s.last[field]
	if s.str(id) != str { // symbol 0 is ""
		a := uint64(uintptr(unsafe.Pointer(unsafe.StringData(str))))
		r := &s.recent[a*0x9e3779b97f4a7c15>>32&uint64(len(s.recent)-1)]
		// The word's upper half is the low half of the address: a string
		// at another address is told apart without reading its symbol.
		if id = uint32(*r); *r>>32 != a&(1<<32-1) || s.str(id) != str {
			id = s.take(str)
			*r = a<<32 | uint64(id)
		}
		s.last[field] = id
	}
	s.syms[id].refs++
	return id
}

// take returns a new symbol for str, held by no entry yet.
func (s *symbols) take(str string) uint32 {
	c, span := s.put(str)
	if n := len(s.free); n > 0 {
		id := s.free[n-1]
		s.free = s.free[:n-1]
		s.syms[id] = symbol{chunk: c, span: span}
		return id
	}
	s.syms = append(s.syms, symbol{chunk: c, span: span})
	if s.inodes != nil {
		s.inodes = append(s.inodes, 0)
	}
	return uint32(len(s.syms) - 1)
}

// put copies str (not "") into a chunk and returns where it is.
func (s *symbols) put(str string) (chunk, span uint32) {
	n := len(str)
	s.inUse += n
	if n > longString {
		c := s.newChunk(n)
		s.chunks[c] = append(s.chunks[c], str...)
		s.live[c] = uint32(n)
		return c, 0
	}
	if s.cur == 0 || len(s.chunks[s.cur])+n > chunkBytes {
		if s.cur != 0 && s.live[s.cur] == 0 {
			s.retire(s.cur)
		}
		s.cur = s.newChunk(chunkBytes)
	}
	c := s.cur
	off := len(s.chunks[c])
	s.chunks[c] = append(s.chunks[c], str...)
	s.live[c] += uint32(n)
	return c, uint32(off)<<16 | uint32(n)
}

func (s *symbols) newChunk(size int) uint32 {
	s.held += size
	b := make([]byte, 0, size)
	if n := len(s.freeChunks); n > 0 {
		c := s.freeChunks[n-1]
		s.freeChunks = s.freeChunks[:n-1]
		s.chunks[c] = b
		return c
	}
	s.chunks = append(s.chunks, b)
	s.live = append(s.live, 0)
	return uint32(len(s.chunks) - 1)
}

// retire lets go of chunk c, which holds no live symbol. Its bytes are
// never written again: strings handed out may still point into them.
func (s *symbols) retire(c uint32) {
	s.held -= cap(s.chunks[c])
	s.chunks[c] = nil
	if c == s.cur {
		s.cur = 0
	}
	if s.compacting {
		s.retired = append(s.retired, c)
	} else {
		s.freeChunks = append(s.freeChunks, c)
	}
}

// drop takes len bytes of symbol y off its chunk's live bytes.
func (s *symbols) drop(y symbol) {
	n := int(y.span & 0xffff)
	if y.span == 0 {
		n = len(s.chunks[y.chunk])
	}
	s.inUse -= n
	if s.live[y.chunk] -= uint32(n); s.live[y.chunk] == 0 && y.chunk != s.cur {
		s.retire(y.chunk)
	}
}

// compact copies the symbols of chunks less than half in use into new
// chunks, letting go of the old ones.
func (s *symbols) compact() {
	s.compacting = true
	sparse := make([]bool, len(s.chunks))
	for c, b := range s.chunks {
		sparse[c] = b != nil && int(s.live[c])*2 < cap(b)
	}
	if s.cur != 0 {
		if s.live[s.cur] == 0 {
			s.retire(s.cur)
		}
		s.cur = 0 // new strings go to new chunks
	}
	for id := 1; id < len(s.syms); id++ {
		y := s.syms[id]
		if y.chunk == 0 || !sparse[y.chunk] {
			continue
		}
		c, span := s.put(s.str(uint32(id)))
		s.syms[id].chunk, s.syms[id].span = c, span
		s.drop(y)
	}
	s.freeChunks = append(s.freeChunks, s.retired...)
	s.retired = s.retired[:0]
	s.compacting = false
	s.compacted++
}

// refFile returns a symbol of the files table for a file and its inode,
// counting one more entry that holds it.
func (s *symbols) refFile(str string, inode uint64) uint32 {
	if str == "" && inode == 0 {
		return 0
	}
	id := s.last[fieldFile]
	if id == 0 || s.str(id) != str || s.inodes[id] != inode {
		if str == "" {
			id = s.takeEmpty()
		} else {
			id = s.take(str)
		}
		s.inodes[id] = inode
		s.last[fieldFile] = id
	}
	s.syms[id].refs++
	return id
}

// takeEmpty returns a new symbol for "" (a file known by its inode alone).
func (s *symbols) takeEmpty() uint32 {
	if n := len(s.free); n > 0 {
		id := s.free[n-1]
		s.free = s.free[:n-1]
		return id
	}
	s.syms = append(s.syms, symbol{})
	if s.inodes != nil {
		s.inodes = append(s.inodes, 0)
	}
	return uint32(len(s.syms) - 1)
}

// unref counts one entry fewer holding symbol id.
func (s *symbols) unref(id uint32) {
	if id == 0 {
		return
	}
	y := &s.syms[id]
	if y.refs > 1 {
		y.refs--
		return
	}
	old := *y
	*y = symbol{}
	if s.inodes != nil {
		s.inodes[id] = 0
	}
	s.free = append(s.free, id)
	if old.chunk == 0 {
		return
	}
	s.drop(old)
	if s.held > 2*s.inUse+max(compactSlack, s.inUse/2) {
		s.compact()
	}
}

// Len returns the number of symbols in use, file names included.
func (s *symbols) Len() int {
	n := len(s.syms) - 1 - len(s.free)
	if s.files != nil {
		n += s.files.Len()
	}
	return n
}

func (s *symbols) store(e *Entry, ip addrBits) slot {
	return slot{minute: e.Minute, ip: ip.b, ipKind: ip.kind, zone: s.ref(fieldZone, ip.zone),
		identity: s.ref(fieldIdentity, e.Identity), credential: s.ref(fieldCredential, e.Credential),
		file: s.files.refFile(e.Pos.File, e.Pos.Inode), node: s.ref(fieldNode, e.Pos.Node), offset: e.Pos.Offset,
		count: e.Count, outcome: e.Outcome, stale: e.Stale, firstSec: e.FirstSec, lastSec: e.LastSec}
}

func (s *symbols) release(x *slot) {
	s.unref(x.identity)
	s.unref(x.credential)
	s.files.unref(x.file)
	s.unref(x.node)
	s.unref(x.zone)
}

func (s *symbols) entry(x *slot) Entry {
	return Entry{Minute: x.minute, IP: x.addr(s), Identity: s.str(x.identity), Credential: s.str(x.credential),
		Pos:   ingest.Pos{Node: s.str(x.node), File: s.files.str(x.file), Inode: s.files.inodes[x.file], Offset: x.offset},
		Count: x.count, Outcome: x.outcome, Stale: x.stale, FirstSec: x.firstSec, LastSec: x.lastSec}
}

// WindowOptions set how long each grouping retains entries, in minutes, and
// what a network group spans.
type WindowOptions struct {
	Retain              [numGroupings]int64
	NetBitsV4, NetBits6 int
	// MaxGroups caps tracked groups per grouping (0: no cap); past it a
	// new group is not tracked and is counted in Dropped, while the groups
	// already tracked go on. (An attacker who fills the cap with chosen
	// addresses or identities can hide later groups until old ones expire:
	// the drop counters are exported so that this shows.)
	MaxGroups int
	// MaxEntries caps the entries retained over all groups (0: no cap);
	// past it new entries are dropped and counted in DroppedEntries. An
	// attacker choosing addresses and identities cannot grow memory past it.
	MaxEntries int
}

// Windows keeps groups in memory.
type Windows struct {
	opt WindowOptions
	// Groups live in a slab of fixed chunks, reused through a free list:
	// a flood of one-off groups allocates nothing per group. index finds a
	// group by its key's Hash.
	chunks []*[slabChunk]Group
	free   []int32
	index  groupIndex
	// present counts, for the credential and identity groupings, the
	// tracked groups whose hash falls in each bucket: a successful line
	// asks for its identity's and its key's groups, which exist only next
	// to failures, and an empty bucket answers "none" from a small table
	// instead of a probe of the index (a cache miss at high cardinality).
	present [numGroupings]*presence
	dirty   []*Group
	spare   []*Group // the dirty list handed out before the last one
	// expiring holds every group with entries, per source and grouping,
	// ordered by its oldest entry's minute: Prune visits only the groups
	// with something to cut instead of walking every group.
	expiring map[expiryKey]*expiryQueue
	last     [numGroupings]*expiryQueue // the queue of the latest new group
	counts   [numGroupings]int
	Dropped  int64
	entries  int
	// DroppedEntries counts entries not retained under MaxEntries.
	DroppedEntries int64
	// compacts hold the groups of one entry that are not in use (see
	// compact), in fixed chunks without pointers, reused through cfree.
	compacts []*[slabChunk]compact
	cfree    []int32
	queues   []*expiryQueue // by expiryQueue.idx-1
	routes   *symbols       // the routes of compact groups
	scratch  Group          // a compact group, as Prune's keep sees it
	// plain turns compact groups off (tests compare both).
	plain          bool
	hash           func(GroupKey) uint64 // nil: GroupKey.Hash; tests force collisions
	lastSource     string
	lastSourceHash uint64
	syms           *symbols
	lastIP         netip.Addr
	lastBits       addrBits
}

const slabChunk = 1024

func (w *Windows) at(id int32) *Group { return &w.chunks[id/slabChunk][id%slabChunk] }

// hashOf returns k's Hash, hashing its source only when it is not the last
// one's (the groups of a line, and most lines, share one).
func (w *Windows) hashOf(k GroupKey) uint64 {
	if w.hash != nil {
		return w.hash(k)
	}
	if k.Source != w.lastSource || w.lastSourceHash == 0 {
		w.lastSource, w.lastSourceHash = k.Source, maphash.String(keySeed, k.Source)
	}
	return k.hashFrom(w.lastSourceHash)
}

// getHashed returns the group of k, of hash h, or nil. A compact group is
// made a full one first.
func (w *Windows) getHashed(k GroupKey, h uint64) *Group {
	r, i := w.find(k, h)
	switch {
	case r == 0:
		return nil
	case r&compactRef != 0:
		return w.promote(r, i, k, h)
	}
	return w.at(int32(r) - 1)
}

// find returns the ref of k's group, of hash h (0: none), and the index of
// its word in the index.
func (w *Windows) find(k GroupKey, h uint64) (uint32, uint64) {
	ix := &w.index
	if ix.n == 0 {
		return 0, 0
	}
	mask := uint64(len(ix.slots) - 1)
	tag := h >> 32
	for i := tag & mask; ; i = (i + 1) & mask {
		s := ix.slots[i]
		if s == 0 {
			return 0, 0
		}
		if s>>32 == tag {
			r := uint32(s)
			if r&compactRef == 0 {
				if g := w.at(int32(r) - 1); g.hash == h && g.is(k) {
					return r, i
				}
			} else if w.compactIs(w.cat(int32(r&^compactRef)), k) {
				return r, i
			}
		}
	}
}

// Prefetch brings in, for the keys of the hashes hs (HashOf), the index's
// word where their probe starts and the first line of the group it names,
// and changes nothing. At high cardinality each is a cache miss: met one
// after another by the Adds that follow, each waits for the last, while
// these overlap each other and the caller's work until its Adds. A key
// whose word is free is new (the index is probed linearly): the free group
// its Add will take is brought in instead.
func (w *Windows) Prefetch(hs ...uint64) {
	ix := &w.index
	if ix.n == 0 {
		return
	}
	mask := uint64(len(ix.slots) - 1)
	for _, h := range hs {
		prefetch(unsafe.Pointer(&ix.slots[(h>>32)&mask]))
	}
	next := len(w.free) - 1
	for _, h := range hs {
		switch s := ix.slots[(h>>32)&mask]; {
		case s == 0 && next >= 0:
			g := unsafe.Pointer(w.at(w.free[next]))
			next--
			for off := uintptr(0); off < unsafe.Sizeof(Group{}); off += 64 {
				prefetch(unsafe.Add(g, off))
			}
		case s != 0 && s>>32 == h>>32 && uint32(s)&compactRef == 0:
			prefetch(unsafe.Pointer(w.at(int32(uint32(s)) - 1)))
		}
	}
}

// presence is a table of counts by the low bits of a hash. A count that
// reaches its maximum stays there, so it never undercounts.
type presence [1 << 14]uint16

func (p *presence) add(h uint64) {
	if b := &p[h%uint64(len(p))]; *b < 1<<16-1 {
		*b++
	}
}

func (p *presence) remove(h uint64) {
	if b := &p[h%uint64(len(p))]; *b < 1<<16-1 {
		*b--
	}
}

func (p *presence) maybe(h uint64) bool { return p == nil || p[h%uint64(len(p))] > 0 }

// groupIndex finds groups by their key's Hash: an open-addressing table,
// probed linearly, of words tag<<32 | ref, where tag is the upper half of
// the hash and names the slot to start from, ref names the group (see
// compactRef), and 0 is a free slot. A lookup reads one cache line of the
// table for most keys (a Go map reads a control word and a slot), and the
// group's own line only when the tag matches. Keys whose hashes collide,
// wholly or in their tag, are all kept: a lookup compares the group's hash
// (a compact group's tag) and key, and goes on past a mismatch. The table
// holds no pointer, so the collector does not scan it.
type groupIndex struct {
	slots []uint64 // a power of two, at most half full
	n     int
}

func (ix *groupIndex) insert(h uint64, ref uint32) {
	if 2*(ix.n+1) > len(ix.slots) {
		ix.grow()
	}
	mask := uint64(len(ix.slots) - 1)
	tag := h >> 32
	i := tag & mask
	for ix.slots[i] != 0 {
		i = (i + 1) & mask
	}
	ix.slots[i] = tag<<32 | uint64(ref)
	ix.n++
}

func (ix *groupIndex) grow() {
	old := ix.slots
	ix.slots = make([]uint64, max(1024, 2*len(old)))
	mask := uint64(len(ix.slots) - 1)
	for _, s := range old {
		if s != 0 {
			i := (s >> 32) & mask
			for ix.slots[i] != 0 {
				i = (i + 1) & mask
			}
			ix.slots[i] = s
		}
	}
}

// word returns the index of the word of ref, of hash h.
func (ix *groupIndex) word(h uint64, ref uint32) uint64 {
	mask := uint64(len(ix.slots) - 1)
	want := (h>>32)<<32 | uint64(ref)
	i := (h >> 32) & mask
	for ix.slots[i] != want {
		i = (i + 1) & mask
	}
	return i
}

// replace makes the word of ref, of hash h, name to instead.
func (ix *groupIndex) replace(h uint64, ref, to uint32) {
	ix.slots[ix.word(h, ref)] = (h>>32)<<32 | uint64(to)
}

// remove drops the word of ref, of hash h, shifting the words after it
// back so that no probe sequence is cut (Knuth's algorithm R).
func (ix *groupIndex) remove(h uint64, ref uint32) {
	mask := uint64(len(ix.slots) - 1)
	i := ix.word(h, ref)
	for j := i; ; {
		j = (j + 1) & mask
		s := ix.slots[j]
		if s == 0 {
			break
		}
		// s stays when its home slot lies cyclically in (i, j].
		if home := (s >> 32) & mask; (j-home)&mask < (j-i)&mask {
			continue
		}
		ix.slots[i] = s
		i = j
	}
	ix.slots[i] = 0
	ix.n--
}

// newGroup tracks an empty group for k, of hash h, known not to be tracked.
func (w *Windows) newGroup(k GroupKey, h uint64) *Group {
	g := w.allocGroup()
	g.setKey(k)
	g.hash, g.Route, g.queue = h, "", w.queueOf(k)
	g.empty()
	w.index.insert(h, uint32(g.id+1))
	if p := w.present[k.Grouping]; p != nil {
		p.add(h)
	}
	w.counts[k.Grouping]++
	return g
}

// allocGroup returns a free group of the slab.
func (w *Windows) allocGroup() *Group {
	if len(w.free) == 0 {
		c := new([slabChunk]Group)
		base := int32(len(w.chunks)) * slabChunk
		for i := slabChunk - 1; i >= 0; i-- {
			c[i].id = base + int32(i)
			w.free = append(w.free, base+int32(i))
		}
		w.chunks = append(w.chunks, c)
	}
	id := w.free[len(w.free)-1]
	w.free = w.free[:len(w.free)-1]
	return w.at(id)
}

// forget stops tracking g and frees its slot. The slot keeps its last
// key and route until it is reused (strings a tracked group held, so the
// slab never keeps more than it did at its peak): clearing them would
// write cold cache lines for nothing.
func (w *Windows) forget(g *Group) {
	w.index.remove(g.hash, uint32(g.id+1))
	if p := w.present[g.queue.grouping]; p != nil {
		p.remove(g.hash)
	}
	w.counts[g.queue.grouping]--
	g.hash, g.Last, g.Attempts = 0, 0, 0
	g.drop()
	w.free = append(w.free, g.id)
}

type expiryKey struct {
	source   string
	grouping Grouping
}

// expiryQueue holds groups, by ref, by the minute of their oldest entry: a
// bucket per minute, and a min-heap of the minutes that have one (a
// retention's worth at most), so that queueing a group is an append and
// expiring a minute takes its whole bucket. A group is in its queue while
// it has entries, under the minute of its oldest. A group made compact or
// full again is queued under its new ref (see replace), and an old ref
// left in a bucket is passed over when the bucket expires: it names no
// group of that queue and minute any more, or one queued there anyway.
type expiryQueue struct {
	syms     *symbols // of the windows
	keyHash  bool     // its groups' hash is their Key.Hash (tests may change it)
	grouping Grouping
	idx      uint16 // 1 + its index in Windows.queues; 0: its groups are never compact
	source   string
	buckets  map[int64][]uint32
	minutes  []int64    // min-heap of the keys of buckets
	spare    [][]uint32 // emptied buckets, to be reused
}

func (q *expiryQueue) push(minute int64, ref uint32) {
	b, ok := q.buckets[minute]
	if !ok {
		h := append(q.minutes, minute)
		for i := len(h) - 1; i > 0; {
			parent := (i - 1) / 2
			if h[parent] <= h[i] {
				break
			}
			h[parent], h[i] = h[i], h[parent]
			i = parent
		}
		q.minutes = h
		if n := len(q.spare); n > 0 {
			b, q.spare = q.spare[n-1], q.spare[:n-1]
		}
	}
	q.buckets[minute] = append(b, ref)
}

// replace makes ref old, queued under minute among the last few refs of
// its bucket (a group made compact soon after it was queued), name to, and
// reports whether it found it.
func (q *expiryQueue) replace(minute int64, old, to uint32) bool {
	b := q.buckets[minute]
	for i := len(b) - 1; i >= 0 && i >= len(b)-64; i-- {
		if b[i] == old {
			b[i] = to
			return true
		}
	}
	return false
}

// recycle takes back a bucket from take once its groups are handled.
func (q *expiryQueue) recycle(b []uint32) {
	if cap(b) <= 4096 && len(q.spare) < 64 {
		q.spare = append(q.spare, b[:0])
	}
}

// expired reports whether the oldest queued minute is before cut.
func (q *expiryQueue) expired(cut int64) bool {
	return len(q.minutes) > 0 && q.minutes[0] < cut
}

// take removes the bucket of the oldest minute and returns the minute and
// its refs.
func (q *expiryQueue) take() (int64, []uint32) {
	h := q.minutes
	minute := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for i := 0; ; {
		l, small := 2*i+1, i
		if l < len(h) && h[l] < h[small] {
			small = l
		}
		if r := l + 1; r < len(h) && h[r] < h[small] {
			small = r
		}
		if small == i {
			break
		}
		h[i], h[small] = h[small], h[i]
		i = small
	}
	q.minutes = h
	b := q.buckets[minute]
	delete(q.buckets, minute)
	return minute, b
}

// queueOf returns the expiry queue of k's source and grouping.
func (w *Windows) queueOf(k GroupKey) *expiryQueue {
	if q := w.last[k.Grouping]; q != nil && q.source == k.Source {
		return q
	}
	qk := expiryKey{k.Source, k.Grouping}
	q := w.expiring[qk]
	if q == nil {
		q = &expiryQueue{syms: w.syms, keyHash: w.hash == nil, grouping: k.Grouping, source: k.Source, buckets: map[int64][]uint32{}}
		w.expiring[qk] = q
		if len(w.queues) < 1<<16-1 {
			w.queues = append(w.queues, q)
			q.idx = uint16(len(w.queues))
		}
	}
	w.last[k.Grouping] = q
	return q
}

// NewWindows returns empty windows.
func NewWindows(o WindowOptions) *Windows {
	if o.NetBitsV4 == 0 {
		o.NetBitsV4 = 24
	}
	if o.NetBits6 == 0 {
		o.NetBits6 = 64
	}
	return &Windows{opt: o, present: [numGroupings]*presence{ByCredential: new(presence), ByIdentity: new(presence)},
		expiring: map[expiryKey]*expiryQueue{}, syms: newSymbols(16), routes: newSymbols(4)}
}

// Options returns the options in force.
func (w *Windows) Options() WindowOptions { return w.opt }

// SetOptions changes retention (on reload); entries are pruned lazily.
func (w *Windows) SetOptions(o WindowOptions) {
	if o.NetBitsV4 == 0 {
		o.NetBitsV4 = 24
	}
	if o.NetBits6 == 0 {
		o.NetBits6 = 64
	}
	w.opt = o
}

// NetOf returns the network group prefix of ip.
func (w *Windows) NetOf(ip netip.Addr) netip.Prefix {
	bits := w.opt.NetBitsV4
	if ip.Is6() && !ip.Is4In6() {
		bits = w.opt.NetBits6
	}
	p, _ := ip.Unmap().Prefix(bits)
	return p
}

// Add records e in the group with key k. Only failed attempts mark the group
// dirty, since only they can make a rule fire. It returns the group, or nil
// when the group cap dropped it.
func (w *Windows) Add(k GroupKey, e Entry) *Group { return w.AddHashed(k, w.HashOf(k), e) }

// HashOf returns the hash the windows find k by (k.Hash, but for tests
// that force collisions), for AddHashed and Prefetch.
func (w *Windows) HashOf(k GroupKey) uint64 { return w.hashOf(k) }

// AddHashed is Add given h, HashOf(k).
func (w *Windows) AddHashed(k GroupKey, h uint64, e Entry) *Group {
	g := w.getHashed(k, h)
	full := w.opt.MaxEntries > 0 && w.entries >= w.opt.MaxEntries
	if g == nil {
		if full {
			w.DroppedEntries++
			return nil
		}
		if w.opt.MaxGroups > 0 && w.counts[k.Grouping] >= w.opt.MaxGroups {
			w.Dropped++
			return nil
		}
		g = w.newGroup(k, h)
	}
	// No retained entry is of a minute after Last: an entry of a new
	// minute merges with none, and the entries need not be read.
	newMinute := e.Minute > g.Last || g.n == 0
	if e.Minute > g.Last {
		g.Last = e.Minute
	}
	attempt := e.Outcome.Attempt() && !e.Stale
	if attempt {
		g.Attempts += int64(e.Count)
		w.markDirty(g)
	}
	// Merge with a recent entry of the same minute and shape: steady
	// traffic collapses to one entry a minute.
	if e.IP != w.lastIP {
		w.lastIP, w.lastBits = e.IP, bitsOf(e.IP) // the groups of a line share it
	}
	ip := w.lastBits
	syms := w.syms
	for i, n := int(g.n)-1, 0; !newMinute && i >= 0 && n < 4; i, n = i-1, n+1 {
		x := g.slot(i)
		if x.minute == e.Minute && x.ip == ip.b && x.ipKind == ip.kind && x.outcome == e.Outcome && x.stale == e.Stale &&
			syms.str(x.identity) == e.Identity && syms.str(x.credential) == e.Credential && syms.str(x.zone) == ip.zone {
			x.count += e.Count
			x.firstSec, x.lastSec = min(x.firstSec, e.FirstSec), max(x.lastSec, e.LastSec)
			return g
		}
	}
	if full {
		w.DroppedEntries++
		if attempt {
			g.Attempts -= int64(e.Count)
		}
		return g
	}
	if g.n == 0 {
		g.queue.push(e.Minute, uint32(g.id+1))
	}
	g.push(w.syms.store(&e, ip))
	w.entries++
	return g
}

func (w *Windows) markDirty(g *Group) {
	if !g.Dirty {
		g.Dirty = true
		w.dirty = append(w.dirty, g)
	}
}

// Get returns the group with key k, or nil.
func (w *Windows) Get(k GroupKey) *Group {
	h := w.hashOf(k)
	if !w.present[k.Grouping].maybe(h) {
		return nil
	}
	return w.getHashed(k, h)
}

// TakeDirty returns the groups changed since the last call and clears their
// flags.
// The list is valid until the call after next (two lists take turns, so
// that judging does not grow a new one every time).
//
// Groups of the list handed out before, that have one entry and were not
// made dirty again, are made compact here (see compact).
func (w *Windows) TakeDirty() []*Group {
	for _, g := range w.spare {
		if w.compactible(g) {
			w.compact(g)
		}
	}
	d := w.dirty
	clear(w.spare)
	w.dirty, w.spare = w.spare[:0], d
	for _, g := range d {
		g.Dirty = false
	}
	return d
}

// Prune drops entries older than each grouping's retention before now (a
// Unix minute, per source: each source has its own clock), and groups left
// empty, except groups for which keep says so.
// Entries arrive nearly in time order, so expired entries are cut from the
// front of each group's ring; a late straggler goes when it reaches the
// front, and rules filter by window anyway.
func (w *Windows) Prune(now func(source string) int64, keep func(*Group) bool) {
	for qk, q := range w.expiring {
		cut := now(qk.source) - w.opt.Retain[qk.grouping]
		for q.expired(cut) {
			minute, b := q.take()
			for j, r := range b {
				// The bucket's groups are cold: bring in the group's line
				// (or compact record) of the ref pruneAhead on, and the
				// oldest entry of the one half as far, whose group that
				// brought in, so that their misses overlap.
				if j+pruneAhead < len(b) {
					w.touch(b[j+pruneAhead])
				}
				if j+pruneAhead/2 < len(b) {
					w.touchFront(b[j+pruneAhead/2], cut)
				}
				if r&compactRef != 0 {
					w.expireCompact(r, minute, q, keep)
					continue
				}
				if g := w.at(int32(r) - 1); g.n > 0 && g.queue == q && g.slot(0).minute == minute {
					w.cut(g, cut, q, keep)
				} // else an old ref (see expiryQueue)
			}
			q.recycle(b)
		}
	}
}

// pruneAhead is how many refs of a bucket Prune reads ahead.
const pruneAhead = 8

// touch prefetches the first line of the group, or the compact record, of
// ref r.
func (w *Windows) touch(r uint32) {
	if r&compactRef != 0 {
		prefetch(unsafe.Pointer(w.cat(int32(r &^ compactRef))))
		return
	}
	prefetch(unsafe.Pointer(w.at(int32(r) - 1)))
}

// touchFront prefetches the oldest entry of the group of ref r, if it is a
// full one that has entries, and when all of them are older than cut, the
// index word its forget will remove.
func (w *Windows) touchFront(r uint32, cut int64) {
	if r&compactRef != 0 {
		return
	}
	g := w.at(int32(r) - 1)
	if g.n == 0 {
		return
	}
	prefetch(unsafe.Add(unsafe.Pointer(g.ring), uintptr(g.head)*unsafe.Sizeof(slot{})))
	if g.Last < cut && len(w.index.slots) > 0 {
		prefetch(unsafe.Pointer(&w.index.slots[(g.hash>>32)&uint64(len(w.index.slots)-1)]))
	}
}

// cut drops g's entries older than cut from its front, queues it again by
// its new oldest entry, or forgets it when nothing is left.
func (w *Windows) cut(g *Group, cut int64, q *expiryQueue, keep func(*Group) bool) {
	for g.n > 0 {
		x := g.slot(0)
		if x.minute >= cut {
			q.push(x.minute, uint32(g.id+1))
			return
		}
		if x.outcome.Attempt() && !x.stale {
			g.Attempts -= int64(x.count)
		}
		w.syms.release(x)
		g.popFront()
		w.entries--
	}
	g.empty()
	if !g.Dirty && (keep == nil || !keep(g)) {
		w.forget(g)
	}
}

// Len returns the number of tracked groups per grouping.
func (w *Windows) Len() [numGroupings]int { return w.counts }

// Entries returns the number of retained entries over all groups.
func (w *Windows) Entries() int { return w.entries }

// Strings returns the number of strings the retained entries hold (equal
// strings of entries stored apart may count more than once).
func (w *Windows) Strings() int { return w.syms.Len() }
