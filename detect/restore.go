package detect

import (
	"context"
	"database/sql"
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
