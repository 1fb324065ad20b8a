package tail

// SetAfterStart sets the hook that runs between a follower's start and the
// look that records what it accounted for (nil: none).
func SetAfterStart(f func()) { afterStart = f }
