// Package pgtest starts a real PostgreSQL server (Debian's postgresql
// package) in a temporary directory for tests and benchmarks: initdb,
// SCRAM-SHA-256 passwords, TLS on, one role and one database. The server
// runs as the postgres user when the caller is root, and is stopped by its
// PID.
package pgtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgplane/pgplane/internal/freeport"
	"github.com/pgplane/pgplane/pgwire"
)

// Role, password and database every server has.
const (
	User     = "app"
	Password = "app-secret"
	Database = "appdb"
	// AuthRole and AuthPassword are the gateway's auth role, which may look
	// up password verifiers through pgplane.lookup_verifier (G7).
	AuthRole     = "pgplane_auth"
	AuthPassword = "pgplane-auth-secret"
)

// WriteAuthPassfile writes a pgpass-format file in dir with the auth
// role's password for every server, and returns its path.
func WriteAuthPassfile(dir string) (string, error) {
	path := filepath.Join(dir, "auth.pgpass")
	return path, os.WriteFile(path, []byte("*:*:*:"+AuthRole+":"+AuthPassword+"\n"), 0o600)
}

// Server is a running PostgreSQL.
type Server struct {
	Dir  string
	Addr string // 127.0.0.1:PORT
	Port int
	cmd  *exec.Cmd
	log  *bytes.Buffer
	done chan struct{}
	uid  int
	gid  int
}

// Options shape a server.
type Options struct {
	// Cert and Key are the server's TLS certificate and key in PEM; without
	// them (and without OwnCertificate) the server runs with ssl off.
	Cert, Key []byte
	// OwnCertificate gives the server a self-signed certificate of its own
	// for 127.0.0.1 and localhost, as any existing server has.
	OwnCertificate bool
	// Port, when 0, is chosen free.
	Port int
	// Conf is appended to postgresql.conf.
	Conf string
	// HBA lines come before the default pg_hba.conf lines (local trust,
	// SCRAM from 127.0.0.1).
	HBA string
}

// BinDir returns where Debian installed the newest PostgreSQL server
// programs (/usr/lib/postgresql/VERSION/bin).
func BinDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	best, bestVersion := "/usr/lib/postgresql/15/bin", 0
	for _, d := range dirs {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(d))))
		if err == nil && v > bestVersion {
			best, bestVersion = filepath.Dir(d), v
		}
	}
	return best
}

// Start initialises and starts a server in a new directory under parent.
func Start(parent string, o Options) (*Server, error) {
	if _, err := os.Stat(filepath.Join(BinDir(), "postgres")); err != nil {
		return nil, fmt.Errorf("pgtest: PostgreSQL server not installed (%w); apt-get install postgresql", err)
	}
	dir, err := os.MkdirTemp(parent, "pg")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, log: &bytes.Buffer{}, done: make(chan struct{}), uid: -1, gid: -1}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgtest: running as root needs the postgres user: %w", err)
		}
		s.uid, _ = strconv.Atoi(u.Uid)
		s.gid, _ = strconv.Atoi(u.Gid)
	}
	data := filepath.Join(dir, "data")
	pwfile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwfile, []byte("postgres-secret\n"), 0o600); err != nil {
		return nil, err
	}
	if err := s.chown(dir, pwfile); err != nil {
		return nil, err
	}
	if out, err := s.run(filepath.Join(BinDir(), "initdb"), "-D", data, "-U", "postgres", "--pwfile", pwfile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"); err != nil {
		return nil, fmt.Errorf("pgtest: initdb: %v\n%s", err, out)
	}
	if o.OwnCertificate && o.Cert == nil {
		if o.Cert, o.Key, err = selfSigned(); err != nil {
			return nil, err
		}
	}
	if o.Cert != nil {
		if err := s.writeOwned(filepath.Join(data, "server.crt"), o.Cert, 0o644); err != nil {
			return nil, err
		}
		if err := s.writeOwned(filepath.Join(data, "server.key"), o.Key, 0o600); err != nil {
			return nil, err
		}
	}
	conf := fmt.Sprintf(`
listen_addresses = '127.0.0.1'
unix_socket_directories = '%s'
password_encryption = 'scram-sha-256'
ssl = %s
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
shared_buffers = 64MB
log_min_messages = warning
%s
`, dir, map[bool]string{true: "on", false: "off"}[o.Cert != nil], o.Conf)
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	f.WriteString(conf)
	f.Close()
	hba := o.HBA + "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\nhost replication all 127.0.0.1/32 scram-sha-256\n"
	if err := s.writeOwned(filepath.Join(data, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return nil, err
	}
	if err := s.launchOn(o.Port); err != nil {
		return nil, err
	}
	for _, sql := range []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", User, Password),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", Database, User),
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", AuthRole, AuthPassword),
		pgwire.LookupFunctionSQL(AuthRole),
		// The auth role is the cluster's monitoring role too (C6), and
		// promotes standbys under pgplane.promote auto.
		fmt.Sprintf("GRANT EXECUTE ON FUNCTION pg_promote(boolean, integer) TO %s", AuthRole),
	} {
		if out, err := s.Psql("postgres", sql); err != nil {
			s.Stop()
			return nil, fmt.Errorf("pgtest: %s: %v\n%s", sql, err, out)
		}
	}
	return s, nil
}

