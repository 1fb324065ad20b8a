package main

import (
	"fmt"
	"net"
	"time"
)

// DaemonConfig configures 'spraywatch run'; its keys sit at the top level
// of the config file.
type DaemonConfig struct {
	// MetricsListen, when set (e.g. 127.0.0.1:9731), serves Prometheus
	// metrics on /metrics and the read health on /healthz.
	MetricsListen string `yaml:"metrics_listen"`
	// Lateness is how far behind the newest line a line may be and still
	// find its window open: the wall clock moves event time on only this
	// long after the last line. Default 2m.
	Lateness time.Duration `yaml:"lateness"`
	// PollInterval is how often files are checked for new lines and
	// rotations. Default 250ms.
	PollInterval time.Duration `yaml:"poll_interval"`
	// FileEvents wakes the readers on file system events (inotify) as
	// soon as a log is written or rotated, besides polling every
	// poll_interval. Default true; false polls only (for file systems
	// that deliver no events).
	FileEvents bool `yaml:"file_events"`
	// RotateWait is how long a rotated file is still read after its last
	// new line, for writers that have not reopened yet. Default 1m.
	RotateWait time.Duration `yaml:"rotate_wait"`
	// FlushInterval is how often counts, incidents and positions are
	// written (one transaction). Default 1s.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// StartAt says where files without a saved position start on the
	// first run: end (default) or beginning. Files that appear later are
	// always read from the beginning.
	StartAt string `yaml:"start_at"`
	// MaxGroups caps tracked window groups per grouping (address, network,
	// credential, identity); past it new groups are dropped and counted.
	// An attacker chooses how many addresses and identities appear: these
	// caps bound memory (see BenchmarkMillionIPs in rules).
	MaxGroups int `yaml:"max_groups"`
	// MaxEntries caps retained window entries over all groups.
	MaxEntries int `yaml:"max_entries"`
	// MaxIncidentSet caps the addresses and identities one incident lists;
	// past it attempts are still counted, identities become a lower bound.
	MaxIncidentSet int `yaml:"max_incident_set"`
	// MemoryLimitMB is the floor of Go's soft memory limit in MiB: the
	// limit is half again the live heap when that is more. 0 leaves Go's
	// default; GOMEMLIMIT in the environment wins.
	MemoryLimitMB int `yaml:"memory_limit_mb"`
	// Log sets the daemon's own logging on stderr.
	Log LogConfig `yaml:"log"`
	// Health sets when /healthz answers 503 besides unreadable files and
	// a database that cannot be written.
	Health HealthConfig `yaml:"health"`
}

// HealthConfig are the limits past which /healthz reports a problem.
type HealthConfig struct {
	// MaxBytesBehind: a source with more bytes written and not read yet
	// is unhealthy. Default 64 MiB; 0 turns the check off.
	MaxBytesBehind int64 `yaml:"max_bytes_behind"`
	// MaxSecondsBehind: a source whose last line read is older than this
	// while bytes are behind is unhealthy. Default 10m; 0 turns it off.
	MaxSecondsBehind time.Duration `yaml:"max_seconds_behind"`
	// SinkFailingFor: an alert destination whose deliveries have failed
	// for this long without one success is unhealthy. Default 15m.
	SinkFailingFor time.Duration `yaml:"sink_failing_for"`
	// BlindSkipRatio: a source is blind when at least this share of its
	// last 200 lines could not be parsed (a layout that does not fit).
	// Default 0.9.
	BlindSkipRatio float64 `yaml:"blind_skip_ratio"`
	// BlindAfter: a source is blind when lines are read but none has
	// produced an event for this long (every line filtered away, say).
	// Default 1h; 0 turns it off.
	BlindAfter time.Duration `yaml:"blind_after"`
}

// LogConfig is the daemon's logging.
type LogConfig struct {
	// Format: text (default) or json.
	Format string `yaml:"format"`
	// Level: debug, info (default), warn or error.
	Level string `yaml:"level"`
}

func defaultDaemonConfig() DaemonConfig {
	return DaemonConfig{Lateness: 2 * time.Minute, PollInterval: 250 * time.Millisecond, FileEvents: true, RotateWait: time.Minute,
		FlushInterval: time.Second, StartAt: "end", MaxGroups: 50_000, MaxEntries: 500_000, MaxIncidentSet: 50_000,
		MemoryLimitMB: 128, Log: LogConfig{Format: "text", Level: "info"},
		Health: HealthConfig{MaxBytesBehind: 64 << 20, MaxSecondsBehind: 10 * time.Minute, SinkFailingFor: 15 * time.Minute,
			BlindSkipRatio: 0.9, BlindAfter: time.Hour}}
}

// validate checks the daemon keys.
func (d DaemonConfig) validate() []error {
	var errs []error
	bad := func(field string, value any, why string) {
		errs = append(errs, fmt.Errorf("%w: %s: %q: %s", errConfig, field, fmt.Sprint(value), why))
	}
	if d.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(d.MetricsListen); err != nil {
			bad("metrics_listen", d.MetricsListen, "must be host:port, e.g. 127.0.0.1:9731")
		}
	}
	if d.Lateness < 0 || d.Lateness > time.Hour {
		bad("lateness", d.Lateness, "must be between 0s and 1h")
	}
	if d.PollInterval < 10*time.Millisecond || d.PollInterval > 10*time.Second {
		bad("poll_interval", d.PollInterval, "must be between 10ms and 10s")
	}
	if d.RotateWait < time.Second || d.RotateWait > time.Hour {
		bad("rotate_wait", d.RotateWait, "must be between 1s and 1h")
	}
	if d.FlushInterval < 10*time.Millisecond || d.FlushInterval > time.Minute {
		bad("flush_interval", d.FlushInterval, "must be between 10ms and 1m")
	}
	if d.StartAt != "end" && d.StartAt != "beginning" {
		bad("start_at", d.StartAt, "must be end or beginning")
	}
	for _, c := range []struct {
		field string
		v     int
	}{{"max_groups", d.MaxGroups}, {"max_entries", d.MaxEntries}, {"max_incident_set", d.MaxIncidentSet}, {"memory_limit_mb", d.MemoryLimitMB}} {
		if c.v < 0 {
			bad(c.field, c.v, "must be 0 (no cap) or more")
		}
	}
	if d.Health.MaxBytesBehind < 0 {
		bad("health.max_bytes_behind", d.Health.MaxBytesBehind, "must be 0 (off) or more")
	}
	if d.Health.MaxSecondsBehind < 0 {
		bad("health.max_seconds_behind", d.Health.MaxSecondsBehind, "must be 0s (off) or more")
	}
	if d.Health.SinkFailingFor < time.Second {
		bad("health.sink_failing_for", d.Health.SinkFailingFor, "must be 1s or more")
	}
	if d.Health.BlindSkipRatio <= 0 || d.Health.BlindSkipRatio > 1 {
		bad("health.blind_skip_ratio", d.Health.BlindSkipRatio, "must be above 0 and at most 1")
	}
	if d.Health.BlindAfter < 0 {
		bad("health.blind_after", d.Health.BlindAfter, "must be 0s (off) or more")
	}
	if d.Log.Format != "text" && d.Log.Format != "json" {
		bad("log.format", d.Log.Format, "must be text or json")
	}
	switch d.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", d.Log.Level, "must be debug, info, warn or error")
	}
	return errs
}
