package ingest

import (
	"errors"
	"time"
)

// Sentinel errors for the reasons a line is skipped. Their text is the
// reason key shown in summaries and metrics.
var (
	ErrNoMatch      = errors.New("layout_mismatch")
	ErrBadTime      = errors.New("bad_time")
	ErrBadIP        = errors.New("bad_ip")
	ErrBadStatus    = errors.New("bad_status")
	ErrNotObject    = errors.New("not_json_object")
	ErrBadJSON      = errors.New("bad_json")
	ErrTooLong      = errors.New("line_too_long")
	ErrInvalidUTF8  = errors.New("invalid_utf8")
	ErrEmpty        = errors.New("empty_line")
	ErrNotAuthRoute = errors.New("filtered_route")
	// ErrOutsideTime: the line is outside ReadOptions.Since/Until.
	ErrOutsideTime = errors.New("filtered_time")
	ErrNoIdentity  = errors.New("no_identity")
	ErrNotRequest  = errors.New("not_a_request")
	// ErrFuture: the line's time is later than ReadOptions.NotAfter.
	ErrFuture = errors.New("future_time")
	// ErrNoise and ErrJoined are not skips but lines that are, rightly, no
	// event: a development server's banner or a traceback, and a Flask
	// access line joined to the application line of the same request.
	ErrNoise  = errors.New("not_an_event")
	ErrJoined = errors.New("joined")
)

// month reads an English month abbreviation: 1 for Jan, 0 for none.
func month(b []byte) int {
	switch string(b) {
	case "Jan":
		return 1
	case "Feb":
		return 2
	case "Mar":
		return 3
	case "Apr":
		return 4
	case "May":
		return 5
	case "Jun":
		return 6
	case "Jul":
		return 7
	case "Aug":
		return 8
	case "Sep":
		return 9
	case "Oct":
		return 10
	case "Nov":
		return 11
	case "Dec":
		return 12
	}
	return 0
}

// ParseTime reads the timestamp shapes web servers and Python loggers write,
// without allocating:
//
//	28/Nov/2026:16:03:41 +0000        nginx $time_local, gunicorn %(t)s
//	28/Nov/2026 16:03:41              werkzeug (no zone: loc)
//	2026-11-28T16:03:41+00:00         $time_iso8601, RFC 3339, fractions allowed
//	2026-11-28 16:03:41,123           Python logging asctime (no zone: loc)
//	1795881821.123 / 1795881821123    epoch seconds ($msec) or milliseconds
//
// Surrounding brackets are ignored.
func ParseTime(b []byte, loc *time.Location) (time.Time, error) {
	if len(b) > 0 && b[0] == '[' {
		b = b[1:]
	}
	if len(b) > 0 && b[len(b)-1] == ']' {
		b = b[:len(b)-1]
	}
	if len(b) < 10 {
		return epoch(b)
	}
	switch {
	case b[2] == '/':
		return clfTime(b, loc)
	case b[4] == '-':
		return isoTime(b, loc)
	}
	return epoch(b)
}

// maxNumDigits bounds num: 18 decimal digits always fit an int64, so a
// longer field is rejected rather than wrapped around.
const maxNumDigits = 18