// launchOn starts the postmaster on port, or when port is 0 on a free one
// (freeport.Pick): another process may bind a picked port first, and the
// postmaster is then started again on a new pick, a few times.
func (s *Server) launchOn(port int) error {
	if port != 0 {
		s.setPort(port)
		return s.launch()
	}
	var err error
	for try := 0; try < 5; try++ {
		if port, err = freeport.Pick(); err != nil {
			return err
		}
		s.setPort(port)
		s.log.Reset()
		if err = s.launch(); err == nil || !freeport.InUse(s.log.String()) {
			return err
		}
	}
	return err
}

func (s *Server) setPort(port int) {
	s.Port = port
	s.Addr = fmt.Sprintf("127.0.0.1:%d", port)
}

// launch starts the postmaster on the data directory and s.Port (given on
// its command line, so a new pick needs no configuration rewrite) and waits
// until it accepts connections.
func (s *Server) launch() error {
	s.done = make(chan struct{})
	s.cmd = exec.Command(filepath.Join(BinDir(), "postgres"), "-D", filepath.Join(s.Dir, "data"), "-p", strconv.Itoa(s.Port))
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = s.sysProcAttr()
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: starting postgres: %w", err)
	}
	done := s.done
	go func() { s.cmd.Wait(); close(done) }()
	if err := s.waitReady(); err != nil {
		s.Stop()
		return err
	}
	return nil
}

// Crash stops the server with an immediate shutdown (SIGQUIT), as close to a
// crash as PostgreSQL allows while leaving it restartable.
func (s *Server) Crash() {
	s.cmd.Process.Signal(syscall.SIGQUIT)
	<-s.done
}

// Restart starts a stopped server again on the same directory and port.
func (s *Server) Restart() error { return s.launch() }

// Psql runs SQL over the server's Unix socket as the postgres superuser.
func (s *Server) Psql(db, sql string) (string, error) {
	out, err := exec.Command("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", s.Dir, "-p", strconv.Itoa(s.Port), "-U", "postgres", "-d", db, "-c", sql).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Log returns what the server printed.
func (s *Server) Log() string { return s.log.String() }

// Stop stops the server by its PID (fast shutdown) and waits.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.Thaw() // a frozen server could not shut down
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// PID is the postmaster's process ID.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Destroy stops the server and removes its directory.
func (s *Server) Destroy() {
	s.Stop()
	os.RemoveAll(s.Dir)
}

// Kill stops the server at once, as a crash would.
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.Thaw() // frozen children would never see the postmaster die
		s.cmd.Process.Kill()
		<-s.done
	}
}

func (s *Server) waitReady() error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("pgtest: postgres exited:\n%s", s.log.String())
		default:
		}
		if _, err := s.Psql("postgres", "SELECT 1"); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("pgtest: postgres did not become ready:\n" + s.log.String())
}

func (s *Server) sysProcAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if s.uid >= 0 {
		a.Credential = &syscall.Credential{Uid: uint32(s.uid), Gid: uint32(s.gid)}
	}
	return a
}

