package slack

import (
	"fmt"
	"sort"
	"strings"
	"time"

	slackapi "github.com/slack-go/slack"

	"github.com/spraywatch/spraywatch/alert"
	"github.com/spraywatch/spraywatch/detect"
)

// MessageOptions shape the Block Kit message.
type MessageOptions struct {
	// ExplainCommand shows the evidence of an incident when its ID is
	// appended. Default "spraywatch explain".
	ExplainCommand string
	// MaxAddresses, MaxIdentities and MaxCredentials bound the samples
	// shown. Defaults 5, 5 and 5.
	MaxAddresses, MaxIdentities, MaxCredentials int
}

func (o MessageOptions) withDefaults() MessageOptions {
	if o.ExplainCommand == "" {
		o.ExplainCommand = "spraywatch explain"
	}
	if o.MaxAddresses <= 0 {
		o.MaxAddresses = 5
	}
	if o.MaxIdentities <= 0 {
		o.MaxIdentities = 5
	}
	if o.MaxCredentials <= 0 {
		o.MaxCredentials = 5
	}
	return o
}

// Message renders an incident as Block Kit blocks and the plain text Slack
// shows in notifications. Everything taken from logs (identities, addresses,
// labels) is escaped, so a user name cannot mention @channel or forge a link.
// Incidents carry only credential labels, never raw keys.
func Message(inc detect.Incident, o MessageOptions) (string, []slackapi.Block) {
	o = o.withDefaults()
	title := fmt.Sprintf("%s %s %s on %s (incident #%d)", emoji(inc.Severity), strings.ToUpper(inc.Severity), kindName(inc.Kind), inc.Source, inc.ID)
	summary := inc.Summary
	if inc.Kind == detect.KindCompromise {
		crit := inc.Compromised[:min(inc.CompromisedCritical, len(inc.Compromised))]
		if len(crit) > 0 {
			who := strings.Join(crit, ", ")
			title = fmt.Sprintf("%s CRITICAL: %s compromised on %s (incident #%d)", emoji(detect.SeverityCritical), who, inc.Source, inc.ID)
			if len(crit) == 1 && crit[0] == detect.IdentityNotInLog {
				// the log holds no identity for the request: say so, never ""
				title = fmt.Sprintf("%s CRITICAL: a request whose identity is not in this log got in on %s (incident #%d)", emoji(detect.SeverityCritical), inc.Source, inc.ID)
			}
			summary = fmt.Sprintf("The attack of incident #%d got in", inc.Related)
			if inc.Summary != "" {
				summary += ": " + inc.Summary
			}
			summary += ". Treat it as compromised: rotate its credentials."
		} else {
			title = fmt.Sprintf("%s %s: identities attacked by incident #%d logged in on %s (incident #%d)", emoji(inc.Severity), strings.ToUpper(inc.Severity), inc.Related, inc.Source, inc.ID)
		}
	}
	if inc.Kind == "test" {
		title = "spraywatch test message"
	}
	fallback := clip(esc(title+": "+summary), 300)

	var state string
	switch {
	case inc.State == detect.StateClosed:
		state = fmt.Sprintf("closed, update %d", inc.Version)
	case inc.Version > 1:
		state = fmt.Sprintf("ongoing, update %d", inc.Version)
	default:
		state = "new"
	}
	fields := []*slackapi.TextBlockObject{
		field("Kind, severity", fmt.Sprintf("%s, *%s*", esc(inc.Kind), esc(inc.Severity))),
		field("Source", esc(inc.Source)),
		field("Credentials", credentials(inc, o.MaxCredentials)),
		field("Addresses", counted(len(inc.IPs), inc.IPs, o.MaxAddresses)),
		field("Identities", counted(inc.Identities, inc.IdentitySample, o.MaxIdentities)),
		field("Attempts", fmt.Sprint(inc.Attempts)),
		field("First seen", stamp(inc.FirstSeen)),
		field("Last seen", stamp(inc.LastSeen)),
		field("Rule", rule(inc.Rule)),
		field("State", state),
	}
	if inc.Kind == detect.KindCompromise {
		fields[4] = field("Compromised", code(inc.Compromised, 10))
	}
	blocks := []slackapi.Block{
		slackapi.NewHeaderBlock(slackapi.NewTextBlockObject(slackapi.PlainTextType, clip(title, 150), true, false)),
		slackapi.NewSectionBlock(slackapi.NewTextBlockObject(slackapi.MarkdownType, clip(esc(summary), 3000), false, false), nil, nil),
		slackapi.NewSectionBlock(nil, fields, nil),
	}
	if inc.ID != 0 {
		blocks = append(blocks, slackapi.NewContextBlock("", slackapi.NewTextBlockObject(slackapi.MarkdownType,
			fmt.Sprintf("Evidence: `%s %d`", esc(o.ExplainCommand), inc.ID), false, false)))
	}
	return fallback, blocks
}

