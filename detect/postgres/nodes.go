package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrUnknownNode: no node of that name has written to the fleet's database.
var ErrUnknownNode = errors.New("no such node")

// nodeKey is a node's advisory lock key, as LockNode takes it: never 0,
// the judge's.
func nodeKey(node string) int32 {
	h := fnv.New32a()
	h.Write([]byte(node))
	return int32(h.Sum32() | 1)
}

// RetireNode takes node out of the judge's view: its nodes and
// node_clocks rows go, so the judge neither waits for it nor reports it
// quiet any more. Its attempt rows, findings, positions and the incidents
// they are part of stay, and a node of that name that writes again is
// simply a node again. It holds the node's lock meanwhile, so a node whose
// agent is running is refused (ErrNodeInUse); a name that never wrote is
// ErrUnknownNode. It needs DELETE on nodes and node_clocks: the judge's
// role, which owns the tables.
func (s *Store) RetireNode(ctx context.Context, node string) error {
	var gone int64
	l, ok, err := s.lease(ctx, nodeKey(node), func(ctx context.Context, c *pgx.Conn) (int64, error) {
		tx, err := c.Begin(ctx)
		if err != nil {
			return 0, err
		}
		defer tx.Rollback(context.WithoutCancel(ctx))
		if _, err := tx.Exec(ctx, `DELETE FROM node_clocks WHERE node = $1`, node); err != nil {
			return 0, err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM nodes WHERE node = $1`, node)
		if err != nil {
			return 0, err
		}
		gone = tag.RowsAffected()
		return 0, tx.Commit(ctx)
	})
	if err != nil {
		return fmt.Errorf("retire node %s: %w", node, err)
	}
	if !ok {
		return fmt.Errorf("retire node %s: %w", node, ErrNodeInUse)
	}
	l.Release()
	if gone == 0 {
		return fmt.Errorf("retire node %s: %w", node, ErrUnknownNode)
	}
	return nil
}

// IsPermissionDenied reports whether the server refused a query because
// the role lacks a grant (SQLSTATE 42501): e.g. an agent's role reading
// incidents.
func IsPermissionDenied(err error) bool { return sqlState(err) == "42501" }

// IsAuthFailed reports whether the server refused the role's password or
// found none it accepts (SQLSTATE 28P01, 28000).
func IsAuthFailed(err error) bool {
	c := sqlState(err)
	return c == "28P01" || c == "28000"
}

// ServerMessage is the server's message in err without its SQLSTATE, or
// err's text.
func ServerMessage(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Message
	}
	return err.Error()
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}
