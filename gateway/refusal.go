package gateway

import (
	"errors"
	"io"
	"net"

	"github.com/pgplane/pgplane/pgwire"
)

// refusal is why a session ended before it was passed through, with its
// kind: the decision it is logged and counted with (G9), the reason the log
// gives, and the error the client is sent. Every step of a session returns
// one (or an error classify makes one of), so the decision is set in one
// place, from the error, and never guessed from an error's text.
type refusal struct {
	decision string
	reason   string        // for the log; the client error's message when empty
	client   *pgwire.Error // sent to the client; nil: nothing is sent
	cause    error
}

// refuse returns a refusal that tells the client why.
func refuse(decision string, client *pgwire.Error) *refusal {
	return &refusal{decision: decision, client: client}
}

// because sets the reason the log gives, when it is not the client's.
func (r *refusal) because(reason string) *refusal {
	r.reason = reason
	return r
}

// wrapping keeps the error that caused the refusal.
func (r *refusal) wrapping(err error) *refusal {
	r.cause = err
	if r.reason == "" && err != nil {
		r.reason = err.Error()
	}
	return r
}

// Error names the decision and the reason.
func (r *refusal) Error() string {
	switch {
	case r.reason != "":
		return r.decision + ": " + r.reason
	case r.client != nil:
		return r.decision + ": " + r.client.Message
	}
	return r.decision
}

// Unwrap returns the error that caused the refusal, if any.
func (r *refusal) Unwrap() error { return r.cause }

// classify makes a refusal of any error a session step returned: a refusal
// as it is; a PostgreSQL error, a protocol violation, a timeout or a closed
// connection by its type.
func classify(err error) *refusal {
	var r *refusal
	var pe *pgwire.Error
	var ne net.Error
	switch {
	case errors.As(err, &r):
		return r
	case errors.As(err, &pe):
		return refuse(decisionProtocol, pe)
	case errors.Is(err, pgwire.ErrProtocol):
		return refuse(decisionProtocol, &pgwire.Error{Code: pgwire.CodeProtocolViolation, Message: err.Error()})
	case errors.As(err, &ne) && ne.Timeout():
		return (&refusal{decision: decisionTimeout}).wrapping(err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return (&refusal{decision: decisionProtocol, cause: err}).because("client closed the connection during the startup phase")
	}
	return (&refusal{decision: decisionProtocol}).wrapping(err)
}
