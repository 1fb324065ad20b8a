package main

import (
	"fmt"
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
