// Command nxadm measures what github.com/nxadm/tail and spraywatch's own
// follower (ingest/tail) deliver across log rotations that real servers and
// logrotate produce. It is a module of its own, so that spraywatch does not
// depend on nxadm/tail; testdata/bench/nxadm.sh runs it.
//
// Each trial writes numbered lines to access.log in a fresh directory
// while a follower reads it from the start, then performs one scenario:
//
//	rename      10 lines; rename to access.log.1; 10 more lines through the
//	            still-open descriptor (a writer that has not reopened yet);
//	            a new access.log with 10 lines
//	copytrunc   10 lines; copy to access.log.1 and truncate; 10 lines
//	quick       rename and a new file within 5 ms, with no pause for the
//	            follower to see the first lines
//
// and counts the distinct lines each follower delivered (each once is
// right; a line delivered twice counts as a duplicate).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	nxtail "github.com/nxadm/tail"

	"github.com/spraywatch/spraywatch/ingest/tail"
)

func main() {
	trials := flag.Int("trials", 10, "trials per scenario and follower")
	settle := flag.Duration("settle", 1500*time.Millisecond, "how long the follower gets after the last write")
	flag.Parse()
	fmt.Printf("%-10s %-14s %8s %8s %8s %6s\n", "scenario", "follower", "written", "median", "min", "dups")
	for _, sc := range []string{"rename", "copytrunc", "quick"} {
		for _, name := range []string{"nxadm/tail", "ingest/tail"} {
			var got []int
			dups := 0
			written := 0
			for i := 0; i < *trials; i++ {
				n, d, w, err := trial(sc, name, *settle)
				if err != nil {
					fmt.Fprintln(os.Stderr, "nxadm:", err)
					os.Exit(1)
				}
				got, dups, written = append(got, n), dups+d, w
			}
			sort.Ints(got)
			fmt.Printf("%-10s %-14s %8d %8d %8d %6d\n", sc, name, written, got[len(got)/2], got[0], dups)
		}
	}
}

// follower delivers lines until stop is closed.
type follower func(path string, lines chan<- string, stop <-chan struct{}) error

func trial(scenario, name string, settle time.Duration) (distinct, dups, written int, err error) {
	dir, err := os.MkdirTemp("", "nxadm-")
	if err != nil {
		return 0, 0, 0, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "access.log")
	w, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, 0, 0, err
	}
	lines := make(chan string, 1000)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ferr error
	f := map[string]follower{"nxadm/tail": followNxadm, "ingest/tail": followOwn}[name]
	wg.Go(func() { ferr = f(path, lines, stop) })
	n := 0
	write := func(w *os.File, k int) {
		for range k {
			n++
			fmt.Fprintf(w, "line %d\n", n)
		}
	}
	time.Sleep(300 * time.Millisecond) // the follower is up
	write(w, 10)
	if scenario != "quick" {
		time.Sleep(500 * time.Millisecond)
	}
	switch scenario {
	case "rename", "quick":
		if err := os.Rename(path, path+".1"); err != nil {
			return 0, 0, 0, err
		}
		write(w, 10) // late writes to the moved file
		w.Close()
		if scenario == "quick" {
			time.Sleep(5 * time.Millisecond)
		}
		nw, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return 0, 0, 0, err
		}
		write(nw, 10)
		nw.Close()
	case "copytrunc":
		r, _ := os.Open(path)
		c, _ := os.Create(path + ".1")
		io.Copy(c, r)
		r.Close()
		c.Close()
		if err := w.Truncate(0); err != nil {
			return 0, 0, 0, err
		}
		time.Sleep(200 * time.Millisecond)
		write(w, 10)
		w.Close()
	}
	time.Sleep(settle)
	close(stop)
	wg.Wait()
	close(lines)
	if ferr != nil {
		return 0, 0, 0, ferr
	}
	seen := map[string]int{}
	for l := range lines {
		seen[l]++
	}
	for _, c := range seen {
		if c > 1 {
			dups += c - 1
		}
	}
	return len(seen), dups, n, nil
}

func followNxadm(path string, lines chan<- string, stop <-chan struct{}) error {
	t, err := nxtail.TailFile(path, nxtail.Config{Follow: true, ReOpen: true, MustExist: true, Logger: nxtail.DiscardingLogger})
	if err != nil {
		return err
	}
	for {
		select {
		case l, ok := <-t.Lines:
			if !ok {
				return nil
			}
			lines <- strings.TrimSpace(l.Text)
		case <-stop:
			t.Stop()
			t.Cleanup()
			return nil
		}
	}
}

// followOwn runs spraywatch's follower as the daemon does: Tick on file
// events and every poll interval (here 250 ms, the default).
func followOwn(path string, lines chan<- string, stop <-chan struct{}) error {
	t := tail.New(tail.Options{Patterns: []string{path}, RotateWait: time.Minute, Logger: slog.New(slog.DiscardHandler)})
	defer t.Close()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	emit := func(l *tail.Line) error {
		if !l.PositionOnly && !l.TooLong {
			lines <- string(l.Text)
		}
		return nil
	}
	for {
		if err := t.Tick(context.Background(), time.Now(), emit); err != nil {
			return err
		}
		select {
		case <-stop:
			return t.Tick(context.Background(), time.Now(), emit)
		case <-tick.C:
		}
	}
}
