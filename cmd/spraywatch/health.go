package main

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/spraywatch/spraywatch/alert"
	"github.com/spraywatch/spraywatch/detect"
	"github.com/spraywatch/spraywatch/ingest"
)

// health is what /healthz says besides unreadable files: whether counts
// and positions can be written, whether alert destinations deliver, and
// whether each source is keeping up and is not blind. The detector
// goroutine writes it; the HTTP handler reads it.
type health struct {
	mu      sync.Mutex
	db      failure
	sinks   map[string]*sinkState
	sources map[string]*sourceState
}

// failure is a condition that holds while an operation keeps failing: it
// is logged once, then summarised.
type failure struct {
	cause      string // empty while all is well
	hint       string
	err        error
	since      time.Time
	count      int
	lastLogged time.Time
}

// failureSummaryEvery is how often a failure that lasts is summarised.
const failureSummaryEvery = time.Minute

// note records one outcome. It reports whether the failure is new.
func (f *failure) note(log *slog.Logger, what string, cause, hint string, err error, now time.Time) bool {
	if err == nil {
		if f.cause != "" {
			log.Info(what+" works again", "failed", f.count, "for", now.Sub(f.since).Round(time.Second).String())
		}
		*f = failure{}
		return false
	}
	f.count++
	if f.cause != cause {
		*f = failure{cause: cause, hint: hint, err: err, since: now, count: 1, lastLogged: now}
		log.Error(what+" failing: "+cause, "err", err, "what_to_do", hint)
		return true
	}
	f.err = err
	if now.Sub(f.lastLogged) >= failureSummaryEvery {
		f.lastLogged = now
		log.Error(fmt.Sprintf("%s still failing: %d times in %s", what, f.count, now.Sub(f.since).Round(time.Second)),
			"cause", cause, "err", err, "what_to_do", hint)
	}
	return false
}

// dbCause names why the database cannot be written, and what to do.
func dbCause(err error) (cause, hint string) {
	switch {
	case errors.Is(err, detect.ErrFull):
		return "disk full", "free space on the database's file system; counts and positions wait in memory and are written once there is room"
	case errors.Is(err, detect.ErrLocked):
		return "locked by another process", "find what holds the database (a sqlite3 shell, a backup, a replay into it) and end it; writes are retried"
	case errors.Is(err, detect.ErrReadOnly):
		return "read-only", "make the database file, its -wal and -shm files and their directory writable by spraywatch; writes are retried"
	case errors.Is(err, detect.ErrCorrupt):
		return "corrupt", "reading has stopped and positions are not advanced, so nothing is lost: move the file aside (or restore a backup) and spraywatch starts again from it by itself"
	}
	return "write error", "see the error; writes are retried"
}

// sinkState tracks an alert destination's deliveries between looks.
type sinkState struct {
	sent, errs   int64
	failingSince time.Time
}

// sourceState is one source's lag and recent parsing.
type sourceState struct {
	behind string // why it is behind its limits; empty when not
	blind  string // why it is blind; empty when not
	sample string // the last line it could not parse, redacted
	reason string // why it could not
	// kept is a line read fine but rightly no event (outside the routes,
	// say), redacted, and why, so that a source blind for that reason
	// names a line of it: the first such line, then the 64th, 128th, 256th
	// … in a row without an event (a redaction per event would cost the
	// daemon more than the rest of the look).
	kept, keptWhy string
	recent        [200]bool
	n, failed     int // lines in recent, how many of them failed to parse
	next          int
	lastEvent     time.Time // wall time of the last event
	readSince     int       // lines read since the last event
	blindLog      string    // the blind reason last logged
}

func newHealth() *health {
	return &health{sinks: map[string]*sinkState{}, sources: map[string]*sourceState{}}
}

func (h *health) source(name string) *sourceState {
	s := h.sources[name]
	if s == nil {
		s = &sourceState{lastEvent: time.Now()}
		h.sources[name] = s
	}
	return s
}

// line records how one line of a source ended: parsed into an event,
// filtered (rightly not an event), or not understood.
func (h *health) line(source string, event, understood bool, reason string, text []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.source(source)
	if s.n == len(s.recent) && s.recent[s.next] {
		s.failed--
	}
	s.recent[s.next] = !understood
	s.next = (s.next + 1) % len(s.recent)
	s.n = min(s.n+1, len(s.recent))
	if !understood {
		s.failed++
		s.reason = reason
		if text != nil {
			s.sample = ingest.Redact(text, 200)
		}
	}
	if event {
		s.lastEvent, s.readSince = time.Now(), 0
	} else {
		s.readSince++
		if n := s.readSince; understood && text != nil && (s.kept == "" || n >= 64 && n&(n-1) == 0) {
			s.kept, s.keptWhy = ingest.Redact(text, 200), reason
		}
	}
}

