package ingest

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"
)

// Stream is one sequence of files read in order with one parser: usually a
// log and its rotated predecessors, oldest first.
type Stream struct {
	Parser *Parser
	Paths  []string
}

// ReadOptions bound and observe a replay.
type ReadOptions struct {
	// Since and Until keep only events in [Since, Until); zero means open.
	Since, Until time.Time
	// NotAfter, when set, skips events later than it as future_time: a
	// wrong timezone or a broken clock, which would hold windows open.
	NotAfter     time.Time
	MaxLineBytes int
	// Progress, when set, is called with bytes consumed from disk.
	Progress func(n int64)
	// FileError, when set, is told about each file that could not be read
	// in full. Reading goes on with the next file.
	FileError func(path string, err error)
}

// Stats counts what reading one source came to.
type Stats struct {
	Source string `json:"source"`
	Lines  int64  `json:"lines"`
	Parsed int64  `json:"parsed"`
	// Filtered lines parsed fine but were outside the routes or time range,
	// or were rightly no event (ErrNoise, ErrJoined); FilteredBy says why.
	Filtered   int64            `json:"filtered"`
	FilteredBy map[string]int64 `json:"filtered_by"`
	Skipped    map[string]int64 `json:"skipped"`
	// Samples holds one redacted example line per skip reason.
	Samples        map[string]string `json:"samples"`
	First          time.Time         `json:"first"`
	Last           time.Time         `json:"last"`
	RawCredentials int64             `json:"raw_credentials"`
	// SchemeOnly counts credential labels that were only a fixed scheme
	// prefix such as sk_live_, which cannot tell keys apart.
	SchemeOnly int64 `json:"scheme_only_credentials"`
	// Credentials counts events that carried a credential label.
	Credentials int64 `json:"credentials"`
	// Successes and Failures count events by outcome (failures: every
	// outcome that is a failed attempt).
	Successes  int64 `json:"successes"`
	Failures   int64 `json:"failures"`
	Files      int   `json:"files"`
	FileErrors int   `json:"file_errors"`
	// OutOfOrder counts lines more than a minute older than the latest.
	OutOfOrder int64 `json:"out_of_order"`
}

// NewStats returns empty statistics for a source.
func NewStats(source string) *Stats {
	return &Stats{Source: source, Skipped: map[string]int64{}, Samples: map[string]string{}, FilteredBy: map[string]int64{}}
}

// Skip counts a skipped line under reason, keeping a redacted sample.
func (s *Stats) Skip(reason string, line []byte) {
	s.Skipped[reason]++
	if _, ok := s.Samples[reason]; !ok && line != nil {
		s.Samples[reason] = Redact(line, 200)
	}
}

// Merge adds o's counts to s.
func (s *Stats) Merge(o *Stats) {
	s.Lines += o.Lines
	s.Parsed += o.Parsed
	s.Filtered += o.Filtered
	s.RawCredentials += o.RawCredentials
	s.Successes += o.Successes
	s.Failures += o.Failures
	s.SchemeOnly += o.SchemeOnly
	s.Credentials += o.Credentials
	s.Files += o.Files
	s.FileErrors += o.FileErrors
	s.OutOfOrder += o.OutOfOrder
	for k, v := range o.Skipped {
		s.Skipped[k] += v
	}
	for k, v := range o.FilteredBy {
		s.FilteredBy[k] += v
	}
	for k, v := range o.Samples {
		if _, ok := s.Samples[k]; !ok {
			s.Samples[k] = v
		}
	}
	if !o.First.IsZero() && (s.First.IsZero() || o.First.Before(s.First)) {
		s.First = o.First
	}
	if o.Last.After(s.Last) {
		s.Last = o.Last
	}
}

// Observe updates the counters for a parsed event.
func (s *Stats) Observe(ev *Event) {
	s.Parsed++
	if s.First.IsZero() || ev.Time.Before(s.First) {
		s.First = ev.Time
	}
	if ev.Time.After(s.Last) {
		s.Last = ev.Time
	} else if ev.Time.Before(s.Last.Add(-time.Minute)) {
		s.OutOfOrder++
	}
	if ev.RawCredential {
		s.RawCredentials++
	}
	switch {
	case ev.Outcome == Success:
		s.Successes++
	case ev.Outcome.Attempt():
		s.Failures++
	}
	if ev.Credential != "" {
		s.Credentials++
		if ev.SchemeOnly {
			s.SchemeOnly++
		}
	}
}

// Classify records the outcome of parsing one line: it returns true when ev
// is an event to keep.
func (s *Stats) Classify(err error, line []byte) bool {
	s.Lines++
	switch {
	case err == nil:
		return true
	case IsFiltered(err):
		s.Parsed++
		s.Filtered++
		s.FilteredBy[err.Error()]++
	default:
		s.Skip(err.Error(), line)
	}
	return false
}

// IsFiltered reports errors from Parse that are not skips: the line was
// read fine but is rightly no event (outside the routes, a Flask access line
// joined to its app line, a server banner or traceback).
func IsFiltered(err error) bool {
	return errors.Is(err, ErrNotAuthRoute) || errors.Is(err, ErrOutsideTime) || errors.Is(err, ErrJoined) || errors.Is(err, ErrNoise)
}

const batchSize = 512

type batch struct {
	events []Event
}

