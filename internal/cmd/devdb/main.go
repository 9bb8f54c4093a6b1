// Command devdb runs the dev appliance's PostgreSQL backend for `make run`:
// a real PostgreSQL (Debian's) on 127.0.0.1:55432 in a temporary directory,
// with a certificate of its own and the gateway's auth role (pgplane_auth,
// whose password is in corefile/dev/auth.pgpass) and lookup function. It
// also makes the dev gateway certificate, so that its CA is there for psql
// before the appliance starts. With -standby-port it also runs a streaming
// standby of that server (pg_basebackup), as an HA server's second backend.
// It stops the servers on SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/pgplane/pgplane/gateway"
	"github.com/pgplane/pgplane/internal/pgtest"
)

func main() {
	tlsDir := flag.String("tls", "corefile/dev/.tls", "the dev gateway's certificate directory")
	port := flag.Int("port", 55432, "port on 127.0.0.1")
	standbyPort := flag.Int("standby-port", 0, "port of a streaming standby on 127.0.0.1 (0: none)")
	zones := flag.String("zones", "*.contoso.private.postgres.database.azure.com", "private zone wildcards the certificate covers")
	flag.Parse()
	if err := run(*tlsDir, *port, *standbyPort, *zones); err != nil {
		fmt.Fprintln(os.Stderr, "devdb:", err)
		os.Exit(1)
	}
}

func run(tlsDir string, port, standbyPort int, zones string) error {
	if _, _, err := gateway.DevCertificates(tlsDir, []string{"*.postgres.database.azure.com", zones}); err != nil {
		return err
	}
	pg, err := pgtest.Start("", pgtest.Options{OwnCertificate: true, Port: port})
	if err != nil {
		return err
	}
	defer os.RemoveAll(pg.Dir)
	defer pg.Stop()
	ca, _ := filepath.Abs(filepath.Join(tlsDir, gateway.DevCAFile))
	fmt.Printf("devdb: PostgreSQL on %s, PID %d (user %s, password %s, database %s)\n", pg.Addr, pg.PID(), pgtest.User, pgtest.Password, pgtest.Database)
	if standbyPort != 0 {
		st, err := pg.StartStandbyOn("", standbyPort)
		if err != nil {
			return err
		}
		defer os.RemoveAll(st.Dir)
		defer st.Stop()
		fmt.Printf("devdb: its streaming standby on %s, PID %d; crash the primary with: kill -QUIT %d\n", st.Addr, st.PID(), pg.PID())
	}
	fmt.Printf("devdb: through the gateway: PGPASSWORD=%s psql \"host=reports-db.postgres.database.azure.com hostaddr=127.0.0.1 port=15432 sslmode=verify-full sslrootcert=%s user=%s dbname=%s\"\n",
		pgtest.Password, ca, pgtest.User, pgtest.Database)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return nil
}
