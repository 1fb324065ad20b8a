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
}

// LogConfig is the daemon's logging.
type LogConfig struct {
	// Format: text (default) or json.
	Format string `yaml:"format"`
	// Level: debug, info (default), warn or error.
	Level string `yaml:"level"`
}

func defaultDaemonConfig() DaemonConfig {
	return DaemonConfig{Lateness: 2 * time.Minute, PollInterval: 250 * time.Millisecond, RotateWait: time.Minute,
		FlushInterval: time.Second, StartAt: "end", MaxGroups: 50_000, MaxEntries: 500_000, MaxIncidentSet: 50_000,
		MemoryLimitMB: 128, Log: LogConfig{Format: "text", Level: "info"}}
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
