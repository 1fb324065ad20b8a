package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/spraywatch/spraywatch/alert"
	"github.com/spraywatch/spraywatch/detect"
)

// printIncidents writes incidents as JSON lines, or as a table that fits
// the terminal w is, if it is one.
func printIncidents(w io.Writer, output string, incs []*detect.Incident) error {
	if output == "json" {
		sink := alert.NewJSONLines(w)
		for _, inc := range incs {
			if err := sink.Send(context.Background(), *inc); err != nil {
				return err
			}
		}
		return nil
	}
	return writeTable(w, incs, terminalWidth(w))
}

// terminalWidth is the width of the terminal w is, or 0 when w is no
// terminal (a pipe or a file: lines are not cut to a width).
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0
	}
	cols, _, err := term.GetSize(int(f.Fd()))
	if err != nil || cols <= 0 {
		return 80
	}
	return cols
}

// unlimitedSummary is how much of a summary a table line holds when the
// output is no terminal.
const unlimitedSummary = 110

var tableHeader = []string{"ID", "KIND", "SEVERITY", "SOURCE", "FIRST SEEN", "LAST SEEN", "IPS", "CREDS", "IDENTITIES", "ATTEMPTS"}

// writeTable prints one line per incident when the key facts and some of
// the summary fit in width (0: no limit). Only the summary is cut, at a
// word. When even that does not fit, each incident gets a short block of
// lines instead, each within width, with the facts whole.
func writeTable(w io.Writer, incs []*detect.Incident, width int) error {
	if len(incs) == 0 {
		_, err := fmt.Fprintln(w, "no incidents")
		return err
	}
	rows := make([][]string, len(incs))
	widths := make([]int, len(tableHeader))
	for i, h := range tableHeader {
		widths[i] = len(h)
	}
	for i, inc := range incs {
		rows[i] = []string{strconv.FormatInt(inc.ID, 10), inc.Kind, inc.Severity, inc.Source, stamp(inc.FirstSeen), stamp(inc.LastSeen),
			strconv.Itoa(len(inc.IPs)), strconv.Itoa(len(inc.Credentials)), strconv.FormatInt(int64(inc.Identities), 10), strconv.FormatInt(inc.Attempts, 10)}
		for j, c := range rows[i] {
			widths[j] = max(widths[j], utf8.RuneCountInString(c))
		}
	}
	facts := 0
	for _, n := range widths {
		facts += n + 2
	}
	const minSummary = 24
	summary := unlimitedSummary
	if width > 0 {
		summary = width - facts
	}
	if summary < minSummary {
		return writeBlocks(w, incs, width)
	}
	var b strings.Builder
	line := func(cells []string, last string) {
		b.Reset()
		for j, c := range cells {
			b.WriteString(c)
			b.WriteString(strings.Repeat(" ", widths[j]-utf8.RuneCountInString(c)+2))
		}
		b.WriteString(last)
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(tableHeader, "SUMMARY")
	for i, inc := range incs {
		line(rows[i], cutAtWord(inc.Summary, summary))
	}
	return nil
}

// writeBlocks prints each incident as a few lines within width:
//
//	#1 spray high api-nginx
//	    2026-11-27 02:00:00Z .. 02:19:52Z
//	    1 IPs, 1 creds, 150 identities, 150 attempts
//	    203.0.113.66 sprayed 1 credential(s) sk_live_dead across…
func writeBlocks(w io.Writer, incs []*detect.Incident, width int) error {
	const indent = "    "
	for i, inc := range incs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		last := stamp(inc.LastSeen)
		if inc.FirstSeen.UTC().Format(time.DateOnly) == inc.LastSeen.UTC().Format(time.DateOnly) && !inc.LastSeen.IsZero() {
			last = inc.LastSeen.UTC().Format("15:04:05Z")
		}
		groups := [][]string{
			{fmt.Sprintf("#%d", inc.ID), inc.Kind, inc.Severity, inc.Source},
			{stamp(inc.FirstSeen), "..", last},
			{counted(len(inc.IPs), "IP", "IPs") + ",", counted(len(inc.Credentials), "cred", "creds") + ",", counted(inc.Identities, "identity", "identities") + ",", counted(int(inc.Attempts), "attempt", "attempts")},
		}
		for gi, words := range groups {
			first := indent
			if gi == 0 {
				first = ""
			}
			for _, l := range fillWords(words, width, first, indent) {
				fmt.Fprintln(w, l)
			}
		}
		fmt.Fprintln(w, indent+cutAtWord(inc.Summary, width-len(indent)))
	}
	return nil
}

// fillWords lays words out on lines of at most width runes, the first
// starting with first and the others with indent. A word is never split,
// unless it alone is wider than a line.
func fillWords(words []string, width int, first, indent string) []string {
	var lines []string
	cur, n := first, utf8.RuneCountInString(first)
	empty := true
	for _, word := range words {
		wl := utf8.RuneCountInString(word)
		if !empty && n+1+wl > width {
			lines = append(lines, cur)
			cur, n, empty = indent, len(indent), true
		}
		if !empty {
			cur += " "
			n++
		}
		if room := width - n; wl > room && room > 0 {
			word, wl = cutRunes(word, room), room
		}
		cur += word
		n += wl
		empty = false
	}
	return append(lines, cur)
}

// cutAtWord shortens s to at most n runes, at the last space before the
// limit when there is one in its second half, marking the cut with "…".
func cutAtWord(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n <= 1 {
		return "…"
	}
	runes := []rune(s)
	head := string(runes[:n-1])
	if next := runes[n-1]; next == ' ' || strings.ContainsRune(",;:", runes[n-2]) {
		return strings.TrimRight(head, " ,;:(") + "…" // head ends at a word already
	}
	if sp := strings.LastIndexByte(head, ' '); sp >= len(head)/2 {
		return strings.TrimRight(head[:sp], " ,;:(") + "…"
	}
	return head + "…"
}

// cutRunes shortens s to n runes, the last one "…".
func cutRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:max(n-1, 0)]) + "…"
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// counted writes n with the noun's singular or plural: "1 IP", "2 IPs".
func counted(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
