package gateway

import (
	"fmt"
	"io"
	"net"
	"time"
)

// Cancel requests: served by the node that handed out the key (G2a).

// cancel forwards a CancelRequest to the backend that owns the session (G2a).
func (s *session) cancel(k cancelKey) error {
	if node := NodeOf(k.pid); node != s.g.cfg.NodeID {
		if s.g.cfg.ForwardCancel != nil && s.g.cfg.ForwardCancel(node, k.pid, k.secret) {
			s.reason = fmt.Sprintf("forwarded to node %d", node)
		} else {
			s.reason = fmt.Sprintf("cancel key of node %d, which is not reachable from node %d", node, s.g.cfg.NodeID)
		}
		return nil
	}
	s.server, s.reason = s.g.cancelLocal(k)
	return nil
}

// Cancel delivers a cancel request forwarded from another node (G2a).
func (g *Gateway) Cancel(pid, secret uint32) {
	server, reason := g.cancelLocal(cancelKey{pid, secret})
	g.cfg.Logger.Info().Str("server", server).Str("decision", decisionCancel).Str("reason", reason).Msg("forwarded cancel")
}

// cancelLocal sends the backend's own CancelRequest for a key this node
// handed out, and returns the session's server and what happened (G9).
func (g *Gateway) cancelLocal(k cancelKey) (server, reason string) {
	b, ok := g.sessions.lookup(k)
	if !ok {
		return "", "no session has this cancel key"
	}
	c, err := net.DialTimeout("tcp", b.addr, g.cfg.DialTimeout)
	if err != nil {
		return b.server, err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(g.cfg.DialTimeout))
	if _, err = c.Write(requestPacket(cancelRequestCode, b.pid, b.secret)); err != nil {
		return b.server, err.Error()
	}
	io.Copy(io.Discard, c) // the backend closes the connection once it has read the request
	return b.server, "sent to backend " + b.addr
}
