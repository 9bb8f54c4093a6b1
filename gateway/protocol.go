package gateway

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/pgplane/pgplane/pgwire"
)

// Startup packet codes (PostgreSQL protocol, "Message Formats").
const (
	protocolV3        = 3 << 16
	sslRequestCode    = pgwire.SSLRequestCode
	gssEncRequestCode = 1234<<16 | 5680
	cancelRequestCode = 1234<<16 | 5678

	// maxStartupPacket is PostgreSQL's own limit (MAX_STARTUP_PACKET_LENGTH).
	maxStartupPacket = 10000
)

// startupPacket is a parsed untyped packet of the startup phase.
type startupPacket struct {
	code uint32 // protocol version, or a request code
	// params are the startup parameters, in order.
	params []param
	// cancelPID and cancelKey are set for a CancelRequest.
	cancelPID, cancelKey uint32
}

type param struct{ name, value string }

// readStartupPacket reads one length-prefixed packet of the startup phase.
func readStartupPacket(r io.Reader) (*startupPacket, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < 8 || n > maxStartupPacket {
		return nil, fmt.Errorf("%w: invalid startup packet length %d (8 to %d bytes)", pgwire.ErrProtocol, n, maxStartupPacket)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return parseStartupPacket(body)
}

// parseStartupPacket parses the body of a startup packet (after its length).
func parseStartupPacket(body []byte) (*startupPacket, error) {
	if len(body) < 4 {
		return nil, fmt.Errorf("%w: startup packet too short", pgwire.ErrProtocol)
	}
	p := &startupPacket{code: binary.BigEndian.Uint32(body)}
	rest := body[4:]
	switch p.code {
	case sslRequestCode, gssEncRequestCode:
		if len(rest) != 0 {
			return nil, fmt.Errorf("%w: request packet with %d extra bytes", pgwire.ErrProtocol, len(rest))
		}
		return p, nil
	case cancelRequestCode:
		if len(rest) != 8 {
			return nil, fmt.Errorf("%w: cancel request of %d bytes, want 16", pgwire.ErrProtocol, len(rest)+8)
		}
		p.cancelPID, p.cancelKey = binary.BigEndian.Uint32(rest), binary.BigEndian.Uint32(rest[4:])
		return p, nil
	}
	if p.code>>16 != 3 {
		return nil, fmt.Errorf("%w: unsupported frontend protocol %d.%d; the gateway speaks 3.0", pgwire.ErrProtocol, p.code>>16, p.code&0xffff)
	}
	for {
		name, tail, ok := pgwire.CutCString(rest)
		if !ok {
			return nil, fmt.Errorf("%w: startup packet is not terminated", pgwire.ErrProtocol)
		}
		if name == "" {
			if len(tail) != 0 {
				return nil, fmt.Errorf("%w: %d bytes after the startup parameters", pgwire.ErrProtocol, len(tail))
			}
			return p, nil
		}
		value, tail2, ok := pgwire.CutCString(tail)
		if !ok {
			return nil, fmt.Errorf("%w: startup parameter %q has no value", pgwire.ErrProtocol, name)
		}
		p.params = append(p.params, param{name, value})
		rest = tail2
	}
}

// get returns a startup parameter's value.
func (p *startupPacket) get(name string) string {
	for _, kv := range p.params {
		if kv.name == name {
			return kv.value
		}
	}
	return ""
}

// set replaces or adds a startup parameter.
func (p *startupPacket) set(name, value string) {
	for i := range p.params {
		if p.params[i].name == name {
			p.params[i].value = value
			return
		}
	}
	p.params = append(p.params, param{name, value})
}

// sessionKey is the startup parameters that shape a backend session (all
// but the _pq_. options), sorted, so that two clients asking for the same
// session in another order get the same key.
func (p *startupPacket) sessionKey() string {
	pairs := make([]string, 0, len(p.params))
	for _, kv := range p.params {
		if !strings.HasPrefix(kv.name, "_pq_.") {
			pairs = append(pairs, kv.name+"\x00"+kv.value)
		}
	}
	slices.Sort(pairs)
	return strings.Join(pairs, "\x00")
}

// protocolOptions returns the _pq_. options the client asked for.
func (p *startupPacket) protocolOptions() []string {
	var out []string
	for _, kv := range p.params {
		if strings.HasPrefix(kv.name, "_pq_.") {
			out = append(out, kv.name)
		}
	}
	return out
}

// encodeForBackend encodes a protocol 3.0 startup message without the _pq_.
// options, which the gateway has already answered.
func (p *startupPacket) encodeForBackend() []byte {
	var b bytes.Buffer
	b.Write([]byte{0, 0, 0, 0, 0, 3, 0, 0})
	for _, kv := range p.params {
		if strings.HasPrefix(kv.name, "_pq_.") {
			continue
		}
		b.WriteString(kv.name)
		b.WriteByte(0)
		b.WriteString(kv.value)
		b.WriteByte(0)
	}
	b.WriteByte(0)
	out := b.Bytes()
	binary.BigEndian.PutUint32(out, uint32(len(out)))
	return out
}

// requestPacket encodes an SSLRequest or a CancelRequest.
func requestPacket(code uint32, extra ...uint32) []byte {
	b := make([]byte, 8+4*len(extra))
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	binary.BigEndian.PutUint32(b[4:], code)
	for i, x := range extra {
		binary.BigEndian.PutUint32(b[8+4*i:], x)
	}
	return b
}

// negotiateProtocolVersion builds the NegotiateProtocolVersion message: the
// newest minor version the gateway supports (0) and the options it does not
// recognise (all _pq_. options).
func negotiateProtocolVersion(options []string) []byte {
	p := make([]byte, 8)
	binary.BigEndian.PutUint32(p[4:], uint32(len(options)))
	for _, o := range options {
		p = append(append(p, o...), 0)
	}
	return pgwire.AppendMessage(nil, 'v', p)
}

// SASL mechanism names.
const (
	scramSHA256     = "SCRAM-SHA-256"
	scramSHA256Plus = "SCRAM-SHA-256-PLUS"
)

// stripChannelBinding removes SCRAM-SHA-256-PLUS from an AuthenticationSASL
// payload (int32 10, then mechanism names, then an empty name). Channel
// binding binds to the backend's certificate, which the client never sees.
func stripChannelBinding(payload []byte) ([]byte, error) {
	out := append([]byte(nil), payload[:4]...)
	rest := payload[4:]
	kept := 0
	for {
		name, tail, ok := pgwire.CutCString(rest)
		if !ok {
			return nil, fmt.Errorf("%w: malformed AuthenticationSASL from the backend", pgwire.ErrProtocol)
		}
		if name == "" {
			break
		}
		if name != scramSHA256Plus {
			out = append(append(out, name...), 0)
			kept++
		}
		rest = tail
	}
	if kept == 0 {
		return nil, &pgwire.Error{Code: pgwire.CodeProtocolViolation, Message: "the backend offers only SCRAM-SHA-256-PLUS, which cannot cross the gateway's TLS termination",
			Hint: "allow SCRAM-SHA-256 without channel binding on the backend"}
	}
	return append(out, 0), nil
}
