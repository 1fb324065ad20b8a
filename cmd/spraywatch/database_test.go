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

// A libpq keyword/value string is refused wherever a database is named,
// without echoing it (it may hold a password), instead of being taken for
// a SQLite file name; a password in a URL is refused however it is spelt.
func TestDatabaseKeywordDSNRefused(t *testing.T) {
	const secret = "agentpw-s3cr3t"
	dsn := "host=db.example.net port=5432 dbname=spraywatch user=spraywatch_agent password=" + secret
	for _, db := range []string{dsn, "  HOST=db password=" + secret} {
		_, err := ParseConfig([]byte("database: '"+db+"'\nsources: [{name: a, format: nginx, identity: {remote_user: true}}]\n"), t.TempDir())
		if err == nil || !strings.Contains(err.Error(), "libpq keyword/value connection string") || strings.Contains(err.Error(), secret) {
			t.Errorf("config database %q: err %v; want the keyword/value refusal, without the password", db, err)
		}
	}
	for _, args := range [][]string{{"alerts", "--db", dsn}, {"explain", "--db", dsn, "1"}, {"replay", "--db", dsn, "-"}} {
		code, out, stderr := runCLI(t, args...)
		if code != exitUsage || !strings.Contains(stderr, "libpq keyword/value") || strings.Contains(out+stderr, secret) {
			t.Errorf("%s: exit %d, stderr %q; want a usage error without the password", args[0], code, stderr)
		}
	}
	for _, u := range []string{"POSTGRES://spraywatch@db/x?PASSWORD=" + secret, "postgresql://spraywatch:" + secret + "@db/x", "postgres://db/x?sslmode=require&Password=" + secret} {
		_, err := ParseConfig([]byte("database: '"+u+"'\nsources: [{name: a, format: nginx, identity: {remote_user: true}}]\n"), t.TempDir())
		if err == nil || !strings.Contains(err.Error(), "password") || strings.Contains(err.Error(), secret) {
			t.Errorf("config database %q: err %v; want the password refused, not shown", u, err)
		}
	}
}
