// Package ingest turns log lines into normalized authentication events.
//
// A format package (ingest/nginx, ingest/jsonlog, ...) only splits a line into
// named raw fields. This package maps those fields to the roles spraywatch
// needs (address, time, identity, credential, status), fingerprints whole keys
// as soon as they are read, and classifies the outcome. Raw credentials never
// leave Parse.
package ingest

import (
	"net/netip"
	"time"
)

// Outcome classifies what an authentication attempt came to.
type Outcome uint8

// Outcomes: what a request line says of an authentication attempt.
const (
	Other Outcome = iota
	Failure
	Success
	UnknownIdentity
	Throttled
	MissingCredential
)

var outcomeNames = [...]string{"other", "failure", "success", "unknown_identity", "throttled", "missing_credential"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "other"
}

// ParseOutcome is the inverse of Outcome.String.
func ParseOutcome(s string) (Outcome, bool) {
	for i, n := range outcomeNames {
		if n == s {
			return Outcome(i), true
		}
	}
	return Other, false
}

// Attempt reports whether the outcome is a failed attempt that counts toward
// spray, brute-force and stuffing signals. A throttled request still shows the
// attacker's intent; a missing credential carries no guess at all.
func (o Outcome) Attempt() bool {
	return o == Failure || o == UnknownIdentity || o == Throttled
}

// Pos locates the line an event came from, for evidence.
type Pos struct {
	// Node is the fleet node whose file it is; empty on a single node.
	Node   string `json:"node,omitempty"`
	File   string `json:"file"`
	Inode  uint64 `json:"inode"`
	Offset int64  `json:"offset"`
}

// Event is one parsed log line.
type Event struct {
	Time     time.Time
	Source   string
	IP       netip.Addr
	Identity string
	// Credential is a label safe to show and store: a logged key prefix, or
	// the first characters of a whole key plus its keyed fingerprint. Empty
	// when the line carries no credential.
	Credential string
	// RawCredential is set when the line held a whole key, which was
	// fingerprinted on the spot.
	RawCredential bool
	// SchemeOnly is set when Credential is nothing but a fixed scheme
	// prefix such as sk_live_, which cannot tell keys apart.
	SchemeOnly bool
	Outcome    Outcome
	Status     int
	Method     string
	// Route is the configured route the request matched (an identity path
	// template or a route prefix), or the path's first segments otherwise.
	Route   string
	Latency time.Duration
	// HasLatency tells a measured zero latency from a log without one.
	HasLatency bool
	Pos        Pos
}