func num(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > maxNumDigits {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func clfTime(b []byte, loc *time.Location) (time.Time, error) {
	// 28/Nov/2026:16:03:41 +0000 or 28/Nov/2026 16:03:41
	if len(b) < 20 || b[6] != '/' || (b[11] != ':' && b[11] != ' ') || b[14] != ':' || b[17] != ':' {
		return time.Time{}, ErrBadTime
	}
	day, ok1 := num(b[0:2])
	year, ok2 := num(b[7:11])
	hh, ok3 := num(b[12:14])
	mm, ok4 := num(b[15:17])
	ss, ok5 := num(b[18:20])
	if !(ok1 && ok2 && ok3 && ok4 && ok5) {
		return time.Time{}, ErrBadTime
	}
	mon := month(b[3:6])
	if mon == 0 || !validDate(year, mon, day, hh, mm, ss) {
		return time.Time{}, ErrBadTime
	}
	rest := b[20:]
	if len(rest) == 0 {
		return checked(time.Date(year, time.Month(mon), day, hh, mm, ss, 0, loc))
	}
	if len(rest) != 6 || rest[0] != ' ' {
		return time.Time{}, ErrBadTime
	}
	off, ok := zoneOffset(rest[1:])
	if !ok {
		return time.Time{}, ErrBadTime
	}
	return checked(time.Date(year, time.Month(mon), day, hh, mm, ss, 0, time.UTC).Add(-off))
}

// zoneOffset reads +hhmm, -hhmm, +hh:mm or Z.
func zoneOffset(b []byte) (time.Duration, bool) {
	if len(b) == 1 && (b[0] == 'Z' || b[0] == 'z') {
		return 0, true
	}
	if len(b) == 6 && b[3] == ':' {
		b = []byte{b[0], b[1], b[2], b[4], b[5]}
	}
	if len(b) != 5 || (b[0] != '+' && b[0] != '-') {
		return 0, false
	}
	h, ok1 := num(b[1:3])
	m, ok2 := num(b[3:5])
	if !ok1 || !ok2 || h > 23 || m > 59 {
		return 0, false
	}
	d := time.Duration(h)*time.Hour + time.Duration(m)*time.Minute
	if b[0] == '-' {
		d = -d
	}
	return d, true
}

func isoTime(b []byte, loc *time.Location) (time.Time, error) {
	// 2026-11-28T16:03:41[.frac|,frac][zone]
	if len(b) < 19 || b[7] != '-' || (b[10] != 'T' && b[10] != ' ') || b[13] != ':' || b[16] != ':' {
		return time.Time{}, ErrBadTime
	}
	year, ok1 := num(b[0:4])
	mon, ok2 := num(b[5:7])
	day, ok3 := num(b[8:10])
	hh, ok4 := num(b[11:13])
	mm, ok5 := num(b[14:16])
	ss, ok6 := num(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || !validDate(year, mon, day, hh, mm, ss) {
		return time.Time{}, ErrBadTime
	}
	rest := b[19:]
	nsec := 0
	if len(rest) > 0 && (rest[0] == '.' || rest[0] == ',') {
		i := 1
		scale := 100000000
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			nsec += int(rest[i]-'0') * scale
			scale /= 10
			i++
		}
		if i == 1 {
			return time.Time{}, ErrBadTime
		}
		rest = rest[i:]
	}
	if len(rest) == 0 {
		return checked(time.Date(year, time.Month(mon), day, hh, mm, ss, nsec, loc))
	}
	off, ok := zoneOffset(rest)
	if !ok {
		return time.Time{}, ErrBadTime
	}
	return checked(time.Date(year, time.Month(mon), day, hh, mm, ss, nsec, time.UTC).Add(-off))
}

func epoch(b []byte) (time.Time, error) {
	intPart, frac := b, []byte(nil)
	for i, c := range b {
		if c == '.' {
			intPart, frac = b[:i], b[i+1:]
			break
		}
	}
	n, ok := num(intPart)
	if !ok || len(intPart) > 16 {
		return time.Time{}, ErrBadTime
	}
	nsec := 0
	scale := 100000000
	for _, c := range frac {
		if c < '0' || c > '9' {
			return time.Time{}, ErrBadTime
		}
		nsec += int(c-'0') * scale
		scale /= 10
	}
	switch {
	case n >= 1e14: // microseconds
		return checked(time.UnixMicro(int64(n)))
	case n >= 1e11: // milliseconds
		return checked(time.UnixMilli(int64(n)).Add(time.Duration(nsec / 1000)))
	}
	return checked(time.Unix(int64(n), int64(nsec)))
}

// validDate reports whether the fields name a real date and time of day.
// time.Date would quietly normalize 31 Nov to 1 Dec and 25:61:61 to the next
// day, turning garbage into a plausible time. A leap second (:60) is
// rejected too: Go's time cannot hold it and logs on Linux do not show it.
func validDate(year, mon, day, hh, mm, ss int) bool {
	if mon < 1 || mon > 12 || day < 1 || hh > 23 || mm > 59 || ss > 59 {
		return false
	}
	if mon == 2 && year%4 == 0 && (year%100 != 0 || year%400 == 0) {
		return day <= 29
	}
	return day <= monthDays[mon-1]
}

var monthDays = [12]int{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}

// checked rejects times that cannot be real log times (before 1990 or past
// 2200), which guards the window arithmetic against garbage.
func checked(t time.Time) (time.Time, error) {
	if y := t.Year(); y < 1990 || y > 2200 {
		return time.Time{}, ErrBadTime
	}
	return t, nil
}
