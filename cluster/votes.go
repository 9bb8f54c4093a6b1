package cluster

import "time"

// Votes: each node gossips what it saw; a quorum of them decides.

// sendVotes records this node's vote set and sends it to every member.
func (n *Node) sendVotes() {
	n.mu.Lock()
	n.seq++
	v := VoteSet{Node: n.cfg.Name, Seq: n.seq, Holds: n.cfg.Holds}
	for t := range n.down {
		v.Down = append(v.Down, t)
	}
	for t, r := range n.roles {
		switch {
		case n.down[t] || n.failures[t] > 0:
			// Not up now: a role learned before does not count.
		case r == RolePrimary:
			v.Primary = append(v.Primary, t)
		case r == RoleStandby:
			v.Standby = append(v.Standby, t)
		}
	}
	n.ballot.Record(v, time.Now())
	n.mu.Unlock()
	n.sendAll(encode(msgVotes, v))
}

// packetLimit is the largest message sent in a UDP packet or queued for
// gossip; a larger one goes over TCP, directly and by push/pull.
const packetLimit = 1000

// sendAll sends a message to every other live member directly (UDP, or TCP
// when it is too large for a packet).
func (n *Node) sendAll(msg []byte) {
	for _, m := range n.ml.Members() {
		if m.Name == n.cfg.Name {
			continue
		}
		if len(msg) < packetLimit {
			n.ml.SendBestEffort(m, msg)
		} else {
			n.ml.SendReliable(m, msg)
		}
	}
}
