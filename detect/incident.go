package detect

import (
	"time"

	"github.com/spraywatch/spraywatch/ingest"
)

// Kinds of incident.
const (
	KindSpray            = "spray"
	KindDistributedSpray = "distributed_spray"
	KindLowAndSlow       = "low_and_slow_spray"
	KindBruteForce       = "brute_force"
	KindStuffing         = "credential_stuffing"
	KindCompromise       = "compromise"
	KindEnumeration      = "enumeration_oracle"
	KindRawCredentials   = "raw_credentials_in_logs"
	// KindNoRateLimit is a finding about an API: a route answered an
	// attack's failed attempts without ever throttling (HTTP 429).
	KindNoRateLimit = "no_rate_limit"
)

// Kinds lists every kind of incident, in the order tools show them.
var Kinds = []string{KindSpray, KindDistributedSpray, KindLowAndSlow, KindBruteForce, KindStuffing,
	KindCompromise, KindEnumeration, KindRawCredentials, KindNoRateLimit}

// IdentityNotInLog stands for the identity of a request whose log line
// does not name one (a token endpoint taking the client ID in its body).
const IdentityNotInLog = "identity not in this log"

// Severities.
const (
	SeverityLow      = "low"
	SeverityMedium   = "medium"
	SeverityHigh     = "high"
	SeverityCritical = "critical"
)

// Incident states.
const (
	StateOpen   = "open"
	StateClosed = "closed"
)

// Rule names the rule an incident came from and the thresholds it used.
type Rule struct {
	Name       string         `json:"name"`
	Window     string         `json:"window,omitempty"`
	Thresholds map[string]any `json:"thresholds,omitempty"`
}

// Incident is one attack or finding, updated while it goes on.
type Incident struct {
	ID        int64     `json:"id"`
	Kind      string    `json:"kind"`
	Severity  string    `json:"severity"`
	Source    string    `json:"source"`
	Group     string    `json:"group"`
	State     string    `json:"state"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// Raised is when the incident was raised, by its source's event time
	// (FirstSeen is its first attempt, which may come long before).
	Raised time.Time `json:"raised,omitzero"`
	// IPs holds every address involved.
	IPs []string `json:"ips"`
	// Credentials holds the credential labels (prefixes or fingerprints).
	Credentials []string `json:"credentials"`
	// CredentialsKnown is false when the source logs no credential, so
	// spray and stuffing cannot be told apart.
	CredentialsKnown bool     `json:"credentials_known"`
	Identities       int      `json:"identities"`
	IdentitySample   []string `json:"identity_sample"`
	Compromised      []string `json:"compromised"`
	// CompromisedCritical counts the identities at the head of Compromised
	// that succeeded with an attacking credential or from an attacking
	// address; the rest succeeded with other keys after being attacked.
	CompromisedCritical int `json:"compromised_critical,omitempty"`
	// OwnersReturned counts the attacked identities later used by their
	// owners: with keys and from addresses the attack did not use.
	OwnersReturned int `json:"owners_returned,omitempty"`
	// KeysKnown names the compromised identities whose working key was
	// among the attacking credentials: attackers hold it, so it must be
	// rotated.
	KeysKnown []string `json:"keys_known_to_attackers,omitempty"`
	// Route is the route an attack's attempts were on, when they share one.
	Route string `json:"route,omitempty"`
	// Throttled is set once one of an attack's attempts was answered 429.
	Throttled bool   `json:"throttled,omitempty"`
	Attempts  int64  `json:"attempts"`
	Rule      Rule   `json:"rule"`
	Summary   string `json:"summary"`
	// Related is the incident this one follows from (a compromise's spray).
	Related  int64        `json:"related,omitempty"`
	Evidence []ingest.Pos `json:"evidence"`
	Updated  time.Time    `json:"updated"`
	// Version counts the incident's updates; sinks use it to update a
	// message instead of posting again.
	Version int `json:"version"`
}

// MaxEvidence is the most evidence positions an incident keeps.
const MaxEvidence = 100

// MaxIdentitySample is the length of an incident's identity sample.
const MaxIdentitySample = 10
