// Package pgtest starts throwaway PostgreSQL clusters for tests: initdb into
// a temporary directory, a server on a free loopback port (and a unix socket
// in that directory), stopped when the test ends. When the environment names
// a server (SPRAYWATCH_TEST_POSTGRES, a URL whose user may create databases),
// Database uses it instead of starting one. Without PostgreSQL's binaries the
// test is skipped, except under CI=true, where it fails.
package pgtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// EnvURL names a running server tests may use.
const EnvURL = "SPRAYWATCH_TEST_POSTGRES"

// User and Password are the superuser of the clusters Start makes.
const (
	User     = "spraywatch"
	Password = "test-password-not-secret"
)

// Server is one throwaway cluster.
type Server struct {
	Dir  string // data directory, socket and log
	Port int
	// CAFile, for a server started by StartTLS, is the certificate of the
	// authority that signed the server's (for sslrootcert).
	CAFile string
	tls    bool
	bin    string
	cred   *syscall.Credential // run as this user (postgres refuses root)
	mu     sync.Mutex
	up     bool
}

func missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("PostgreSQL is required under CI=true: %s", why)
	}
	t.Skipf("no PostgreSQL: %s", why)
}

// binDir finds initdb and pg_ctl: on PATH, or Debian's
// /usr/lib/postgresql/<version>/bin.
func binDir() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if _, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("initdb and pg_ctl not found on PATH or in /usr/lib/postgresql/*/bin (apt-get install postgresql)")
}

func version(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// Start makes a new cluster and starts it; the test's cleanup stops it and
// removes its directory.
func Start(t testing.TB) *Server {
	t.Helper()
	return startT(t, false)
}

// StartTLS is Start with TLS on: a throwaway authority signs the server's
// certificate for 127.0.0.1 and localhost.
func StartTLS(t testing.TB) *Server {
	t.Helper()
	return startT(t, true)
}

func startT(t testing.TB, tls bool) *Server {
	t.Helper()
	s, err := start(tls)
	if err != nil {
		if s == nil {
			missing(t, err.Error())
		}
		t.Fatal(err)
	}
	t.Cleanup(s.Remove)
	return s
}

// start returns a nil server when PostgreSQL is not installed.
func start(tls bool) (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, tls: tls}
	// postgres refuses to run as root: as root, run it as postgres (or
	// nobody), in a directory that user owns.
	if os.Geteuid() == 0 {
		for _, name := range []string{"postgres", "nobody"} {
			if u, err := user.Lookup(name); err == nil {
				uid, _ := strconv.Atoi(u.Uid)
				gid, _ := strconv.Atoi(u.Gid)
				s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
				break
			}
		}
		if s.cred == nil {
			return nil, fmt.Errorf("running as root and no postgres or nobody user to run the server as")
		}
	}
	if s.Dir, err = os.MkdirTemp("", "spraywatch-pg-"); err != nil {
		return s, err
	}
	if s.cred != nil {
		if err := os.Chown(s.Dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return s, err
		}
	}
	pw := filepath.Join(s.Dir, "pwfile")
	if err := os.WriteFile(pw, []byte(Password+"\n"), 0o600); err != nil {
		return s, err
	}
	if s.cred != nil {
		os.Chown(pw, int(s.cred.Uid), int(s.cred.Gid))
	}
	// Passwords over TCP (as in production), trust on the socket.
	if out, err := s.run("initdb", "-D", s.data(), "-U", User, "--pwfile", pw, "--auth-host=scram-sha-256",
		"--auth-local=trust", "-E", "UTF8", "--no-locale", "--no-sync"); err != nil {
		return s, fmt.Errorf("initdb: %w: %s", err, out)
	}
	os.Remove(pw)
	if tls {
		if err := s.writeCerts(); err != nil {
			return s, err
		}
	}
	if s.Port, err = freePort(); err != nil {
		return s, err
	}
	return s, s.StartServer()
}

func (s *Server) data() string { return filepath.Join(s.Dir, "data") }

