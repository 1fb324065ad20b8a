package postgres

import (
	"context"
	"database/sql"
	"errors"
)

// ReplayedStart returns the longest content recorded as replayed for this
// node under head (a fingerprint of a file's first bytes), and from which
// path: a log that begins like it but is longer grew since.
func (s *Store) ReplayedStart(ctx context.Context, head string) (path string, size int64, ok bool, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT path, size FROM replayed_files WHERE node=$1 AND head=$2 AND size>0 ORDER BY size DESC LIMIT 1`,
		s.node, head).Scan(&path, &size)
	if errors.Is(err, sql.ErrNoRows) {
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, err
	}
	return path, size, true, nil
}