// Read reads every stream, parses the lines, and calls emit with the events
// of all streams merged in event-time order. emit is called from the calling
// goroutine only. It returns the per-source statistics, sorted by source.
func Read(parent context.Context, streams []Stream, o ReadOptions, emit func(*Event) error) ([]*Stats, error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	chans := make([]chan *batch, len(streams))
	stats := make([]*Stats, len(streams))
	free := make(chan *batch, 4*len(streams)+4)
	errc := make(chan error, len(streams))
	for i, st := range streams {
		chans[i] = make(chan *batch, 4)
		stats[i] = NewStats(st.Parser.Name())
		go func() {
			defer close(chans[i])
			errc <- readStream(ctx, st, o, stats[i], chans[i], free)
		}()
	}
	err := merge(chans, free, emit)
	cancel()
	for range streams {
		if e := <-errc; e != nil && err == nil && !errors.Is(e, context.Canceled) {
			err = e
		}
	}
	if err == nil {
		err = parent.Err()
	}
	bySource := map[string]*Stats{}
	var out []*Stats
	for _, s := range stats {
		if t, ok := bySource[s.Source]; ok {
			t.Merge(s)
			continue
		}
		bySource[s.Source] = s
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Source < out[j].Source })
	return out, err
}

func readStream(ctx context.Context, st Stream, o ReadOptions, stats *Stats, out chan<- *batch, free chan *batch) error {
	b := getBatch(free)
	send := func() error {
		if len(b.events) == 0 {
			return nil
		}
		select {
		case out <- b:
		case <-ctx.Done():
			return ctx.Err()
		}
		b = getBatch(free)
		return nil
	}
	for _, path := range st.Paths {
		stats.Files++
		if err := readFile(ctx, path, st.Parser, o, stats, &b, send); err != nil {
			if errors.Is(err, context.Canceled) {
				return err
			}
			stats.FileErrors++
			if o.FileError != nil {
				o.FileError(path, err)
			}
		}
	}
	return send()
}

func getBatch(free chan *batch) *batch {
	select {
	case b := <-free:
		b.events = b.events[:0]
		return b
	default:
		return &batch{events: make([]Event, 0, batchSize)}
	}
}

// readFile appends the events of one file to *cur, calling send when the
// batch is full (send replaces *cur).
func readFile(ctx context.Context, path string, p *Parser, o ReadOptions, stats *Stats, cur **batch, send func() error) error {
	lf, err := Open(path)
	if err != nil {
		return err
	}
	defer lf.Close()
	lr := NewLineReader(lf.Reader(), 0, o.MaxLineBytes)
	var lastPos int64
	for n := 0; ; n++ {
		line, off, err := lr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, ErrTooLong) {
			stats.Lines++
			stats.Skip(ErrTooLong.Error(), lr.TooLongHead())
			continue
		}
		if err != nil {
			return fmt.Errorf("cannot read %s at byte %d: %w", path, off, err)
		}
		if n&1023 == 0 {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if o.Progress != nil {
				pos := lf.Position()
				o.Progress(pos - lastPos)
				lastPos = pos
			}
		}
		b := *cur
		b.events = append(b.events, Event{})
		ev := &b.events[len(b.events)-1]
		perr := p.Parse(line, ev)
		if perr == nil && ((!o.Since.IsZero() && ev.Time.Before(o.Since)) || (!o.Until.IsZero() && !ev.Time.Before(o.Until))) {
			perr = ErrOutsideTime
		}
		if perr == nil && !o.NotAfter.IsZero() && ev.Time.After(o.NotAfter) {
			perr = ErrFuture
		}
		if !stats.Classify(perr, line) {
			b.events = b.events[:len(b.events)-1]
			continue
		}
		ev.Pos = Pos{File: path, Inode: lf.Inode, Offset: off}
		stats.Observe(ev)
		if len(b.events) == cap(b.events) {
			if err := send(); err != nil {
				return err
			}
		}
	}
	if o.Progress != nil {
		o.Progress(lf.Size - lastPos)
	}
	return nil
}

// merge emits the events of several time-ordered channels in time order.
func merge(chans []chan *batch, free chan *batch, emit func(*Event) error) error {
	h := &heads{}
	for i, c := range chans {
		if b, ok := <-c; ok {
			heap.Push(h, &head{b: b, c: i})
		}
	}
	for h.Len() > 0 {
		top := (*h)[0]
		ev := &top.b.events[top.i]
		if err := emit(ev); err != nil {
			drain(chans)
			return err
		}
		top.i++
		if top.i == len(top.b.events) {
			select {
			case free <- top.b:
			default:
			}
			b, ok := <-chans[top.c]
			if !ok {
				heap.Pop(h)
				continue
			}
			top.b, top.i = b, 0
		}
		if h.Len() > 1 {
			heap.Fix(h, 0)
		}
	}
	return nil
}

func drain(chans []chan *batch) {
	for _, c := range chans {
		go func() {
			for range c {
			}
		}()
	}
}

type head struct {
	b *batch
	i int
	c int
}

type heads []*head

func (h heads) Len() int { return len(h) }
func (h heads) Less(i, j int) bool {
	return h[i].b.events[h[i].i].Time.Before(h[j].b.events[h[j].i].Time)
}
func (h heads) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *heads) Push(x any)   { *h = append(*h, x.(*head)) }
func (h *heads) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
