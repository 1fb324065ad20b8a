//go:build !amd64 && !arm64

package detect

import "unsafe"

// prefetch is a hint the processor has no instruction for here: nothing.
func prefetch(unsafe.Pointer) {}
