package pgwire

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// SASL mechanism names and the one channel binding type PostgreSQL knows.
const (
	ScramSHA256     = "SCRAM-SHA-256"
	ScramSHA256Plus = "SCRAM-SHA-256-PLUS"
	cbTypeEndPoint  = "tls-server-end-point"

	// DefaultIterations is PostgreSQL's scram_iterations default; mock
	// verifiers use it.
	DefaultIterations = 4096
	saltLen           = 16 // PostgreSQL's SCRAM_DEFAULT_SALT_LEN
	rawNonceLen       = 18 // PostgreSQL's SCRAM_RAW_NONCE_LEN
	keyLen            = sha256.Size
	// maxIterations bounds what a server may ask a password holder to
	// compute (PostgreSQL's default is 4096).
	maxIterations = 1 << 22
)

// Verifier is a SCRAM-SHA-256 password verifier, as pg_authid.rolpassword
// stores it: SCRAM-SHA-256$ITERATIONS:SALT$STOREDKEY:SERVERKEY.
type Verifier struct {
	Iterations int
	Salt       []byte
	StoredKey  []byte
	ServerKey  []byte
}

// ParseVerifier reads a SCRAM-SHA-256 verifier. Any other form (an MD5
// hash, a plain password) is an error that says what it is.
func ParseVerifier(s string) (Verifier, error) {
	var v Verifier
	if IsMD5Hash(s) {
		return v, errors.New("the role has an MD5 password, not a SCRAM-SHA-256 verifier")
	}
	rest, ok := strings.CutPrefix(s, ScramSHA256+"$")
	if !ok {
		return v, errors.New("the stored password is not a SCRAM-SHA-256 verifier")
	}
	iterSalt, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return v, errors.New("malformed SCRAM-SHA-256 verifier: no keys")
	}
	iter, salt, ok1 := strings.Cut(iterSalt, ":")
	stored, server, ok2 := strings.Cut(keys, ":")
	if !ok1 || !ok2 {
		return v, errors.New("malformed SCRAM-SHA-256 verifier")
	}
	var err error
	if v.Iterations, err = strconv.Atoi(iter); err != nil || v.Iterations < 1 {
		return v, fmt.Errorf("malformed SCRAM-SHA-256 verifier: iteration count %q", iter)
	}
	if v.Salt, err = base64.StdEncoding.DecodeString(salt); err != nil || len(v.Salt) == 0 {
		return v, errors.New("malformed SCRAM-SHA-256 verifier: salt")
	}
	if v.StoredKey, err = base64.StdEncoding.DecodeString(stored); err != nil || len(v.StoredKey) != keyLen {
		return v, errors.New("malformed SCRAM-SHA-256 verifier: stored key")
	}
	if v.ServerKey, err = base64.StdEncoding.DecodeString(server); err != nil || len(v.ServerKey) != keyLen {
		return v, errors.New("malformed SCRAM-SHA-256 verifier: server key")
	}
	return v, nil
}

// NewVerifier derives the verifier of a password, as PostgreSQL does when a
// password is set (without SASLprep, which changes only non-ASCII input).
func NewVerifier(password string, salt []byte, iterations int) Verifier {
	clientKey, serverKey := passwordKeys(password, salt, iterations)
	stored := sha256.Sum256(clientKey)
	return Verifier{Iterations: iterations, Salt: salt, StoredKey: stored[:], ServerKey: serverKey}
}

// String encodes the verifier as pg_authid stores it.
func (v Verifier) String() string {
	b := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("%s$%d:%s$%s:%s", ScramSHA256, v.Iterations, b(v.Salt), b(v.StoredKey), b(v.ServerKey))
}

// MockVerifier is the verifier shown for a role that does not exist or has
// no usable password, as PostgreSQL's mock authentication does: a salt that
// is the same every time for the same name (derived from secret, which
// must be the same on every node and kept private), the default iteration
// count, and keys no proof matches.
func MockVerifier(secret []byte, name string) Verifier {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("pgplane mock SCRAM salt\x00"))
	m.Write([]byte(name))
	sum := m.Sum(nil)
	keys := make([]byte, 2*keyLen)
	rand.Read(keys)
	return Verifier{Iterations: DefaultIterations, Salt: sum[:saltLen], StoredKey: keys[:keyLen], ServerKey: keys[keyLen:]}
}

func hmacSHA256(key []byte, parts ...string) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}

// passwordKeys derives the ClientKey and ServerKey of a password.
func passwordKeys(password string, salt []byte, iterations int) (clientKey, serverKey []byte) {
	salted, _ := pbkdf2.Key(sha256.New, password, salt, iterations, keyLen)
	return hmacSHA256(salted, "Client Key"), hmacSHA256(salted, "Server Key")
}

