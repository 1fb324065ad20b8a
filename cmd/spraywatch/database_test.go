package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// The database password comes from a file or a variable; a URL holding one
// is refused without the password ever appearing in the error.
func TestDatabasePassword(t *testing.T) {
	if _, err := LoadConfig("../../testdata/config/postgres-password-in-url.bad.yml"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("password in the URL: %v", err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	writeFile(t, file, "s3cret-from-file\n", 0o600)
	t.Setenv("SW_TEST_DB_PW", "s3cret-from-env")
	for _, tc := range []struct {
		name    string
		cfg     Config
		want    string
		wantErr string
	}{
		{"file", Config{DatabasePasswordFile: file}, "s3cret-from-file", ""},
		{"env", Config{DatabasePasswordEnv: "SW_TEST_DB_PW"}, "s3cret-from-env", ""},
		{"neither", Config{}, "", ""},
		{"unset env", Config{DatabasePasswordEnv: "SW_TEST_DB_PW_UNSET"}, "", "not set"},
		{"missing file", Config{DatabasePasswordFile: filepath.Join(dir, "nope")}, "", "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := databasePassword(tc.cfg)
			if got != tc.want || (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("got %q, %v; want %q, error containing %q", got, err, tc.want, tc.wantErr)
			}
		})
	}
	open := filepath.Join(dir, "open")
	writeFile(t, open, "pw\n", 0o644)
	if _, err := databasePassword(Config{DatabasePasswordFile: open}); err == nil || strings.Contains(err.Error(), "pw\n") {
		t.Errorf("a password file others can read: %v", err)
	}
}
