// Package pgwire is the part of PostgreSQL's frontend/backend protocol that
// pgplane speaks itself rather than relays: message framing, ErrorResponse,
// SCRAM-SHA-256 on both sides of an exchange (the gateway as the client's
// SCRAM server, and as a SCRAM client of a backend holding only the
// ClientKey), and a small client for short queries such as the gateway's
// verifier lookups.
//
// It imports nothing of pgplane's and never CoreDNS.
package pgwire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrProtocol marks a protocol violation by the peer (SQLSTATE 08P01).
var ErrProtocol = errors.New("protocol violation")

// ReadMessage reads one typed message: a type byte, a length that counts
// itself, and the payload of at most limit bytes.
func ReadMessage(r *bufio.Reader, limit int) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[1:]))
	if n < 4 || n-4 > limit {
		return 0, nil, fmt.Errorf("%w: message %q of length %d (at most %d)", ErrProtocol, hdr[0], n, limit+4)
	}
	payload := make([]byte, n-4)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	return hdr[0], payload, nil
}

// AppendMessage appends a typed message to b.
func AppendMessage(b []byte, typ byte, payload []byte) []byte {
	b = append(b, typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[len(b)-4:], uint32(len(payload)+4))
	return append(b, payload...)
}

// CutCString splits a NUL-terminated string off the front of b.
func CutCString(b []byte) (string, []byte, bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", nil, false
	}
	return string(b[:i]), b[i+1:], true
}

// AppendCString appends s and its NUL terminator.
func AppendCString(b []byte, s string) []byte { return append(append(b, s...), 0) }

// SQLSTATE codes pgplane sends or looks for, named as PostgreSQL's
// errcodes.txt names them.
const (
	CodeRejectedConnection     = "08004" // sqlserver_rejected_establishment_of_sqlconnection
	CodeConnectionFailure      = "08006" // connection_failure
	CodeProtocolViolation      = "08P01" // protocol_violation
	CodeFeatureNotSupported    = "0A000" // feature_not_supported
	CodeInvalidAuthorization   = "28000" // invalid_authorization_specification
	CodeInvalidPassword        = "28P01" // invalid_password
	CodeTooManyConnections     = "53300" // too_many_connections
	CodeNotInPrerequisiteState = "55000" // object_not_in_prerequisite_state
)

// Error is a PostgreSQL ErrorResponse: one the gateway sends (severity
// FATAL), or one a backend sent.
type Error struct {
	Severity string // FATAL when empty
	Code     string // SQLSTATE
	Message  string
	Detail   string
	Hint     string
}

// Error returns the SQLSTATE and the message.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Encode builds the ErrorResponse message.
func (e *Error) Encode() []byte {
	sev := e.Severity
	if sev == "" {
		sev = "FATAL"
	}
	var p []byte
	field := func(t byte, v string) {
		if v != "" {
			p = AppendCString(append(p, t), v)
		}
	}
	field('S', sev)
	field('V', sev)
	field('C', e.Code)
	field('M', e.Message)
	field('D', e.Detail)
	field('H', e.Hint)
	p = append(p, 0)
	return AppendMessage(nil, 'E', p)
}

// ParseError reads the fields of an ErrorResponse (or NoticeResponse)
// payload; unknown fields are skipped.
func ParseError(payload []byte) *Error {
	e := &Error{}
	for len(payload) > 1 {
		t := payload[0]
		v, rest, ok := CutCString(payload[1:])
		if !ok {
			break
		}
		switch t {
		case 'V':
			e.Severity = v
		case 'S':
			if e.Severity == "" {
				e.Severity = v
			}
		case 'C':
			e.Code = v
		case 'M':
			e.Message = v
		case 'D':
			e.Detail = v
		case 'H':
			e.Hint = v
		}
		payload = rest
	}
	return e
}

// Authentication request codes of the 'R' message.
const (
	AuthOK           = 0
	AuthCleartext    = 3
	AuthMD5          = 5
	AuthSASL         = 10
	AuthSASLContinue = 11
	AuthSASLFinal    = 12
)

// AuthMessage encodes an 'R' message: the code, then data.
func AuthMessage(code uint32, data []byte) []byte {
	p := make([]byte, 4, 4+len(data))
	binary.BigEndian.PutUint32(p, code)
	return AppendMessage(nil, 'R', append(p, data...))
}

// StartupMessage encodes a protocol 3.0 startup message from name, value
// pairs.
func StartupMessage(params ...string) []byte {
	b := []byte{0, 0, 0, 0, 0, 3, 0, 0}
	for _, s := range params {
		b = AppendCString(b, s)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}