// EndPointBinding is the tls-server-end-point channel binding data of a
// certificate (RFC 5929): its hash under the certificate's signature hash,
// SHA-256 in place of MD5 and SHA-1.
func EndPointBinding(cert *x509.Certificate) ([]byte, error) {
	var h hash.Hash
	switch cert.SignatureAlgorithm {
	case x509.SHA384WithRSA, x509.ECDSAWithSHA384, x509.SHA384WithRSAPSS:
		h = sha512.New384()
	case x509.SHA512WithRSA, x509.ECDSAWithSHA512, x509.SHA512WithRSAPSS:
		h = sha512.New()
	case x509.PureEd25519, x509.UnknownSignatureAlgorithm:
		return nil, fmt.Errorf("certificate signature algorithm %v has no tls-server-end-point hash", cert.SignatureAlgorithm)
	default:
		h = sha256.New()
	}
	h.Write(cert.Raw)
	return h.Sum(nil), nil
}

// ErrAuthFailed is a proof that does not match the verifier: the wrong
// password, or a role that does not exist (mock authentication).
var ErrAuthFailed = errors.New("SCRAM proof does not match")

// ScramServer is the server side of one SCRAM-SHA-256 exchange: it reads
// the client's first and final messages and checks the proof against a
// verifier, recovering the client's ClientKey.
type ScramServer struct {
	// EndPoint is the channel binding data of the certificate this side
	// presented over TLS; nil when the connection has no TLS, which also
	// means SCRAM-SHA-256-PLUS was not offered.
	EndPoint []byte

	v               Verifier
	doomed          bool // a mock verifier: every proof fails
	plus            bool
	cbFlag          byte
	gs2Header       string
	clientNonce     string
	nonce           string // client nonce + server nonce
	clientFirstBare string
	serverFirst     string
}

// Mechanisms are the SASL mechanisms to offer, the strongest first.
func (s *ScramServer) Mechanisms() []string {
	if s.EndPoint != nil {
		return []string{ScramSHA256Plus, ScramSHA256}
	}
	return []string{ScramSHA256}
}

// scramError is a malformed SCRAM message, worded as PostgreSQL words it.
func scramError(detail string) error {
	return &Error{Code: CodeProtocolViolation, Message: "malformed SCRAM message", Detail: detail}
}

// ClientFirst reads the SASLInitialResponse's mechanism and data and
// returns the server-first-message. v is the role's verifier; doomed marks a
// mock one, which no proof passes.
func (s *ScramServer) ClientFirst(mechanism string, data []byte, v Verifier, doomed bool) ([]byte, error) {
	s.v, s.doomed = v, doomed
	switch mechanism {
	case ScramSHA256:
	case ScramSHA256Plus:
		if s.EndPoint == nil {
			return nil, &Error{Code: CodeProtocolViolation, Message: "client selected an invalid SASL authentication mechanism"}
		}
		s.plus = true
	default:
		return nil, &Error{Code: CodeProtocolViolation, Message: "client selected an invalid SASL authentication mechanism"}
	}
	in := string(data)
	if in == "" {
		return nil, scramError("The message is empty.")
	}
	switch in[0] {
	case 'n', 'y':
		if s.plus {
			return nil, scramError("The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data.")
		}
		if in[0] == 'y' && s.EndPoint != nil {
			return nil, &Error{Code: CodeProtocolViolation, Message: "SCRAM channel binding negotiation error",
				Detail: "The client supports SCRAM channel binding but thinks the server does not.  However, this server does support channel binding."}
		}
		s.cbFlag = in[0]
		if len(in) < 2 || in[1] != ',' {
			return nil, scramError("Comma expected after the channel binding flag.")
		}
		in = in[2:]
	case 'p':
		if !s.plus {
			return nil, scramError("The client requires SCRAM channel binding, but it was not negotiated.")
		}
		typ, rest, err := attr(in, 'p')
		if err != nil {
			return nil, err
		}
		if typ != cbTypeEndPoint {
			return nil, &Error{Code: CodeProtocolViolation, Message: fmt.Sprintf("unsupported SCRAM channel-binding type %q", typ)}
		}
		s.cbFlag, in = 'p', rest
	default:
		return nil, scramError(fmt.Sprintf("Unexpected channel-binding flag %q.", in[0]))
	}
	if strings.HasPrefix(in, "a=") {
		return nil, &Error{Code: CodeFeatureNotSupported, Message: "client uses authorization identity, but it is not supported"}
	}
	if !strings.HasPrefix(in, ",") {
		return nil, scramError("Unexpected attribute in client-first-message.")
	}
	s.gs2Header = string(data[:len(data)-len(in)+1])
	in = in[1:]
	s.clientFirstBare = in
	if strings.HasPrefix(in, "m=") {
		return nil, &Error{Code: CodeFeatureNotSupported, Message: "client requires an unsupported SCRAM extension"}
	}
	_, in, err := attr(in, 'n') // the user name is ignored: the startup message names the role
	if err != nil {
		return nil, err
	}
	if s.clientNonce, _, err = attr(in, 'r'); err != nil {
		return nil, err
	}
	if s.clientNonce == "" || !printable(s.clientNonce) {
		return nil, scramError("non-printable characters in SCRAM nonce")
	}
	raw := make([]byte, rawNonceLen)
	rand.Read(raw)
	s.nonce = s.clientNonce + base64.StdEncoding.EncodeToString(raw)
	s.serverFirst = "r=" + s.nonce + ",s=" + base64.StdEncoding.EncodeToString(v.Salt) + ",i=" + strconv.Itoa(v.Iterations)
	return []byte(s.serverFirst), nil
}

