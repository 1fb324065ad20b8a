package rules

import (
	"slices"
	"strings"

	"github.com/spraywatch/spraywatch/detect"
)

// LineFinding reports whether incidents of kind are judged from log lines
// (statuses, latencies, whole keys), which a fleet's attempt rows do not
// carry: a fleet's agents judge them on their own lines and hand them to the
// judge (ObserveFinding).
func LineFinding(kind string) bool {
	return kind == KindEnumeration || kind == KindRawCredentials
}

// ObserveFinding takes a line finding (LineFinding) that a fleet's agent
// node raised on its own lines, with delta the lines it counted since it
// last reported that finding. Across the fleet there is one incident per
// kind, source and route: the first report raises it (and it is alerted
// once), later ones, from the same node or others, add their lines, their
// addresses and credentials and their evidence (which names the node),
// without alerting again. Other kinds are ignored.
func (e *Engine) ObserveFinding(node string, f *detect.Incident, delta int64) {
	if !LineFinding(f.Kind) {
		return
	}
	key, err := incidentKey(f)
	if err != nil {
		e.log.Warn("finding from a node not understood; ignored", "node", node, "kind", f.Kind, "group", f.Group, "err", err)
		return
	}
	k := KindRawCredentials + "\x00" + f.Source
	route := ""
	if f.Kind == KindEnumeration {
		route = strings.TrimPrefix(key.Value, "route ")
		if route == "(all routes)" {
			route = ""
		}
		k = KindEnumeration + "\x00" + f.Source + "\x00" + route
	}
	tr := e.findings[k]
	if tr == nil {
		tr = e.newIncident(f.Kind, f.Severity, f.Source, key, f.Rule)
		tr.inc.Group, tr.inc.Summary, tr.inc.FirstSeen, tr.inc.LastSeen = f.Group, f.Summary, f.FirstSeen, f.LastSeen
		e.findings[k] = tr
		if f.Kind == KindEnumeration {
			e.routes[valueKey{f.Source, route}] = &routeStats{raised: true}
		}
	} else {
		e.quiet[tr.inc.ID] = tr // stored, not alerted again
	}
	inc := tr.inc
	inc.Attempts += delta
	for _, ip := range f.IPs {
		if !slices.Contains(inc.IPs, ip) && e.room(len(inc.IPs)) {
			inc.IPs = append(inc.IPs, ip)
		}
	}
	for _, c := range f.Credentials {
		if !slices.Contains(inc.Credentials, c) && len(inc.Credentials) < 20 {
			inc.Credentials = append(inc.Credentials, c)
			tr.creds[c] = struct{}{}
		}
	}
	for _, p := range f.Evidence {
		p.Node = node
		if len(inc.Evidence) < detect.MaxEvidence && !slices.Contains(inc.Evidence, p) {
			inc.Evidence = append(inc.Evidence, p)
		}
	}
	if !f.FirstSeen.IsZero() && (inc.FirstSeen.IsZero() || f.FirstSeen.Before(inc.FirstSeen)) {
		inc.FirstSeen = f.FirstSeen
	}
	if f.LastSeen.After(inc.LastSeen) {
		inc.LastSeen = f.LastSeen
	}
	tr.last = max(tr.last, inc.LastSeen.Unix())
	e.log.Debug("finding reported by a node", "incident", inc.ID, "kind", inc.Kind, "node", node, "lines", delta)
}
