//go:build amd64 || arm64

package detect

import "unsafe"

// prefetch asks the processor to bring the cache line at p in, without
// waiting for it: a hint, which changes nothing a program can see (p may
// be any address, even an invalid one).
//
//go:noescape
func prefetch(p unsafe.Pointer)