// ClientFinal reads the client-final-message and checks it. On success it
// returns the ClientKey recovered from the proof and the
// server-final-message; a proof that does not match is ErrAuthFailed.
func (s *ScramServer) ClientFinal(data []byte) (clientKey, serverFinal []byte, err error) {
	in := string(data)
	cb, rest, err := attr(in, 'c')
	if err != nil {
		return nil, nil, err
	}
	want := s.gs2Header
	if s.cbFlag == 'p' {
		want += string(s.EndPoint)
	}
	if cb != base64.StdEncoding.EncodeToString([]byte(want)) {
		if s.cbFlag == 'p' {
			return nil, nil, &Error{Code: CodeProtocolViolation, Message: "SCRAM channel binding check failed"}
		}
		return nil, nil, scramError("unexpected SCRAM channel-binding attribute in client-final-message")
	}
	nonce, rest, err := attr(rest, 'r')
	if err != nil {
		return nil, nil, err
	}
	// Optional extensions, then the proof, last.
	var proof string
	for {
		if rest == "" {
			return nil, nil, scramError("client-final-message without proof")
		}
		name := rest[0]
		var value string
		withoutProof := in[:len(in)-len(rest)-1]
		if value, rest, err = attr(rest, name); err != nil {
			return nil, nil, err
		}
		if name == 'p' {
			if rest != "" || strings.HasSuffix(in, ",") {
				return nil, nil, scramError("Garbage found at the end of client-final-message.")
			}
			proof = value
			in = withoutProof
			break
		}
	}
	if nonce != s.nonce {
		return nil, nil, scramError("Mismatched SCRAM nonce.")
	}
	p, err := base64.StdEncoding.DecodeString(proof)
	if err != nil || len(p) != keyLen {
		return nil, nil, scramError("Malformed proof in client-final-message.")
	}
	authMessage := s.clientFirstBare + "," + s.serverFirst + "," + in
	clientKey = hmacSHA256(s.v.StoredKey, authMessage)
	for i := range clientKey {
		clientKey[i] ^= p[i]
	}
	stored := sha256.Sum256(clientKey)
	if subtle.ConstantTimeCompare(stored[:], s.v.StoredKey) != 1 || s.doomed {
		return nil, nil, ErrAuthFailed
	}
	return clientKey, []byte("v=" + base64.StdEncoding.EncodeToString(hmacSHA256(s.v.ServerKey, authMessage))), nil
}

// attr reads "NAME=VALUE" up to the next comma or the end, and returns the
// value and what follows the comma.
func attr(in string, name byte) (string, string, error) {
	if len(in) < 2 || in[0] != name || in[1] != '=' {
		return "", "", scramError(fmt.Sprintf("Expected attribute %q.", name))
	}
	in = in[2:]
	value, rest, _ := strings.Cut(in, ",")
	return value, rest, nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == ',' {
			return false
		}
	}
	return true
}

// ScramClient is the client side of one SCRAM-SHA-256 exchange, for a
// client that holds either the password or only the ClientKey and the
// verifier (the gateway logging in for a client whose proof it checked).
type ScramClient struct {
	// Keys returns the ClientKey and ServerKey for the salt and iteration
	// count the server sent.
	Keys func(salt []byte, iterations int) (clientKey, serverKey []byte, err error)
	// EndPoint is the channel binding data of the server's certificate;
	// nil without TLS.
	EndPoint []byte

	mechanism       string
	gs2Header       string
	clientNonce     string
	clientFirstBare string
	serverKey       []byte
	authMessage     string
}

