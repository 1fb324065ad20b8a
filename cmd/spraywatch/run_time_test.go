package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// A line dated years ahead is skipped as future_time, and the spray after
// it is still judged on its real time.
func TestRunFutureLineDoesNotBlind(t *testing.T) {
	e := newRTEnv(t, "logs/access.log", "1s")
	w := e.create("logs/access.log")
	future := time.Now().UTC().AddDate(5, 0, 0)
	if _, err := fmt.Fprintf(w, `192.0.2.1 - - [%s] "GET /api/v1/clients/c1/resource HTTP/1.1" 200 5 "-" "x" key=sk_live_0000 rt=0.001`+"\n",
		future.Format("02/Jan/2006:15:04:05 -0700")); err != nil {
		t.Fatal(err)
	}
	e.write(w, 150)
	d := e.start()
	e.waitCounted(d, e.written)
	e.stop(d)
	e.check()
}

// Lines out of order within the lateness still count in their windows:
// the spray is written in shuffled blocks of a minute.
func TestRunOutOfOrderWithinLateness(t *testing.T) {
	e := newRTEnv(t, "logs/access.log", "1s")
	w := e.create("logs/access.log")
	var b strings.Builder
	for block := 0; block < 150; block += 30 {
		for j := 29; j >= 0; j-- { // each minute's lines newest first
			b.WriteString(e.sprayLine(block + j))
			b.WriteByte('\n')
		}
	}
	if _, err := w.WriteString(b.String()); err != nil {
		t.Fatal(err)
	}
	e.spray, e.written = 150, 150
	d := e.start()
	e.waitCounted(d, e.written)
	e.stop(d)
	e.check()
}
