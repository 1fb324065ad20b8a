package detect

import (
	"context"
	"database/sql"
	"strings"
)

// LastAttemptMinute returns the latest Unix minute with stored attempts, or
// false when there are none. A restarting daemon rebuilds its windows from
// the rows before it.
func (s *Store) LastAttemptMinute(ctx context.Context) (int64, bool, error) {
	var m sql.NullInt64
	// A routine row's last minute is within the hour after its minute.
	if err := s.db.QueryRowContext(ctx, s.lastMinute(`SELECT MAX(COALESCE(last_minute, minute)) FROM attempts
		WHERE minute >= (SELECT MAX(minute) FROM attempts) - ?`), RoutineMinutes-1).Scan(&m); err != nil {
		return 0, false, classify(err)
	}
	return m.Int64, m.Valid, nil
}

// SourceMinutes returns each source's latest stored minute, for the
// sources whose rows were written by a version that keeps them (a source
// missing from the map has none recorded: its rows go by the latest minute
// over all sources).
func (s *Store) SourceMinutes(ctx context.Context) (map[string]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT source, minute FROM source_clocks`)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return nil, nil // (a database read-only from before them)
		}
		return nil, classify(err)
	}
	return ScanSourceMinutes(rows)
}

// ScanSourceMinutes reads rows of (source, minute) into a map, closing
// them (for stores that select them their own way).
func ScanSourceMinutes(rows *sql.Rows) (map[string]int64, error) {
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var source string
		var m int64
		if err := rows.Scan(&source, &m); err != nil {
			return nil, classify(err)
		}
		out[source] = m
	}
	return out, classify(rows.Err())
}
