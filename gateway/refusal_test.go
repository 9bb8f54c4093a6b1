package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/pgplane/pgplane/pgwire"
)

// A session's decision comes from its error's kind, never from its text.
//
// SPEC: G9
func TestClassifyByKind(t *testing.T) {
	for _, tc := range []struct {
		err      error
		decision string
		sends    bool
	}{
		{refuse(decisionNoServer, &pgwire.Error{Code: pgwire.CodeRejectedConnection, Message: "m"}), decisionNoServer, true},
		{fmt.Errorf("step: %w", refuse(decisionBackendRejected, nil).because("relayed")), decisionBackendRejected, false},
		{&pgwire.Error{Code: pgwire.CodeProtocolViolation, Message: "m"}, decisionProtocol, true},
		{fmt.Errorf("%w: short message", pgwire.ErrProtocol), decisionProtocol, true},
		{fmt.Errorf("reading: %w", os.ErrDeadlineExceeded), decisionTimeout, false},
		{fmt.Errorf("reading from client: %w", io.EOF), decisionProtocol, false},
		{errors.New("a version of something"), decisionProtocol, false},
	} {
		r := classify(tc.err)
		if r.decision != tc.decision || (r.client != nil) != tc.sends {
			t.Errorf("%v: got %s (sends %v), want %s (sends %v)", tc.err, r.decision, r.client != nil, tc.decision, tc.sends)
		}
	}
}

// A TLS handshake that fails because the client offers no version the
// server allows is logged as such; one that fails on garbage is a protocol
// refusal.
//
// SPEC: G4 G9
func TestTLSHandshakeRefusalsByKind(t *testing.T) {
	f := newFixture(t, nil)
	old := f.clientTLS("reports-db.postgres.database.azure.com")
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	c := f.dialFrom("127.0.0.1")
	c.Write(requestPacket(sslRequestCode))
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'S' {
		t.Fatalf("want S, got %q %v", b[0], err)
	}
	if err := tls.Client(c, old).Handshake(); err == nil {
		t.Fatal("a TLS 1.1 client must be refused")
	}
	waitLog(t, f, `"decision":"refused_tls_version"`)

	c = f.dialFrom("127.0.0.2")
	c.Write(requestPacket(sslRequestCode))
	io.ReadFull(c, b[:])
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	io.Copy(io.Discard, c)
	waitLog(t, f, `"client":"127.0.0.2","server":"","decision":"refused_protocol"`)
}
