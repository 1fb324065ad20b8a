package detect_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	"github.com/spraywatch/spraywatch/detect"
)

// A case database left in rollback-journal mode (a replay killed before it
// closed the file, as by SIGPIPE in `replay | head`) still opens read-only
// for `alerts` and `explain`: a read-only open asks for no journal mode,
// which would be a write.
func TestReadOnlyOpensRollbackJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "case.db")
	s, err := detect.Open(path, detect.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	raw, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`PRAGMA journal_mode=DELETE`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	ro, err := detect.Open(path, detect.StoreOptions{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open of a rollback-journal database: %v", err)
	}
	defer ro.Close()
	if _, err := ro.Incidents(context.Background(), detect.IncidentFilter{}); err != nil {
		t.Fatalf("query: %v", err)
	}
}

// A database is created readable by its owner only, and so are its WAL
// and shared-memory files.
func TestCreatedOwnerOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "case.db")
	s, err := detect.Open(path, detect.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Incidents(context.Background(), detect.IncidentFilter{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v, want owner only", filepath.Base(p), fi.Mode().Perm())
		}
	}
}
