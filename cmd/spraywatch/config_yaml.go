package main

import (
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// yamlPaths walks a decoded YAML document alongside the Go type it is
// decoded into, so that errors name the field path a person wrote
// (sources[0].credential.kind) rather than a Go type or a line alone.
type yamlValue struct{ path, text string }

type yamlPaths struct {
	// at maps a line to the paths of the values on it, with their text.
	at map[int][]yamlValue
	// unknown holds one message per key the type does not have.
	unknown []string
}

var (
	unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	durationType    = reflect.TypeOf(time.Duration(0))
)

func walkYAML(doc *yaml.Node, t reflect.Type) *yamlPaths {
	w := &yamlPaths{at: map[int][]yamlValue{}}
	if doc != nil && doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		w.walk(doc.Content[0], t, "")
	}
	return w
}

func (w *yamlPaths) mark(n *yaml.Node, path string) {
	if path != "" {
		w.at[n.Line] = append(w.at[n.Line], yamlValue{path, n.Value})
	}
}

// pathAt returns the path of the value on line whose text is text, or
// else the first path on that line.
// yaml shortens long values to their first characters and "...".
func (w *yamlPaths) pathAt(line int, text string) (path, value string) {
	vals := w.at[line]
	short, cut := strings.CutSuffix(text, "...")
	for _, v := range vals {
		if v.text == text || (cut && strings.HasPrefix(v.text, short)) {
			return v.path, v.text
		}
	}
	if len(vals) > 0 {
		return vals[0].path, text
	}
	return fmt.Sprintf("line %d", line), text
}

func (w *yamlPaths) walk(n *yaml.Node, t reflect.Type, path string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	w.mark(n, path)
	if reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType) {
		return
	}
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := joinPath(path, k.Value)
			ft, ok := fields[k.Value]
			if !ok {
				msg := fmt.Sprintf("%s: unknown key", p)
				if s := suggest(k.Value, sortedFieldNames(fields)); s != "" {
					msg += fmt.Sprintf(" (did you mean %s?)", s)
				}
				w.unknown = append(w.unknown, msg)
				continue
			}
			w.walk(v, ft, p)
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := joinPath(path, n.Content[i].Value)
			w.walk(n.Content[i+1], t.Elem(), p)
		}
	case (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) && n.Kind == yaml.SequenceNode:
		for i, c := range n.Content {
			w.walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlFields maps the YAML keys of a struct to their types, inline
// structs included.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(opts, "inline") {
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func sortedFieldNames(m map[string]reflect.Type) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var (
	yamlLine      = regexp.MustCompile(`^line (\d+): (.*)$`)
	yamlNotFound  = regexp.MustCompile(`^field \S+ not found in type \S+$`)
	yamlUnmarshal = regexp.MustCompile("^cannot unmarshal !!(\\w+) (?:`(.*)` )?into (\\S+)$")
	goTypeName    = regexp.MustCompile(`\b(?:main|rules|ingest|time)\.[A-Z]\w*`)
)

// message rewrites one of yaml's decode errors: the line becomes the
// field path, the Go type becomes the form the value must take. It
// returns "" for unknown-key errors, which the walk reports itself.
func (w *yamlPaths) message(e string) string {
	m := yamlLine.FindStringSubmatch(e)
	if m == nil {
		return goTypeName.ReplaceAllString(e, "value")
	}
	line, _ := strconv.Atoi(m[1])
	rest := m[2]
	if yamlNotFound.MatchString(rest) {
		return ""
	}
	if u := yamlUnmarshal.FindStringSubmatch(rest); u != nil {
		path, value := w.pathAt(line, u[2])
		if u[2] == "" && (u[1] == "map" || u[1] == "seq") {
			return fmt.Sprintf("%s: %s", path, expectedForm(u[1], u[3]))
		}
		return fmt.Sprintf("%s: %q: %s", path, value, expectedForm(u[1], u[3]))
	}
	path, _ := w.pathAt(line, "")
	if inner := yamlLine.FindStringSubmatch(rest); inner != nil {
		rest = inner[2] // an UnmarshalYAML error that names its own line
	}
	return fmt.Sprintf("%s: %s", path, goTypeName.ReplaceAllString(rest, "value"))
}

// expectedForm says, for a Go type yaml named, what a value must look like.
func expectedForm(tag, goType string) string {
	switch {
	case goType == "time.Duration":
		return "not a duration: write a number and a unit, like 90s, 15m or 1h30m"
	case strings.HasPrefix(goType, "[]"):
		return "must be a list, like [a, b]"
	case strings.HasPrefix(goType, "map[") || goTypeName.MatchString(goType):
		if tag == "seq" {
			return "must be a mapping of keys, not a list"
		}
		return "must be a mapping of keys"
	case goType == "bool":
		return "must be true or false"
	case strings.HasPrefix(goType, "int") || strings.HasPrefix(goType, "uint"):
		return "must be a whole number"
	case strings.HasPrefix(goType, "float"):
		return "must be a number"
	case goType == "string":
		return "must be a single value, not a list or mapping"
	}
	return "has the wrong type"
}

// suggest returns the candidate closest to s when it is close enough to be
// a typo, or "".
func suggest(s string, candidates []string) string {
	limit := min(max(2, len(s)/3), 3)
	best, bestD := "", limit+1
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" && len(s) >= 3 {
		for _, c := range candidates {
			if strings.HasPrefix(c, s) || strings.HasPrefix(s, c) {
				return c
			}
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