// SummaryMessage renders a storm summary.
func SummaryMessage(s alert.Summary) (string, []slackapi.Block) {
	text := fmt.Sprintf("%d more %s incidents from %s, see `%s`", len(s.IDs), kindName(s.Kind), esc(s.Source), esc(s.Command))
	ids := make([]string, 0, len(s.IDs))
	for i, id := range s.IDs {
		if i == 20 {
			ids = append(ids, fmt.Sprintf("and %d more", len(s.IDs)-i))
			break
		}
		ids = append(ids, fmt.Sprintf("#%d", id))
	}
	blocks := []slackapi.Block{
		slackapi.NewSectionBlock(slackapi.NewTextBlockObject(slackapi.MarkdownType, ":warning: "+text, false, false), nil, nil),
		slackapi.NewContextBlock("", slackapi.NewTextBlockObject(slackapi.MarkdownType, "Incidents "+strings.Join(ids, ", "), false, false)),
	}
	return fmt.Sprintf("%d more %s incidents from %s", len(s.IDs), kindName(s.Kind), esc(s.Source)), blocks
}

func field(name, value string) *slackapi.TextBlockObject {
	if value == "" {
		value = "-"
	}
	return slackapi.NewTextBlockObject(slackapi.MarkdownType, clip("*"+name+"*\n"+value, 2000), false, false)
}

func credentials(inc detect.Incident, n int) string {
	if !inc.CredentialsKnown {
		return "unknown (the source logs no credential)"
	}
	return code(inc.Credentials, n)
}

// counted shows a total, the first n of a sample, and how many of the total
// are not shown.
func counted(total int, sample []string, n int) string {
	if total == 0 {
		return "0"
	}
	return fmt.Sprintf("%d: %s", total, codeOf(sample, n, total))
}

// code shows up to n values as code, and how many more there are.
func code(xs []string, n int) string { return codeOf(xs, n, len(xs)) }

func codeOf(xs []string, n, total int) string {
	if len(xs) == 0 {
		return ""
	}
	shown := xs
	if len(shown) > n {
		shown = shown[:n]
	}
	parts := make([]string, len(shown))
	for i, x := range shown {
		parts[i] = "`" + strings.ReplaceAll(esc(clip(x, 80)), "`", "'") + "`"
	}
	s := strings.Join(parts, ", ")
	if more := total - len(shown); more > 0 {
		s += fmt.Sprintf(" and %d more", more)
	}
	return s
}

func rule(r detect.Rule) string {
	if r.Name == "" {
		return ""
	}
	s := esc(r.Name)
	if r.Window != "" {
		s += ", window " + esc(r.Window)
	}
	keys := make([]string, 0, len(r.Thresholds))
	for k := range r.Thresholds {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i == 0 {
			s += "\n"
		} else {
			s += ", "
		}
		s += esc(fmt.Sprintf("%s %v", k, r.Thresholds[k]))
	}
	return s
}

func kindName(kind string) string { return strings.ReplaceAll(kind, "_", " ") }

func emoji(severity string) string {
	switch severity {
	case detect.SeverityCritical:
		return ":rotating_light:"
	case detect.SeverityHigh:
		return ":red_circle:"
	case detect.SeverityMedium:
		return ":large_orange_circle:"
	}
	return ":large_yellow_circle:"
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// esc escapes the three characters Slack's mrkdwn gives meaning to.
func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
