package pgwire

import (
	"bufio"
	"crypto/md5" // #nosec G501 -- PostgreSQL's md5 password method
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// SSLRequestCode is the code of an SSLRequest packet.
const SSLRequestCode = 1234<<16 | 5679

// SSLRequest is the SSLRequest packet a client sends to ask for TLS.
func SSLRequest() []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), SSLRequestCode)
}

// MaxAuthMessage bounds a message of the authentication exchange.
const MaxAuthMessage = 64 << 10

// readBuffer is the size of a connection's read buffer. It lives as long as
// the connection (a pooled one: for its whole life), so it is small; reads
// larger than it go around it.
const readBuffer = 512

// Dial connects to a PostgreSQL server. With a TLS configuration it sends
// an SSLRequest and runs the TLS handshake, and fails when the server does
// not take TLS. The timeout bounds the dial and the handshake.
func Dial(addr string, tlsConfig *tls.Config, timeout time.Duration) (net.Conn, *bufio.Reader, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, nil, err
	}
	return Secure(c, addr, tlsConfig, timeout)
}

// Secure is Dial's second half, over a connection to addr already made:
// with a TLS configuration, the SSLRequest and the TLS handshake. It
// closes c when it fails.
func Secure(c net.Conn, addr string, tlsConfig *tls.Config, timeout time.Duration) (net.Conn, *bufio.Reader, error) {
	if tlsConfig == nil {
		return c, bufio.NewReaderSize(c, readBuffer), nil
	}
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(SSLRequest()); err != nil {
		c.Close()
		return nil, nil, err
	}
	var answer [1]byte
	if _, err := io.ReadFull(c, answer[:]); err != nil || answer[0] != 'S' {
		c.Close()
		return nil, nil, fmt.Errorf("%s does not accept TLS (answered %q, %v)", addr, answer[0], err)
	}
	tc := tls.Client(c, tlsConfig)
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("TLS to %s: %w", addr, err)
	}
	c.SetDeadline(time.Time{})
	return tc, bufio.NewReaderSize(tc, readBuffer), nil
}

// Credentials answer a server's authentication requests.
type Credentials struct {
	// SCRAM returns the ClientKey and ServerKey for a salt and iteration
	// count (PasswordKeys, VerifierKeys); nil refuses SCRAM.
	SCRAM func(salt []byte, iterations int) (clientKey, serverKey []byte, err error)
	// MD5Hash is the role's stored MD5 hash ("md5..."); empty refuses md5.
	MD5Hash string
}

// PasswordCredentials answer SCRAM and md5 with a password.
func PasswordCredentials(user, password string) Credentials {
	sum := md5.Sum([]byte(password + user))
	return Credentials{SCRAM: PasswordKeys(password), MD5Hash: "md5" + hex.EncodeToString(sum[:])}
}

// Authenticate answers the server's authentication requests after the
// startup message, up to AuthenticationOk. Over TLS it binds SCRAM to the
// server's certificate when the server offers SCRAM-SHA-256-PLUS. An
// ErrorResponse from the server is returned as *Error.
func Authenticate(conn net.Conn, r *bufio.Reader, cred Credentials) error {
	var scram *ScramClient
	for {
		typ, payload, err := ReadMessage(r, MaxAuthMessage)
		if err != nil {
			return fmt.Errorf("reading the server's authentication request: %w", err)
		}
		switch typ {
		case 'E':
			return ParseError(payload)
		case 'N':
			continue
		case 'R':
		default:
			return fmt.Errorf("%w: message %q during authentication", ErrProtocol, typ)
		}
		if len(payload) < 4 {
			return fmt.Errorf("%w: short authentication request", ErrProtocol)
		}
		code, data := binary.BigEndian.Uint32(payload), payload[4:]
		var reply []byte
		switch {
		case code == AuthOK:
			return nil
		case code == AuthMD5 && cred.MD5Hash != "" && len(data) == 4:
			reply = AppendMessage(nil, 'p', AppendCString(nil, MD5Response(cred.MD5Hash, [4]byte(data))))
		case code == AuthSASL && cred.SCRAM != nil:
			scram = &ScramClient{Keys: cred.SCRAM}
			if tc, ok := conn.(*tls.Conn); ok {
				if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
					scram.EndPoint, _ = EndPointBinding(certs[0])
				}
			}
			mech, first, err := scram.Start(saslMechanisms(data))
			if err != nil {
				return err
			}
			p := AppendCString(nil, mech)
			p = binary.BigEndian.AppendUint32(p, uint32(len(first)))
			reply = AppendMessage(nil, 'p', append(p, first...))
		case code == AuthSASLContinue && scram != nil:
			final, err := scram.Continue(data)
			if err != nil {
				return err
			}
			reply = AppendMessage(nil, 'p', final)
		case code == AuthSASLFinal && scram != nil:
			if err := scram.Finish(data); err != nil {
				return err
			}
			continue
		default:
			return fmt.Errorf("the server asks for authentication method %d, which pgplane cannot answer with what it holds", code)
		}
		if _, err := conn.Write(reply); err != nil {
			return err
		}
	}
}

// saslMechanisms reads the mechanism names of an AuthenticationSASL.
func saslMechanisms(data []byte) []string {
	var out []string
	for {
		name, rest, ok := CutCString(data)
		if !ok || name == "" {
			return out
		}
		out = append(out, name)
		data = rest
	}
}

// ClientConfig configures Connect.
type ClientConfig struct {
	Addr     string
	TLS      *tls.Config // nil: plain TCP
	Timeout  time.Duration
	User     string
	Database string
	Cred     Credentials
	// ApplicationName shows in pg_stat_activity.
	ApplicationName string
}

