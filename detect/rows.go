package detect

// RoutineMinutes is how many minutes one row of routine successes covers.
//
// At thousands of clients nearly every line is a benign success of its own
// (address, identity, credential) in its minute, so per-minute rows are
// one row a line, and rows are what a replay spends most of its time on.
// A routine success is one on an address, network, identity and
// credential none of which has failed attempts in its window, nor is
// under an attack. It is context, never evidence: what the store must keep
// of it is when the identity first used its key (stale-key ownership), that it
// used it from that address (an owner's later typos are not an attack),
// and its latest use (windows restored after a restart count who
// succeeded recently). One row an hour per (address, identity,
// credential) keeps all three: its minute is the hour's first routine
// success and last_minute the hour's last. Every other row, and every
// success next to failures, stays per minute.
const RoutineMinutes = 60

// hourOf is the routine row a Unix minute belongs to (floored, also before
// 1970).
func hourOf(minute int64) int64 {
	h := minute / RoutineMinutes
	if minute%RoutineMinutes < 0 {
		h--
	}
	return h
}