// blindSample is a redacted line for the blind warning: the last line
// that could not be parsed, else one read fine but left out.
func (s *sourceState) blindSample() string {
	if s.sample != "" {
		return s.sample
	}
	return s.kept
}

// judgeSources decides, per source, whether it is blind or behind, logs a
// change, and returns what to export.
func (h *health) judgeSources(cfg HealthConfig, behind map[string]int64, secs map[string]float64, now time.Time, log *slog.Logger) (blind, lagging map[string]bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	blind, lagging = map[string]bool{}, map[string]bool{}
	for name := range behind {
		h.source(name)
	}
	for name, s := range h.sources {
		s.blind = ""
		if s.n >= 20 && float64(s.failed) >= cfg.BlindSkipRatio*float64(s.n) {
			s.blind = fmt.Sprintf("%d of its last %d lines could not be parsed (last reason: %s; check log_format and format against the log)", s.failed, s.n, s.reason)
		} else if cfg.BlindAfter > 0 && s.readSince > 0 && now.Sub(s.lastEvent) >= cfg.BlindAfter {
			s.blind = fmt.Sprintf("%d lines read and none produced an event for %s (check the route filters, credential and identity settings)",
				s.readSince, now.Sub(s.lastEvent).Round(time.Second))
			if s.keptWhy != "" {
				s.blind += "; lines are left out as " + s.keptWhy
			}
		}
		if s.blind != "" && s.blindLog == "" {
			log.Warn("source is blind: it reads lines but detects nothing", "source", name, "reason", s.blind, "sample", s.blindSample())
		} else if s.blind == "" && s.blindLog != "" {
			log.Info("source is no longer blind", "source", name)
		}
		s.blindLog = s.blind
		blind[name] = s.blind != ""
		s.behind = ""
		switch b := behind[name]; {
		case cfg.MaxBytesBehind > 0 && b > cfg.MaxBytesBehind:
			s.behind = fmt.Sprintf("%d bytes behind (limit %d)", b, cfg.MaxBytesBehind)
		case cfg.MaxSecondsBehind > 0 && b > 0 && secs[name] > cfg.MaxSecondsBehind.Seconds():
			s.behind = fmt.Sprintf("%.0f seconds behind (limit %s)", secs[name], cfg.MaxSecondsBehind)
		}
		lagging[name] = s.behind != ""
	}
	return blind, lagging
}

// judgeSinks marks a destination failing while its errors grow and it
// delivers nothing; it returns the destinations failing for longer than
// the limit.
func (h *health) judgeSinks(stats []alert.DestinationStats, limit time.Duration, now time.Time) map[string]bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]bool{}
	for _, st := range stats {
		s := h.sinks[st.Destination]
		if s == nil {
			s = &sinkState{sent: st.Sent}
			h.sinks[st.Destination] = s
		}
		errs := st.Retries + st.RateLimited + st.Rejected + st.Misconfigured
		switch {
		case st.Sent > s.sent:
			s.failingSince = time.Time{}
		case errs > s.errs && s.failingSince.IsZero():
			s.failingSince = now
		}
		s.sent, s.errs = st.Sent, errs
		out[st.Destination] = !s.failingSince.IsZero() && now.Sub(s.failingSince) >= limit
	}
	return out
}

// problems lists what /healthz reports besides the readers.
func (h *health) problems(sinkLimit time.Duration, now time.Time) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	if h.db.cause != "" {
		out = append(out, fmt.Sprintf("database: counts and positions cannot be written: %s (%d failures in %s): %v; %s",
			h.db.cause, h.db.count, now.Sub(h.db.since).Round(time.Second), h.db.err, h.db.hint))
	}
	names := make([]string, 0, len(h.sinks))
	for n := range h.sinks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if s := h.sinks[n]; !s.failingSince.IsZero() && now.Sub(s.failingSince) >= sinkLimit {
			out = append(out, fmt.Sprintf("alerts: destination %s has failed every delivery for %s", n, now.Sub(s.failingSince).Round(time.Second)))
		}
	}
	names = names[:0]
	for n := range h.sources {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := h.sources[n]
		if s.blind != "" {
			p := fmt.Sprintf("source %s: blind: %s", n, s.blind)
			if s.sample != "" {
				p += "; last unparsed line: " + s.sample
			} else if s.kept != "" {
				p += "; a line left out: " + s.kept
			}
			out = append(out, p)
		}
		if s.behind != "" {
			out = append(out, fmt.Sprintf("source %s: %s", n, s.behind))
		}
	}
	return out
}
