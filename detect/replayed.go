package detect

import (
	"context"
	"database/sql"
	"errors"
)

// ReplayedStart returns the longest content recorded as replayed under head
// (a fingerprint of a file's first bytes rather than of the whole file), and
// from which path: a log that begins like it but is longer grew since it was
// replayed.
func (s *Store) ReplayedStart(ctx context.Context, head string) (path string, size int64, ok bool, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT path, size FROM replayed_files WHERE head=? AND size>0 ORDER BY size DESC LIMIT 1`, head).Scan(&path, &size)
	if errors.Is(err, sql.ErrNoRows) {
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, err
	}
	return path, size, true, nil
}
