package tail

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Unfollowed says why a path pattern names no file a Tailer follows, or
// "" when it names one: a directory, a glob whose matches all look
// rotated or compressed (x.log.1, x.log.2.gz: they are history, read by
// a replay, never followed as live files), a directory that does not
// exist, or simply no file.
func Unfollowed(pattern string) string {
	if fi, err := os.Stat(pattern); err == nil && fi.IsDir() {
		return fmt.Sprintf("%s is a directory: name its files (%s)", pattern, filepath.Join(pattern, "*.log"))
	}
	if !strings.ContainsAny(pattern, "*?[") {
		if _, err := os.Stat(pattern); err != nil {
			return missing(pattern)
		}
		return ""
	}
	matches, err := filepath.Glob(pattern)
	if err != nil {
		return fmt.Sprintf("%s: %v", pattern, err)
	}
	var rotated, dirs []string
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil && fi.IsDir() {
			dirs = append(dirs, m)
			continue
		}
		if !looksRotated(m) {
			return ""
		}
		rotated = append(rotated, m)
	}
	switch {
	case len(rotated) > 0:
		return fmt.Sprintf("%s matches only rotated or compressed files (%d, such as %s): they are not followed as live logs; replay reads them", pattern, len(rotated), filepath.Base(rotated[0]))
	case len(dirs) > 0:
		return fmt.Sprintf("%s matches only directories (such as %s): name their files", pattern, dirs[0])
	}
	return missing(pattern)
}

func missing(pattern string) string {
	dir := filepath.Dir(pattern)
	if _, err := os.Stat(dir); err != nil && !strings.ContainsAny(dir, "*?[") {
		return fmt.Sprintf("%s: its directory %s cannot be read: %v", pattern, dir, err)
	}
	return fmt.Sprintf("%s matches no file", pattern)
}

// Unmatched says why the Tailer's patterns name no file it follows (see
// Unfollowed), one reason per pattern that names none.
func (t *Tailer) Unmatched() []string {
	var out []string
	for _, p := range t.o.Patterns {
		if why := Unfollowed(p); why != "" {
			out = append(out, why)
		}
	}
	return out
}
