package raftstate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/pgplane/pgplane/topology"
)

// Forwarding: a member that is not the leader hands a write to the leader
// over the Raft transport's mutual TLS, one request and one response per
// connection, each a JSON document.

// forwardRequest is a write handed to the leader.
type forwardRequest struct {
	Origin  string                     `json:"origin"`
	Changes map[string]json.RawMessage `json:"changes"`
	// Import takes only the keys the state does not hold yet (the one-time
	// import of the previous state format).
	Import bool `json:"import,omitempty"`
}

// forwardResponse is the leader's answer: the index of the committed entry,
// or why the write was refused.
type forwardResponse struct {
	Index uint64 `json:"index,omitempty"`
	// NotLeader says the member asked is not the leader (any more).
	NotLeader  bool                 `json:"not_leader,omitempty"`
	Violations []topology.Violation `json:"violations,omitempty"`
	Problem    *problemView         `json:"problem,omitempty"`
	NoQuorum   *NoQuorumError       `json:"no_quorum,omitempty"`
	// Unavailable is the message of a refusal that says the change cannot
	// be made now on the leader (its disk is full).
	Unavailable string `json:"unavailable,omitempty"`
	Error       string `json:"error,omitempty"`
}

// problemView is a topology.OverlayProblem on the wire.
type problemView struct {
	Key     string `json:"key"`
	Message string `json:"message"`
}

// maxForward bounds a forwarded request or response: the admin API takes
// bodies up to 1 MiB, and a change's JSON is about that size at most.
const maxForward = 4 << 20

// forwardTimeout bounds one forwarded write: the leader's commit and the
// answer.
const forwardTimeout = 10 * time.Second

// encodeOutcome turns a write's outcome into the response a forwarding
// member turns back into the same error.
func encodeOutcome(index uint64, err error) forwardResponse {
	var (
		vs topology.Violations
		p  topology.OverlayProblem
		nq *NoQuorumError
		u  interface{ Unavailable() bool }
	)
	switch {
	case err == nil:
		return forwardResponse{Index: index}
	case errors.Is(err, errNotLeader):
		return forwardResponse{NotLeader: true}
	case errors.As(err, &vs):
		return forwardResponse{Violations: vs}
	case errors.As(err, &p):
		return forwardResponse{Problem: &problemView{Key: p.Key, Message: p.Err.Error()}}
	case errors.As(err, &nq):
		return forwardResponse{NoQuorum: nq}
	case errors.As(err, &u) && u.Unavailable():
		return forwardResponse{Unavailable: err.Error()}
	default:
		return forwardResponse{Error: err.Error()}
	}
}

// outcome is the inverse of encodeOutcome.
func (r forwardResponse) outcome() (uint64, error) {
	switch {
	case r.NotLeader:
		return 0, errNotLeader
	case len(r.Violations) > 0:
		return 0, topology.Violations(r.Violations)
	case r.Problem != nil:
		return 0, topology.OverlayProblem{Key: r.Problem.Key, Err: errors.New(r.Problem.Message)}
	case r.NoQuorum != nil:
		return 0, r.NoQuorum
	case r.Unavailable != "":
		return 0, leaderUnavailable(r.Unavailable)
	case r.Error != "":
		return 0, errors.New(r.Error)
	case r.Index == 0:
		return 0, errors.New("leader: an answer without an index")
	}
	return r.Index, nil
}

// serveForward takes one forwarded write on conn and answers it.
func (s *Store) serveForward(conn net.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(forwardTimeout))
	var req forwardRequest
	if err := json.NewDecoder(io.LimitReader(conn, maxForward)).Decode(&req); err != nil {
		s.report(fmt.Errorf("forwarded write from %s: %w", conn.RemoteAddr(), err))
		return
	}
	deletionsAsNil(req.Changes)
	select {
	case <-s.raftReady:
	case <-time.After(forwardTimeout / 2):
		// Still starting: not the leader (the caller tries again).
		json.NewEncoder(conn).Encode(encodeOutcome(0, errNotLeader))
		return
	}
	index, err := s.lead(req)
	json.NewEncoder(conn).Encode(encodeOutcome(index, err))
}

// forwardTo hands a write to the leader at address.
func (s *Store) forwardTo(address string, req forwardRequest) (uint64, error) {
	conn, err := s.stream.dial(address, 2*time.Second)
	if err != nil {
		return 0, &unreachableError{address, err}
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(forwardTimeout))
	if _, err := conn.Write([]byte{forwardByte}); err != nil {
		return 0, fmt.Errorf("forwarding to the leader at %s: %w", address, err)
	}
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return 0, fmt.Errorf("forwarding to the leader at %s: %w", address, err)
	}
	var resp forwardResponse
	if err := json.NewDecoder(io.LimitReader(conn, maxForward)).Decode(&resp); err != nil {
		return 0, fmt.Errorf("the leader at %s did not answer: %w", address, err)
	}
	return resp.outcome()
}

// unreachableError is a leader that could not be reached: the write was not
// handed over, and may be tried again with the next leader.
type unreachableError struct {
	address string
	err     error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("forwarding to the leader at %s: %v", e.address, e.err)
}

func (e *unreachableError) Unwrap() error { return e.err }

// leaderUnavailable is the leader's refusal of a change it cannot make now,
// carried back to the member that forwarded it.
type leaderUnavailable string

func (e leaderUnavailable) Error() string { return "the leader: " + string(e) }

// Unavailable marks the error for a 503.
func (leaderUnavailable) Unavailable() bool { return true }
