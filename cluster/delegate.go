package cluster

import (
	"encoding/json"
	"time"

	"github.com/hashicorp/memberlist"
)

// The memberlist delegate: what a node tells its peers and how it takes
// what they tell it. Its callbacks never block: work goes to the worker.

// workQueue bounds the messages waiting for the worker; past it a message
// is dropped, and push/pull anti-entropy brings what it carried.
const workQueue = 1024

// message kinds on the wire: one byte, then JSON.
const (
	msgVotes    = 'v'
	msgDecision = 'd'
	msgCancel   = 'c'
)

// ForwardCancel sends a cancel request to the node whose gateway owns the
// session (G2a). It reports false when no live member has that node ID.
func (n *Node) ForwardCancel(node uint8, pid, secret uint32) bool {
	for _, m := range n.ml.Members() {
		var meta nodeMeta
		if json.Unmarshal(m.Meta, &meta) != nil || meta.NodeID != node || m.Name == n.cfg.Name {
			continue
		}
		return n.ml.SendReliable(m, encode(msgCancel, cancelMsg{PID: pid, Secret: secret})) == nil
	}
	return false
}

type cancelMsg struct {
	PID    uint32 `json:"pid"`
	Secret uint32 `json:"secret"`
}

// nodeMeta is what a member announces with its gossip.
type nodeMeta struct {
	NodeID uint8 `json:"node_id"`
	// Raft is the address of the member's Raft transport, for run-time
	// changes (C5).
	Raft string `json:"raft,omitempty"`
}

// state is what push/pull anti-entropy exchanges: every decision.
type state struct {
	Decisions []Decision `json:"decisions"`
}

func encode(kind byte, v any) []byte {
	b, _ := json.Marshal(v)
	return append([]byte{kind}, b...)
}

// delegate is the memberlist.Delegate of a Node.
type delegate Node

// NodeMeta announces the node's gateway node ID, for forwarded cancels, and
// its Raft address.
func (d *delegate) NodeMeta(limit int) []byte {
	b, _ := json.Marshal(nodeMeta{NodeID: d.cfg.NodeID, Raft: d.cfg.RaftAddress})
	return b
}

// NotifyMsg takes a message from a peer: votes, a decision or a cancel.
// It decodes the message at once (memberlist may reuse b) and leaves
// anything that writes to disk, rebuilds snapshots or dials to the worker:
// memberlist's Delegate must not block its packet loop, which failure
// detection depends on.
func (d *delegate) NotifyMsg(b []byte) {
	n := (*Node)(d)
	if len(b) < 2 {
		return
	}
	switch b[0] {
	case msgVotes:
		var v VoteSet
		if json.Unmarshal(b[1:], &v) != nil {
			return
		}
		n.mu.Lock()
		changed := n.ballot.Record(v, time.Now())
		n.mu.Unlock()
		if changed && !n.decidePending.Swap(true) {
			n.enqueue(func() {
				n.decidePending.Store(false)
				n.decide()
			})
		}
	case msgDecision:
		var dec Decision
		if json.Unmarshal(b[1:], &dec) == nil {
			n.enqueue(func() { n.takeDecision(dec) })
		}
	case msgCancel:
		var c cancelMsg
		if json.Unmarshal(b[1:], &c) == nil && n.hooks.Cancel != nil {
			go n.hooks.Cancel(c.PID, c.Secret)
		}
	}
}

// enqueue hands work to the worker without waiting.
func (n *Node) enqueue(f func()) {
	select {
	case n.work <- f:
	default:
		n.cfg.Logger.Warn().Msg("cluster: message queue full, a peer's message is dropped; push/pull anti-entropy brings it")
	}
}

// worker runs the queued work in order until Stop.
func (n *Node) worker() {
	defer n.done.Done()
	for {
		select {
		case <-n.stop:
			return
		case f := <-n.work:
			f()
		}
	}
}

// spread sends msg to every live member at once and, when it fits a packet,
// queues it for gossip too. A large message goes over TCP, which can wait
// on a member that died a moment ago, so it is sent in the background: the
// caller has done its part (a change is on disk) and does not wait.
func (n *Node) spread(msg []byte) {
	if len(msg) >= packetLimit {
		go n.sendAll(msg)
		return
	}
	n.queue.QueueBroadcast(broadcast(msg))
	n.sendAll(msg)
}

// GetBroadcasts hands memberlist the queued gossip.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.queue.GetBroadcasts(overhead, limit)
}

// LocalState is this node's side of a push/pull exchange: its decisions.
func (d *delegate) LocalState(join bool) []byte {
	n := (*Node)(d)
	n.mu.Lock()
	defer n.mu.Unlock()
	var st state
	for _, dec := range n.decisions {
		st.Decisions = append(st.Decisions, dec)
	}
	b, _ := json.Marshal(st)
	return b
}

// MergeRemoteState takes a peer's side of a push/pull exchange.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	var st state
	if json.Unmarshal(buf, &st) != nil {
		return
	}
	n := (*Node)(d)
	for _, dec := range st.Decisions {
		n.takeDecision(dec)
	}
}

// broadcast is a message for memberlist's gossip queue.
type broadcast []byte

func (b broadcast) Invalidates(memberlist.Broadcast) bool { return false }

func (b broadcast) Message() []byte { return b }

func (b broadcast) Finished() {}
