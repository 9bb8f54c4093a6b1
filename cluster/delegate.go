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
	msgEntries  = 'e'
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

type nodeMeta struct {
	NodeID uint8 `json:"node_id"`
}

// state is what push/pull anti-entropy exchanges: every decision and the
// replicated state.
type state struct {
	Decisions []Decision      `json:"decisions"`
	Store     json.RawMessage `json:"store,omitempty"`
}

func encode(kind byte, v any) []byte {
	b, _ := json.Marshal(v)
	return append([]byte{kind}, b...)
}

// delegate is the memberlist.Delegate of a Node.
type delegate Node

// NodeMeta announces the node's gateway node ID, for forwarded cancels.
func (d *delegate) NodeMeta(limit int) []byte {
	b, _ := json.Marshal(nodeMeta{NodeID: d.cfg.NodeID})
	return b
}

// NotifyMsg takes a message from a peer: votes, a decision, a cancel or run-time changes.
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
	case msgEntries:
		var entries []Entry
		if json.Unmarshal(b[1:], &entries) == nil && n.hooks.Store != nil {
			n.enqueue(func() {
				changed, err := n.hooks.Store.Merge(entries)
				n.storeChanged(changed, err, entryKeys(entries))
			})
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

// storeChanged reports a merge's outcome to the appliance: the keys merged,
// or nil when anything may have changed.
func (n *Node) storeChanged(changed bool, err error, keys []string) {
	if err != nil {
		n.cfg.Logger.Error().Err(err).Msg("cluster: replicated state not written to disk")
	}
	if changed && n.hooks.Changed != nil {
		n.hooks.Changed(keys)
	}
}

func entryKeys(entries []Entry) []string {
	keys := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.Key != "" {
			keys = append(keys, e.Key)
		}
	}
	return keys
}

// Spread sends entries committed on this node to every member at once and
// queues them for gossip, which reaches members that missed the direct send;
// push/pull anti-entropy catches up the rest (C5).
func (n *Node) Spread(entries []Entry) {
	if len(entries) == 0 {
		return
	}
	n.spread(encode(msgEntries, entries))
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

// LocalState is this node's side of a push/pull exchange: decisions and the replicated state.
func (d *delegate) LocalState(join bool) []byte {
	n := (*Node)(d)
	n.mu.Lock()
	defer n.mu.Unlock()
	var st state
	for _, dec := range n.decisions {
		st.Decisions = append(st.Decisions, dec)
	}
	if n.hooks.Store != nil {
		st.Store = n.hooks.Store.Full()
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
	if n.hooks.Store != nil && len(st.Store) > 0 {
		changed, err := n.hooks.Store.MergeFull(st.Store)
		n.storeChanged(changed, err, nil)
	}
}

// broadcast is a message for memberlist's gossip queue.
type broadcast []byte

func (b broadcast) Invalidates(memberlist.Broadcast) bool { return false }

func (b broadcast) Message() []byte { return b }

func (b broadcast) Finished() {}
