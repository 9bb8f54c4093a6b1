package pgwire

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

// exchange runs a SCRAM exchange between a ScramClient holding keys and a
// ScramServer holding v; it returns the client key the server recovered.
func exchange(t *testing.T, c *ScramClient, srv *ScramServer, v Verifier, doomed bool) ([]byte, error) {
	t.Helper()
	mech, first, err := c.Start(srv.Mechanisms())
	if err != nil {
		return nil, err
	}
	serverFirst, err := srv.ClientFirst(mech, first, v, doomed)
	if err != nil {
		return nil, err
	}
	final, err := c.Continue(serverFirst)
	if err != nil {
		return nil, err
	}
	key, serverFinal, err := srv.ClientFinal(final)
	if err != nil {
		return nil, err
	}
	return key, c.Finish(serverFinal)
}

// SPEC: G7
func TestScramRoundTripRecoversClientKey(t *testing.T) {
	v := NewVerifier("s3cret", []byte("0123456789abcdef"), 4096)
	parsed, err := ParseVerifier(v.String())
	if err != nil || !bytes.Equal(parsed.StoredKey, v.StoredKey) || parsed.Iterations != 4096 {
		t.Fatalf("a verifier must read back as written: %v", err)
	}
	wantKey, _ := passwordKeys("s3cret", v.Salt, v.Iterations)
	for _, binding := range [][]byte{nil, []byte("cert-hash")} {
		srv := &ScramServer{EndPoint: binding}
		c := &ScramClient{Keys: PasswordKeys("s3cret"), EndPoint: binding}
		key, err := exchange(t, c, srv, v, false)
		if err != nil {
			t.Fatalf("binding %q: %v", binding, err)
		}
		if !bytes.Equal(key, wantKey) {
			t.Fatal("the server must recover the client's ClientKey")
		}
		if binding != nil && c.mechanism != ScramSHA256Plus {
			t.Fatalf("over TLS the client must pick %s, picked %s", ScramSHA256Plus, c.mechanism)
		}
		// The recovered key logs in to a second server holding the same
		// verifier, as the gateway logs in to the backend.
		c2 := &ScramClient{Keys: VerifierKeys(key, v), EndPoint: []byte("backend-hash")}
		if _, err := exchange(t, c2, &ScramServer{EndPoint: []byte("backend-hash")}, v, false); err != nil {
			t.Fatalf("pass-through login: %v", err)
		}
	}
}

// SPEC: G7
func TestScramRefusals(t *testing.T) {
	v := NewVerifier("right", []byte("0123456789abcdef"), 4096)
	if _, err := exchange(t, &ScramClient{Keys: PasswordKeys("wrong")}, &ScramServer{}, v, false); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("a wrong password: want ErrAuthFailed, got %v", err)
	}
	if _, err := exchange(t, &ScramClient{Keys: PasswordKeys("right")}, &ScramServer{}, v, true); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("a mock verifier must refuse even the right proof, got %v", err)
	}
	// Channel binding to another certificate (a man in the middle).
	srv := &ScramServer{EndPoint: []byte("gateway")}
	var pe *Error
	if _, err := exchange(t, &ScramClient{Keys: PasswordKeys("right"), EndPoint: []byte("mitm")}, srv, v, false); !errors.As(err, &pe) || pe.Message != "SCRAM channel binding check failed" {
		t.Fatalf("a binding to another certificate: got %v", err)
	}
	// A client that supports binding but was not offered it, over TLS: a
	// downgrade, refused as PostgreSQL refuses it.
	srv = &ScramServer{EndPoint: []byte("gateway")}
	if _, err := srv.ClientFirst(ScramSHA256, []byte("y,,n=,r=abc"), v, false); !errors.As(err, &pe) || pe.Message != "SCRAM channel binding negotiation error" {
		t.Fatalf("y flag over TLS: got %v", err)
	}
	// Without TLS, PLUS is not offered and cannot be chosen.
	if _, err := (&ScramServer{}).ClientFirst(ScramSHA256Plus, []byte("p=tls-server-end-point,,n=,r=abc"), v, false); err == nil {
		t.Fatal("PLUS without TLS must be refused")
	}
	// A VerifierKeys login against a server with another verifier (the
	// password changed) says so.
	other := NewVerifier("right", []byte("fedcba9876543210"), 4096)
	key, _ := passwordKeys("right", v.Salt, v.Iterations)
	if _, err := exchange(t, &ScramClient{Keys: VerifierKeys(key, v)}, &ScramServer{}, other, false); err == nil || !strings.Contains(err.Error(), "password changed") {
		t.Fatalf("want the changed-password error, got %v", err)
	}
}

