package ingest

import (
	"bytes"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// referenceMatch is pathTemplate.match as first written: every segment
// cut at its '/' and compared on its own.
func referenceMatch(t *pathTemplate, path []byte) ([]byte, bool) {
	var id []byte
	rest := path
	for i, seg := range t.segs {
		if len(rest) == 0 || rest[0] != '/' {
			return nil, false
		}
		rest = rest[1:]
		end := bytes.IndexByte(rest, '/')
		if end < 0 {
			end = len(rest)
		}
		got := rest[:end]
		rest = rest[end:]
		switch {
		case i == t.capture:
			if len(got) == 0 {
				return nil, false
			}
			id = got
		case seg == "*" || (len(seg) > 1 && seg[0] == '{'):
		case string(got) != seg:
			return nil, false
		}
	}
	if len(rest) > 1 && !t.trailing {
		return nil, false
	}
	if t.capture < 0 {
		return nil, true
	}
	return id, true
}

// TestTemplateMatchesReference matches random paths against random
// templates and holds match to the reference: the same verdict and the
// same captured identity. Replay a failure with TEMPLATE_SEED=<seed>.
func TestTemplateMatchesReference(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("TEMPLATE_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	segs := []string{"api", "v1", "clients", "c", "", "*", "{identity}", "{id}", "{", "ap", "apix"}
	pathSegs := []string{"api", "v1", "clients", "c", "", "c-1", "apix", "ap", "{", "x%20y", "api/v1"}
	matched := 0
	for range 2000 {
		var tb strings.Builder
		capture := false
		for i, n := 0, r.IntN(5); i < n; i++ {
			seg := segs[r.IntN(len(segs))]
			if seg == "{identity}" {
				if capture {
					continue
				}
				capture = true
			}
			tb.WriteString("/" + seg)
		}
		if tb.Len() == 0 || r.IntN(2) == 0 {
			tb.WriteString("/")
		}
		tmpl, err := compileTemplate(tb.String())
		if err != nil {
			t.Fatalf("seed %d: compileTemplate(%q): %v", seed, tb.String(), err)
		}
		for range 50 {
			var pb []byte
			// Half the paths follow the template's own segments.
			for i := range len(tmpl.segs) + r.IntN(3) - 1 {
				seg := pathSegs[r.IntN(len(pathSegs))]
				if i < len(tmpl.segs) && r.IntN(3) > 0 && isLiteralSegment(tmpl.segs[i]) {
					seg = tmpl.segs[i]
				}
				pb = append(pb, '/')
				pb = append(pb, seg...)
			}
			if r.IntN(3) == 0 {
				pb = append(pb, '/')
			}
			gid, gok := tmpl.match(pb)
			wid, wok := referenceMatch(&tmpl, pb)
			if gok != wok || !bytes.Equal(gid, wid) || (gid == nil) != (wid == nil) {
				t.Fatalf("seed %d: template %q, path %q: match = %q, %v; reference %q, %v", seed, tmpl.raw, pb, gid, gok, wid, wok)
			}
			if gok {
				matched++
			}
		}
	}
	t.Logf("%d of 100000 paths matched", matched)
	if matched < 5000 {
		t.Errorf("only %d of 100000 random paths matched their template: the test tries too few", matched)
	}
}
