// Package rules judges detect's windows: it holds the detection model's
// signals with their thresholds (MODEL.md in this directory explains each),
// raises and updates incidents, and applies the stale-key, owner and
// allow-list suppressors. Everything runs on event time, so replaying a
// file and watching it live give the same incidents.
package rules

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalid wraps every configuration problem Validate finds.
var ErrInvalid = errors.New("invalid rules")

// Config holds every rule's thresholds. Field tags name the config keys.
type Config struct {
	Spray            SprayRule       `yaml:"spray"`
	DistributedSpray DistributedRule `yaml:"distributed_spray"`
	LowAndSlow       LowAndSlowRule  `yaml:"low_and_slow_spray"`
	BruteForce       BruteForceRule  `yaml:"brute_force"`
	Stuffing         StuffingRule    `yaml:"credential_stuffing"`
	Compromise       CompromiseRule  `yaml:"compromise"`
	Enumeration      EnumerationRule `yaml:"enumeration_oracle"`
	// StaleKey suppresses failures of an (identity, credential) pair that
	// succeeded before: a rotated or expired key, not an attack.
	StaleKey bool `yaml:"stale_key_suppression"`
	// Cooldown is how long an incident stays open without new activity;
	// activity within it updates the incident instead of raising another.
	Cooldown time.Duration `yaml:"cooldown"`
}

// SprayRule: one address tries many identities with few credentials.
type SprayRule struct {
	Enabled        bool            `yaml:"enabled"`
	Windows        []time.Duration `yaml:"windows"`
	MinIdentities  int             `yaml:"min_identities"`
	MaxCredentials int             `yaml:"max_credentials"`
	MinRatio       float64         `yaml:"min_identities_per_credential"`
}

// DistributedRule: one credential fails across many identities and addresses.
type DistributedRule struct {
	Enabled        bool          `yaml:"enabled"`
	Window         time.Duration `yaml:"window"`
	MinIdentities  int           `yaml:"min_identities"`
	MinIPs         int           `yaml:"min_ips"`
	MaxPerIdentity int           `yaml:"max_failures_per_identity"`
}

// LowAndSlowRule: one credential, many identities, each tried rarely.
type LowAndSlowRule struct {
	Enabled               bool          `yaml:"enabled"`
	Window                time.Duration `yaml:"window"`
	MinIdentities         int           `yaml:"min_identities"`
	MaxPerIdentityPerHour int           `yaml:"max_failures_per_identity_per_hour"`
}

// BruteForceRule: one identity, many credentials.
type BruteForceRule struct {
	Enabled        bool          `yaml:"enabled"`
	Window         time.Duration `yaml:"window"`
	MinCredentials int           `yaml:"min_credentials"`
	MinFailures    int           `yaml:"min_failures"`
}

// StuffingRule: one address or network, many identities, about one
// credential each.
type StuffingRule struct {
	Enabled             bool          `yaml:"enabled"`
	Window              time.Duration `yaml:"window"`
	MinIdentities       int           `yaml:"min_identities"`
	MinRatio            float64       `yaml:"min_credentials_per_identity"`
	MaxTriesPerIdentity int           `yaml:"max_tries_per_identity"`
	NetBitsV4           int           `yaml:"ipv4_prefix"`
	NetBitsV6           int           `yaml:"ipv6_prefix"`
}

// CompromiseRule: an attacked identity then succeeds.
type CompromiseRule struct {
	Enabled          bool          `yaml:"enabled"`
	Within           time.Duration `yaml:"within"`
	WithinLowAndSlow time.Duration `yaml:"within_low_and_slow"`
}

// EnumerationRule: unknown identities answered differently from wrong keys.
type EnumerationRule struct {
	Enabled       bool          `yaml:"enabled"`
	Window        time.Duration `yaml:"window"`
	MinSamples    int           `yaml:"min_samples"`
	LatencyRatio  float64       `yaml:"latency_ratio"`
	MinLatencyGap time.Duration `yaml:"min_latency_gap"`
}

// DefaultConfig returns the rules' starting points (see MODEL.md).
func DefaultConfig() Config {
	return Config{
		Spray:            SprayRule{Enabled: true, Windows: []time.Duration{15 * time.Minute, time.Hour}, MinIdentities: 10, MaxCredentials: 3, MinRatio: 5},
		DistributedSpray: DistributedRule{Enabled: true, Window: time.Hour, MinIdentities: 10, MinIPs: 3, MaxPerIdentity: 3},
		LowAndSlow:       LowAndSlowRule{Enabled: true, Window: 24 * time.Hour, MinIdentities: 20, MaxPerIdentityPerHour: 2},
		BruteForce:       BruteForceRule{Enabled: true, Window: 10 * time.Minute, MinCredentials: 10, MinFailures: 10},
		Stuffing:         StuffingRule{Enabled: true, Window: 15 * time.Minute, MinIdentities: 15, MinRatio: 0.8, MaxTriesPerIdentity: 2, NetBitsV4: 24, NetBitsV6: 64},
		Compromise:       CompromiseRule{Enabled: true, Within: 3 * time.Hour, WithinLowAndSlow: 24 * time.Hour},
		Enumeration:      EnumerationRule{Enabled: true, Window: 24 * time.Hour, MinSamples: 5, LatencyRatio: 3, MinLatencyGap: 50 * time.Millisecond},
		StaleKey:         true,
		Cooldown:         time.Hour,
	}
}