// Client is a connection for short queries (verifier lookups, role
// probes). It is not safe for concurrent use.
type Client struct {
	conn    net.Conn
	r       *bufio.Reader
	timeout time.Duration
}

// Connect dials, logs in and waits until the server is ready for queries.
func Connect(cfg ClientConfig) (*Client, error) {
	conn, r, err := Dial(cfg.Addr, cfg.TLS, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	c := &Client{conn: conn, r: r, timeout: cfg.Timeout}
	conn.SetDeadline(time.Now().Add(cfg.Timeout))
	params := []string{"user", cfg.User, "database", cfg.Database}
	if cfg.ApplicationName != "" {
		params = append(params, "application_name", cfg.ApplicationName)
	}
	if _, err := conn.Write(StartupMessage(params...)); err != nil {
		conn.Close()
		return nil, err
	}
	if err := Authenticate(conn, r, cfg.Cred); err != nil {
		conn.Close()
		return nil, fmt.Errorf("logging in to %s as %s: %w", cfg.Addr, cfg.User, err)
	}
	if _, err := c.readUntilReady(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("logging in to %s as %s: %w", cfg.Addr, cfg.User, err)
	}
	conn.SetDeadline(time.Time{})
	return c, nil
}

// Query runs one statement with text parameters (the extended protocol, so
// no value is ever spliced into SQL) and returns its rows as text; a NULL
// is nil.
func (c *Client) Query(sql string, args ...string) ([][]*string, error) {
	var b []byte
	parse := AppendCString(AppendCString(nil, ""), sql)
	b = AppendMessage(b, 'P', binary.BigEndian.AppendUint16(parse, 0))
	bind := AppendCString(AppendCString(nil, ""), "")
	bind = binary.BigEndian.AppendUint16(bind, 0) // all parameters text
	bind = binary.BigEndian.AppendUint16(bind, uint16(len(args)))
	for _, a := range args {
		bind = binary.BigEndian.AppendUint32(bind, uint32(len(a)))
		bind = append(bind, a...)
	}
	bind = binary.BigEndian.AppendUint16(bind, 0) // all results text
	b = AppendMessage(b, 'B', bind)
	b = AppendMessage(b, 'E', append(AppendCString(nil, ""), 0, 0, 0, 0))
	b = AppendMessage(b, 'S', nil)
	c.conn.SetDeadline(time.Now().Add(c.timeout))
	defer c.conn.SetDeadline(time.Time{})
	if _, err := c.conn.Write(b); err != nil {
		return nil, err
	}
	return c.readUntilReady()
}

// readUntilReady reads up to ReadyForQuery, collecting data rows; the
// first ErrorResponse is returned after the server is ready again.
func (c *Client) readUntilReady() ([][]*string, error) {
	var rows [][]*string
	var failed error
	for {
		typ, payload, err := ReadMessage(c.r, 1<<20)
		if err != nil {
			return nil, err
		}
		switch typ {
		case 'Z':
			return rows, failed
		case 'E':
			if failed == nil {
				failed = ParseError(payload)
			}
		case 'D':
			row, err := dataRow(payload)
			if err != nil {
				return nil, err
			}
			rows = append(rows, row)
		}
	}
}

func dataRow(p []byte) ([]*string, error) {
	if len(p) < 2 {
		return nil, fmt.Errorf("%w: short DataRow", ErrProtocol)
	}
	n := int(binary.BigEndian.Uint16(p))
	p = p[2:]
	row := make([]*string, 0, n)
	for i := 0; i < n; i++ {
		if len(p) < 4 {
			return nil, fmt.Errorf("%w: short DataRow", ErrProtocol)
		}
		l := int32(binary.BigEndian.Uint32(p))
		p = p[4:]
		if l < 0 {
			row = append(row, nil)
			continue
		}
		if int(l) > len(p) {
			return nil, fmt.Errorf("%w: short DataRow", ErrProtocol)
		}
		s := string(p[:l])
		row = append(row, &s)
		p = p[l:]
	}
	return row, nil
}

// SetTimeout changes the bound of each later query.
func (c *Client) SetTimeout(d time.Duration) { c.timeout = d }

// Close says goodbye (Terminate) and closes the connection.
func (c *Client) Close() error {
	c.conn.SetWriteDeadline(time.Now().Add(time.Second))
	c.conn.Write(AppendMessage(nil, 'X', nil))
	return c.conn.Close()
}

// IsConnectionError reports whether err broke the connection (rather than
// being a server's ErrorResponse after which the connection is usable).
func IsConnectionError(err error) bool {
	var pe *Error
	return err != nil && !errors.As(err, &pe)
}

// VerifierQuery is how the gateway asks a backend for a role's stored
// password, through the function of LookupFunctionSQL. It returns the
// stored password, or NULL for a role that cannot log in.
const VerifierQuery = "SELECT pgplane.lookup_verifier($1)"

// LookupFunctionSQL is the SQL a superuser runs once per PostgreSQL server
// (in the database the auth role connects to, postgres by default) to let
// authRole read stored passwords through one SECURITY DEFINER function,
// and nothing else, as PgBouncer's auth_query is set up.
func LookupFunctionSQL(authRole string) string {
	return `CREATE SCHEMA IF NOT EXISTS pgplane;
CREATE OR REPLACE FUNCTION pgplane.lookup_verifier(role_name text) RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT rolpassword FROM pg_catalog.pg_authid
    WHERE rolname = role_name AND rolcanlogin
      AND (rolvaliduntil IS NULL OR rolvaliduntil > now())
$$;
REVOKE ALL ON FUNCTION pgplane.lookup_verifier(text) FROM PUBLIC;
GRANT USAGE ON SCHEMA pgplane TO ` + authRole + `;
GRANT EXECUTE ON FUNCTION pgplane.lookup_verifier(text) TO ` + authRole + `;
`
}