func (s *Server) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = s.sysProcAttr()
	return cmd.CombinedOutput()
}

func (s *Server) chown(paths ...string) error {
	if s.uid < 0 {
		return nil
	}
	for _, p := range paths {
		if err := os.Chown(p, s.uid, s.gid); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) writeOwned(path string, data []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(path, mode); err != nil {
		return err
	}
	return s.chown(path)
}

// StartStandby makes a streaming replica of s with pg_basebackup in a new
// directory under parent, and starts it as a hot standby on a port of its
// own. Promote turns it into a primary.
func (s *Server) StartStandby(parent string) (*Server, error) { return s.StartStandbyOn(parent, 0) }

// StartStandbyOn is StartStandby on a given port (0: a free one).
func (s *Server) StartStandbyOn(parent string, port int) (*Server, error) {
	dir, err := os.MkdirTemp(parent, "pg")
	if err != nil {
		return nil, err
	}
	st := &Server{Dir: dir, log: &bytes.Buffer{}, done: make(chan struct{}), uid: s.uid, gid: s.gid}
	if err := st.chown(dir); err != nil {
		return nil, err
	}
	if err := st.baseBackup(s); err != nil {
		return nil, err
	}
	return st, st.launchOn(port)
}

// Rebuild turns s, stopped or crashed, into a streaming replica of primary
// on its own directory and port, as an operator rebuilds an old primary
// after a failover, and starts it.
func (s *Server) Rebuild(primary *Server) error {
	s.Stop()
	if err := os.RemoveAll(filepath.Join(s.Dir, "data")); err != nil {
		return err
	}
	if err := s.baseBackup(primary); err != nil {
		return err
	}
	return s.launch()
}

// baseBackup copies primary into s's data directory with pg_basebackup,
// configured to stream from it as a hot standby on s's port.
func (s *Server) baseBackup(primary *Server) error {
	data := filepath.Join(s.Dir, "data")
	cmd := exec.Command(filepath.Join(BinDir(), "pg_basebackup"), "-h", "127.0.0.1", "-p", strconv.Itoa(primary.Port), "-U", "postgres",
		"-D", data, "-R", "-X", "stream", "-c", "fast", "--no-sync")
	cmd.SysProcAttr = s.sysProcAttr()
	cmd.Env = append(os.Environ(), "PGPASSWORD=postgres-secret")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: pg_basebackup: %v\n%s", err, out)
	}
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "\nunix_socket_directories = '%s'\nhot_standby = on\n", s.Dir)
	return err
}

// Freeze stops the postmaster and every process it started (SIGSTOP), as
// a host that hangs: connections are accepted by the kernel and never
// answered. Thaw resumes them.
func (s *Server) Freeze() error { return s.signalAll(syscall.SIGSTOP) }

// Thaw resumes a frozen server (SIGCONT).
func (s *Server) Thaw() error { return s.signalAll(syscall.SIGCONT) }

// signalAll signals the postmaster and its children, found in /proc (each
// child is a process group leader of its own).
func (s *Server) signalAll(sig syscall.Signal) error {
	pm := s.cmd.Process.Pid
	pids := []int{pm}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pm) {
			pids = append(pids, pid)
		}
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err != nil && pid == pm {
			return err
		}
	}
	return nil
}

// Promote ends recovery: a standby becomes a primary that takes writes.
func (s *Server) Promote() error {
	out, err := s.Psql("postgres", "SELECT pg_promote(true, 30)")
	if err != nil || out != "t" {
		return fmt.Errorf("pgtest: promote: %v %s", err, out)
	}
	return nil
}

// selfSigned makes a self-signed ECDSA certificate for 127.0.0.1 and
// localhost, in PEM.
func selfSigned() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "pgtest backend"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(30 * 24 * time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), nil
}

// CertificatePEM returns the certificate the server presents, in PEM, to
// check it with verify-full.
func (s *Server) CertificatePEM() ([]byte, error) {
	return os.ReadFile(filepath.Join(s.Dir, "data", "server.crt"))
}