// SPEC: G7
func TestMockVerifierSaltIsStablePerName(t *testing.T) {
	a, b := MockVerifier([]byte("k"), "ghost"), MockVerifier([]byte("k"), "ghost")
	if !bytes.Equal(a.Salt, b.Salt) || len(a.Salt) != saltLen || a.Iterations != DefaultIterations {
		t.Fatal("an unknown role must show the same salt and the default iteration count every time")
	}
	if bytes.Equal(a.Salt, MockVerifier([]byte("k"), "other").Salt) || bytes.Equal(a.Salt, MockVerifier([]byte("j"), "ghost").Salt) {
		t.Fatal("the mock salt depends on the name and the secret")
	}
}

func TestEndPointBindingHash(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"}, NotAfter: time.Now().Add(time.Hour),
		SignatureAlgorithm: x509.ECDSAWithSHA384}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	cert, _ := x509.ParseCertificate(der)
	b, err := EndPointBinding(cert)
	if err != nil || len(b) != 48 {
		t.Fatalf("an ECDSA-SHA384 certificate binds with SHA-384: %d bytes, %v", len(b), err)
	}
}

func TestParseVerifierNamesWhatItIs(t *testing.T) {
	for in, want := range map[string]string{
		"md5" + strings.Repeat("a", 32): "MD5 password",
		"plain":                         "not a SCRAM-SHA-256 verifier",
		"SCRAM-SHA-256$x:YWJj$a:b":      "iteration count",
	} {
		if _, err := ParseVerifier(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: want %q, got %v", in, want, err)
		}
	}
}

// FuzzScramServer feeds arbitrary client messages to the server side. A
// final message cannot know the server's random nonce, so "%N" in it
// stands for the nonce the server sent: the fuzzer reaches the checks
// after the nonce's, and still no input may pass without the password.
func FuzzScramServer(f *testing.F) {
	v := NewVerifier("pw", []byte("0123456789abcdef"), 16)
	f.Add("SCRAM-SHA-256", []byte("n,,n=,r=abcdef"), []byte("c=biws,r=abcdef,p=AAAA"))
	f.Add("SCRAM-SHA-256", []byte("n,,n=,r=abcdef"), []byte("c=biws,r=%N,p="+strings.Repeat("A", 44)))
	f.Add("SCRAM-SHA-256-PLUS", []byte("p=tls-server-end-point,,n=,r=x"), []byte("c=cD10bHMtc2VydmVyLWVuZC1wb2ludCwsaA==,r=%N,e=1,p="+strings.Repeat("A", 44)))
	f.Add("SCRAM-SHA-256", []byte("y,a=u,n=,r=1"), []byte(""))
	f.Add("SCRAM-SHA-256", []byte("n,,m=ext,n=u,r=1,x=2"), []byte("c=biws,r=%N,p=AA==,"))
	f.Fuzz(func(t *testing.T, mech string, first, final []byte) {
		srv := &ScramServer{EndPoint: []byte("h")}
		serverFirst, err := srv.ClientFirst(mech, first, v, false)
		if err != nil {
			return
		}
		nonce, _, err := attr(string(serverFirst), 'r')
		if err != nil {
			t.Fatalf("the server's first message has no nonce: %q", serverFirst)
		}
		final = bytes.ReplaceAll(final, []byte("%N"), []byte(nonce))
		if key, _, err := srv.ClientFinal(final); err == nil {
			t.Fatalf("a proof without the password passed: key %x", key)
		}
	})
}

// FuzzScramClient feeds arbitrary server messages to the client side.
// "%N" in the server's first message stands for the client's random nonce,
// which the server's must extend, so the fuzzer reaches the salt, the
// iteration count and the final message; the keys are derived with at
// most 16 iterations (PBKDF2 is not what is fuzzed, and a server may ask
// for millions).
func FuzzScramClient(f *testing.F) {
	f.Add([]byte("r=abc,s=YWJj,i=4096"), []byte("v=AAAA"))
	f.Add([]byte("r=%Nsrv,s=YWJj,i=4096"), []byte("v="+strings.Repeat("A", 44)))
	f.Add([]byte("r=%Nx,s=,i=1"), []byte("e=other-error"))
	f.Add([]byte("r=,s=,i=-1"), []byte("e=other-error"))
	f.Fuzz(func(t *testing.T, serverFirst, serverFinal []byte) {
		keys := PasswordKeys("pw")
		c := &ScramClient{Keys: func(salt []byte, iterations int) ([]byte, []byte, error) {
			return keys(salt, min(iterations, 16))
		}}
		_, first, err := c.Start([]string{ScramSHA256})
		if err != nil {
			t.Fatal(err)
		}
		nonce := string(first[strings.LastIndex(string(first), "r=")+2:])
		serverFirst = bytes.ReplaceAll(serverFirst, []byte("%N"), []byte(nonce))
		if _, err := c.Continue(serverFirst); err != nil {
			return
		}
		if c.Finish(serverFinal) == nil {
			t.Fatal("a server signature without the verifier passed")
		}
	})
}