// Validate returns every problem, each naming the field (as in the config
// file, under prefix) and its value.
func (c Config) Validate(prefix string) error {
	var errs []error
	bad := func(field string, value any, why string) {
		errs = append(errs, fmt.Errorf("%w: %s%s: %v: %s", ErrInvalid, prefix, field, value, why))
	}
	minute := func(field string, d time.Duration) {
		if d < time.Minute {
			bad(field, d, "must be at least 1m (windows are counted in whole minutes)")
		}
	}
	atLeast := func(field string, v, lo int) {
		if v < lo {
			bad(field, v, fmt.Sprintf("must be at least %d", lo))
		}
	}
	if len(c.Spray.Windows) == 0 {
		bad("spray.windows", "[]", "needs at least one window")
	}
	for i, w := range c.Spray.Windows {
		minute(fmt.Sprintf("spray.windows[%d]", i), w)
	}
	atLeast("spray.min_identities", c.Spray.MinIdentities, 2)
	atLeast("spray.max_credentials", c.Spray.MaxCredentials, 1)
	if c.Spray.MinRatio < 1 {
		bad("spray.min_identities_per_credential", c.Spray.MinRatio, "must be at least 1")
	}
	minute("distributed_spray.window", c.DistributedSpray.Window)
	atLeast("distributed_spray.min_identities", c.DistributedSpray.MinIdentities, 2)
	atLeast("distributed_spray.min_ips", c.DistributedSpray.MinIPs, 2)
	atLeast("distributed_spray.max_failures_per_identity", c.DistributedSpray.MaxPerIdentity, 1)
	minute("low_and_slow_spray.window", c.LowAndSlow.Window)
	atLeast("low_and_slow_spray.min_identities", c.LowAndSlow.MinIdentities, 2)
	atLeast("low_and_slow_spray.max_failures_per_identity_per_hour", c.LowAndSlow.MaxPerIdentityPerHour, 1)
	minute("brute_force.window", c.BruteForce.Window)
	atLeast("brute_force.min_credentials", c.BruteForce.MinCredentials, 2)
	atLeast("brute_force.min_failures", c.BruteForce.MinFailures, 2)
	minute("credential_stuffing.window", c.Stuffing.Window)
	atLeast("credential_stuffing.min_identities", c.Stuffing.MinIdentities, 2)
	if c.Stuffing.MinRatio <= 0 || c.Stuffing.MinRatio > 1 {
		bad("credential_stuffing.min_credentials_per_identity", c.Stuffing.MinRatio, "must be in (0, 1]")
	}
	atLeast("credential_stuffing.max_tries_per_identity", c.Stuffing.MaxTriesPerIdentity, 1)
	if c.Stuffing.NetBitsV4 < 8 || c.Stuffing.NetBitsV4 > 32 {
		bad("credential_stuffing.ipv4_prefix", c.Stuffing.NetBitsV4, "must be between 8 and 32")
	}
	if c.Stuffing.NetBitsV6 < 16 || c.Stuffing.NetBitsV6 > 128 {
		bad("credential_stuffing.ipv6_prefix", c.Stuffing.NetBitsV6, "must be between 16 and 128")
	}
	minute("compromise.within", c.Compromise.Within)
	minute("compromise.within_low_and_slow", c.Compromise.WithinLowAndSlow)
	minute("enumeration_oracle.window", c.Enumeration.Window)
	atLeast("enumeration_oracle.min_samples", c.Enumeration.MinSamples, 1)
	if c.Enumeration.LatencyRatio < 1 {
		bad("enumeration_oracle.latency_ratio", c.Enumeration.LatencyRatio, "must be at least 1")
	}
	minute("cooldown", c.Cooldown)
	return errors.Join(errs...)
}

func minutes(d time.Duration) int64 { return int64(d / time.Minute) }

func maxWindow(ds ...time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// LongestWindow is the longest time any rule looks back: stored counts must
// be kept at least this long for a restart to rebuild the windows.
func (c Config) LongestWindow() time.Duration {
	return maxWindow(append([]time.Duration{c.DistributedSpray.Window, c.LowAndSlow.Window, c.BruteForce.Window,
		c.Stuffing.Window, c.Enumeration.Window}, c.Spray.Windows...)...)
}