func (s *Server) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd.CombinedOutput()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartServer starts the (stopped) server again on the same port.
func (s *Server) StartServer() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c full_page_writes=off -c max_connections=200", s.Port, s.Dir)
	if s.tls {
		opts += fmt.Sprintf(" -c ssl=on -c ssl_cert_file=%s/server.crt -c ssl_key_file=%s/server.key", s.Dir, s.Dir)
	}
	if out, err := s.run("pg_ctl", "-D", s.data(), "-l", filepath.Join(s.Dir, "server.log"), "-w", "-t", "60", "-o", opts, "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.Dir, "server.log"))
		return fmt.Errorf("pg_ctl start: %w: %s\n%s", err, out, log)
	}
	s.up = true
	return nil
}

// StopServer stops the server at once (immediate mode: like a crash, every
// client connection is cut).
func (s *Server) StopServer() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.up {
		return nil
	}
	if out, err := s.run("pg_ctl", "-D", s.data(), "-m", "immediate", "-w", "stop"); err != nil {
		return fmt.Errorf("pg_ctl stop: %w: %s", err, out)
	}
	s.up = false
	return nil
}

// Remove stops the server and deletes its directory.
func (s *Server) Remove() {
	s.StopServer()
	os.RemoveAll(s.Dir)
}

// URL is a postgres:// URL for database db, without the password.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", User, s.Port, db)
}

var dbSeq atomic.Int64

// CreateDatabase makes a new, empty database and returns its URL (without
// the password, which is Password).
func (s *Server) CreateDatabase(t testing.TB) string {
	t.Helper()
	u := s.URL("postgres")
	return createDatabase(t, u, Password)
}

func createDatabase(t testing.TB, admin, password string) string {
	t.Helper()
	name := fmt.Sprintf("t_%d_%d", os.Getpid(), dbSeq.Add(1))
	db, err := sql.Open("pgx", withPassword(admin, password))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	u, _ := url.Parse(admin)
	u.User = url.User(u.User.Username())
	u.Path = "/" + name
	return u.String()
}

func withPassword(raw, password string) string {
	u, err := url.Parse(raw)
	if err != nil || password == "" {
		return raw
	}
	u.User = url.UserPassword(u.User.Username(), password)
	return u.String()
}

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
)

// Database returns the URL of a new, empty database and its password: on
// the server SPRAYWATCH_TEST_POSTGRES names (its password, if any, in the
// URL or PGPASSWORD), or else on one cluster started for the whole test
// binary (call Main from TestMain to stop it at the end).
func Database(t testing.TB) (dbURL, password string) {
	t.Helper()
	if env := os.Getenv(EnvURL); env != "" {
		u, err := url.Parse(env)
		if err != nil {
			t.Fatalf("%s: %v", EnvURL, err)
		}
		pw, _ := u.User.Password()
		if pw == "" {
			pw = os.Getenv("PGPASSWORD")
		}
		return createDatabase(t, env, pw), pw
	}
	sharedOnce.Do(func() { shared, sharedErr = start(false) })
	if sharedErr != nil {
		if shared == nil {
			missing(t, sharedErr.Error())
		}
		t.Fatal(sharedErr)
	}
	return shared.CreateDatabase(t), Password
}

// Main runs the tests and then stops the cluster Database started, if any.
func Main(m *testing.M) int {
	code := m.Run()
	if shared != nil {
		shared.Remove()
	}
	return code
}

// writeCerts makes a throwaway authority and a server certificate it signs.
func (s *Server) writeCerts() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "spraywatch test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	s.CAFile = filepath.Join(s.Dir, "ca.crt")
	files := []struct {
		name, kind string
		der        []byte
		mode       os.FileMode
	}{{"ca.crt", "CERTIFICATE", caDER, 0o644}, {"server.crt", "CERTIFICATE", leafDER, 0o644}, {"server.key", "PRIVATE KEY", keyDER, 0o600}}
	for _, f := range files {
		path := filepath.Join(s.Dir, f.name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: f.kind, Bytes: f.der}), f.mode); err != nil {
			return err
		}
		if s.cred != nil {
			if err := os.Chown(path, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
				return err
			}
		}
	}
	return nil
}
