package detect

import "unsafe"

// SetGroupHash makes w find groups by h instead of GroupKey.Hash, so that
// tests can make keys collide. Call it on empty windows.
func SetGroupHash(w *Windows, h func(GroupKey) uint64) { w.hash = h }

// SlotSize is the size of an entry as a group stores it.
const SlotSize = unsafe.Sizeof(slot{})

// GroupSize is the size of a group in the slab.
const GroupSize = unsafe.Sizeof(Group{})

// CompactSize is the size of a compact group (see compact).
const CompactSize = unsafe.Sizeof(compact{})

// SymbolSize is the size of a symbol.
const SymbolSize = unsafe.Sizeof(symbol{})
