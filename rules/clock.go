package rules

import (
	"time"

	"github.com/spraywatch/spraywatch/ingest"
)

// A source's clock is the latest time of its lines, and it never goes
// back: a rule judges the windows that end there, and a line far behind it
// is too late for any window. One line dated ahead (a host with a wrong
// clock or zone, a clock stepped and stepped back) would move it by
// hours, and every correctly dated line after it would be late: judged by
// no rule, while open incidents close at once. So a line dated more than
// jumpSlack ahead of its source's clock is held back, not counted yet:
//
//   - when the lines after it keep on from its time (none of them more than
//     jumpSlack before the latest held one) until jumpLines are held, the
//     source's time really moved on (traffic came back after a quiet hour,
//     a server's clock was set right): the held lines are taken in order,
//     the first moving the clock;
//   - when a line goes back more than jumpSlack before them (the source's
//     other lines go on at the old time), the held lines were outliers:
//     they are left out, counted in Counters.Ahead, and the clock stays;
//   - when ticks move the clock up to them (a live daemon's time passing),
//     when the input ends (Finish), or when a daemon has read all its
//     source has written and they are not dated ahead of its own clock
//     (TakeHeld), nothing said they were wrong: they are taken.
//
// Held lines wait for at most jumpLines-1 more lines, so the clock of a
// sparse source (a line every ten minutes) lags that many lines. A run of
// jumpLines lines that agree among themselves moves the clock whatever
// comes after: a host whose clock is hours ahead and writes lines in
// bursts is not caught here (the daemon skips lines dated more than a day
// ahead of its own clock).
const (
	jumpSlack = int64(5 * time.Minute / time.Second)
	jumpLines = 5
)

// holdAhead reports whether ev was held back (or, with the lines held
// before it, left out) rather than observed now; it observes the held
// lines that turn out to be the source's time.
func (e *Engine) holdAhead(ev *ingest.Event) bool {
	c := e.clockOf(ev.Source)
	t := ev.Time.Unix()
	if n := len(c.held); n > 0 && t < c.held[n-1].Time.Unix()-jumpSlack {
		e.dropHeld(ev.Source, c, t)
	}
	if len(c.held) == 0 && (c.watermark == 0 || t <= c.watermark+jumpSlack) {
		return false
	}
	c.held = append(c.held, *ev)
	if len(c.held) >= jumpLines {
		e.takeHeld(c)
	}
	return true
}

// takeHeld observes the lines held on clock c, in the order they came.
func (e *Engine) takeHeld(c *clock) {
	held := c.held
	c.held = nil
	for i := range held {
		e.observeLine(&held[i])
	}
}

// dropHeld leaves out the lines held on clock c: a line at t went back
// before them, so they were ahead of the source's time.
func (e *Engine) dropHeld(source string, c *clock, t int64) {
	n := len(c.held)
	e.Ahead += int64(n)
	if !c.warnedAhead {
		c.warnedAhead = true
		e.log.Warn("lines dated ahead of their source's other lines left out (counted as ahead; later ones are counted without a warning)",
			"source", source, "lines", n, "ahead", time.Duration(c.held[n-1].Time.Unix()-t)*time.Second)
	}
	clear(c.held)
	c.held = c.held[:0]
}

// takeHeldReached observes the held lines of every clock that ticks moved
// up to them.
func (e *Engine) takeHeldReached() {
	for _, c := range e.clocks {
		if n := len(c.held); n > 0 && c.held[n-1].Time.Unix() <= c.watermark+jumpSlack {
			e.takeHeld(c)
		}
	}
}

// TakeHeld observes the lines held on source's clock, unless one is dated
// more than five minutes after wall (the daemon's own clock): a daemon
// calls it when it has read all its source has written, so that the lines
// held last, which nothing may come to confirm for a long while (a sparse
// log), are counted before their positions are saved. A line dated ahead
// of the machine's own clock stays held: that is no time a log can have.
func (e *Engine) TakeHeld(source string, wall time.Time) {
	c := e.clockOf(source)
	if n := len(c.held); n > 0 && c.held[n-1].Time.Unix() <= wall.Unix()+jumpSlack {
		e.takeHeld(c)
	}
}

// takeAllHeld observes every held line: the input ended, and nothing came
// to say they were wrong.
func (e *Engine) takeAllHeld() {
	for _, c := range e.clocks {
		if len(c.held) > 0 {
			e.takeHeld(c)
		}
	}
}