// PasswordKeys makes ScramClient.Keys of a password.
func PasswordKeys(password string) func([]byte, int) ([]byte, []byte, error) {
	return func(salt []byte, iterations int) ([]byte, []byte, error) {
		c, s := passwordKeys(password, salt, iterations)
		return c, s, nil
	}
}

// VerifierKeys makes ScramClient.Keys of a ClientKey and the verifier it
// was checked against; a server with another salt or iteration count holds
// another verifier, and that is an error.
func VerifierKeys(clientKey []byte, v Verifier) func([]byte, int) ([]byte, []byte, error) {
	return func(salt []byte, iterations int) ([]byte, []byte, error) {
		if iterations != v.Iterations || !hmac.Equal(salt, v.Salt) {
			return nil, nil, errors.New("the server holds another password verifier for the role than the one looked up (the password changed)")
		}
		return clientKey, v.ServerKey, nil
	}
}

// Start picks a mechanism among those the server offers and returns it
// with the client-first-message.
func (c *ScramClient) Start(offered []string) (mechanism string, first []byte, err error) {
	has := func(m string) bool {
		for _, o := range offered {
			if o == m {
				return true
			}
		}
		return false
	}
	switch {
	case c.EndPoint != nil && has(ScramSHA256Plus):
		c.mechanism, c.gs2Header = ScramSHA256Plus, "p="+cbTypeEndPoint+",,"
	case has(ScramSHA256):
		c.mechanism, c.gs2Header = ScramSHA256, "n,,"
		if c.EndPoint != nil {
			c.gs2Header = "y,," // TLS without PLUS offered: say so, as libpq does
		}
	default:
		return "", nil, fmt.Errorf("the server offers SASL mechanisms %v, none of them SCRAM-SHA-256", offered)
	}
	raw := make([]byte, rawNonceLen)
	rand.Read(raw)
	c.clientNonce = base64.StdEncoding.EncodeToString(raw)
	c.clientFirstBare = "n=,r=" + c.clientNonce
	return c.mechanism, []byte(c.gs2Header + c.clientFirstBare), nil
}

// Continue reads the server-first-message and returns the
// client-final-message.
func (c *ScramClient) Continue(serverFirst []byte) ([]byte, error) {
	in := string(serverFirst)
	nonce, rest, err := attr(in, 'r')
	if err != nil {
		return nil, err
	}
	salt64, rest, err := attr(rest, 's')
	if err != nil {
		return nil, err
	}
	iter, _, err := attr(rest, 'i')
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(nonce, c.clientNonce) || len(nonce) == len(c.clientNonce) {
		return nil, errors.New("SCRAM: the server's nonce does not extend the client's")
	}
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil {
		return nil, errors.New("SCRAM: malformed salt from the server")
	}
	iterations, err := strconv.Atoi(iter)
	if err != nil || iterations < 1 || iterations > maxIterations {
		return nil, fmt.Errorf("SCRAM: iteration count %q from the server is not between 1 and %d", iter, maxIterations)
	}
	clientKey, serverKey, err := c.Keys(salt, iterations)
	if err != nil {
		return nil, err
	}
	c.serverKey = serverKey
	cb := c.gs2Header
	if c.mechanism == ScramSHA256Plus {
		cb += string(c.EndPoint)
	}
	withoutProof := "c=" + base64.StdEncoding.EncodeToString([]byte(cb)) + ",r=" + nonce
	c.authMessage = c.clientFirstBare + "," + in + "," + withoutProof
	stored := sha256.Sum256(clientKey)
	proof := hmacSHA256(stored[:], c.authMessage)
	for i := range proof {
		proof[i] ^= clientKey[i]
	}
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

// Finish checks the server-final-message: the server proves it knows the
// ServerKey.
func (c *ScramClient) Finish(serverFinal []byte) error {
	in := string(serverFinal)
	if e, ok := strings.CutPrefix(in, "e="); ok {
		return fmt.Errorf("SCRAM: the server reports %s", e)
	}
	v, _, err := attr(in, 'v')
	if err != nil {
		return err
	}
	sig, err := base64.StdEncoding.DecodeString(v)
	if err != nil || !hmac.Equal(sig, hmacSHA256(c.serverKey, c.authMessage)) {
		return errors.New("SCRAM: the server's signature does not match (not the server that holds the verifier)")
	}
	return nil
}
