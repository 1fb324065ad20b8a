package tail

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/fsnotify/fsnotify"
)

// Watch wakes a caller when something changes in the directories that
// hold a Tailer's files (a write, a create, a rename, a delete), so that
// Tick runs at once instead of at the next poll. It never reads: Tick
// still decides what a change means, and the caller keeps polling, which
// covers what inotify misses (network file systems, a full event queue).
type Watch struct {
	w    *fsnotify.Watcher
	log  *slog.Logger
	c    chan struct{}
	done chan struct{}

	mu   sync.Mutex
	dirs map[string]bool
}

// NewWatch watches the directories of patterns (and of their symlinks'
// targets). Close it when done.
func NewWatch(patterns []string, log *slog.Logger) (*Watch, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch files: %w", err)
	}
	w := &Watch{w: fw, log: log, c: make(chan struct{}, 1), done: make(chan struct{}), dirs: map[string]bool{}}
	go w.run()
	w.Refresh(patterns)
	return w, nil
}

// C receives a value after a change; changes coalesce while it is full.
func (w *Watch) C() <-chan struct{} { return w.c }

// Refresh adds the directories the patterns name now (a symlink may have
// been pointed into another one).
func (w *Watch) Refresh(patterns []string) {
	want := map[string]bool{}
	for _, p := range patterns {
		dir := filepath.Dir(p)
		for strings.ContainsAny(dir, "*?[") {
			dir = filepath.Dir(dir)
		}
		want[dir] = true
		matches := []string{p}
		if strings.ContainsAny(p, "*?[") {
			matches, _ = filepath.Glob(p)
		}
		for _, m := range matches {
			if fi, err := os.Lstat(m); err == nil && fi.Mode()&os.ModeSymlink != 0 {
				if real, err := filepath.EvalSymlinks(m); err == nil {
					want[filepath.Dir(real)] = true
				}
			}
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for d := range want {
		if w.dirs[d] {
			continue
		}
		if err := w.w.Add(d); err != nil {
			w.log.Debug("cannot watch directory; polling it", "dir", d, "err", err)
			continue
		}
		w.dirs[d] = true
	}
}

func (w *Watch) run() {
	for {
		select {
		case _, ok := <-w.w.Events:
			if !ok {
				return
			}
			select {
			case w.c <- struct{}{}:
			default:
			}
		case err, ok := <-w.w.Errors:
			if !ok {
				return
			}
			// An overflowed queue loses events, not lines: the poll and
			// the next event still run Tick.
			w.log.Debug("file events", "err", err)
			select {
			case w.c <- struct{}{}:
			default:
			}
		case <-w.done:
			return
		}
	}
}

// Close stops watching.
func (w *Watch) Close() error {
	close(w.done)
	return w.w.Close()
}
