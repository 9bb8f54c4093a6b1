package cluster

import (
	"time"

	"github.com/pgplane/pgplane/topology"
	"github.com/rs/zerolog"
)

// A node's settings and the hooks it calls into the appliance.

// Config configures a cluster node.
type Config struct {
	// Name is this node's name; it must be one of Members.
	Name string
	// Members are the names of every configured node, witnesses included.
	// A flip needs ⌊len(Members)/2⌋+1 of them (C3).
	Members []string
	// Bind and Advertise are the gossip addresses, IP:port.
	Bind      string
	Advertise string
	// Join lists other nodes' gossip addresses; the node rejoins them
	// periodically, so that a node cut off and forgotten comes back.
	Join []string
	// Key encrypts gossip (16, 24 or 32 bytes). Required unless Dev.
	Key []byte
	Dev bool
	// NodeID is the gateway node ID written into cancel keys (0 to 127).
	NodeID uint8
	// ProbeInterval, ProbeTimeout and FailAfter: a target is down after
	// FailAfter failed probes in a row (C2).
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	FailAfter     int
	// VoteTTL is how long a node's votes count without being refreshed;
	// zero: DefaultVoteTTL, or longer when rounds are slower (voteTTL).
	VoteTTL time.Duration
	// GatewayPort is the port probed on a gateway address whose port no
	// member has announced.
	GatewayPort int
	// RaftAddress is this node's Raft transport address, announced to the
	// others (C5); empty for none.
	RaftAddress string
	// Holds are this node's gateway listen addresses (IP:port).
	Holds []string
	// StateDir, when set, keeps the failover decisions on disk, so that a
	// failover stays in force through a restart of every node (C4).
	StateDir string
	// Monitor is the role backends' roles are probed with (C6); nil: none,
	// and HA servers without Patroni endpoints fail over on liveness alone.
	Monitor *Monitor
	Logger  zerolog.Logger
}

// Hooks connect a node to the rest of the appliance.
type Hooks struct {
	// Snapshot returns the current topology snapshot.
	Snapshot func() *topology.Snapshot
	// Apply is called with the state every decision so far yields.
	Apply func(topology.State)
	// Cancel delivers a cancel request forwarded by another node.
	Cancel func(pid, secret uint32)
}

// Defaults, chosen so that a dead target is flipped on every node within
// about a second and a half (C4's 3 s bound).
const (
	DefaultProbeInterval = 300 * time.Millisecond
	DefaultProbeTimeout  = 300 * time.Millisecond
	DefaultFailAfter     = 2
	DefaultVoteTTL       = 1500 * time.Millisecond
	rejoinInterval       = 5 * time.Second
)

// voteTTL is DefaultVoteTTL, or the time of two rounds when that is longer:
// a node sends its votes once a round, and a round takes the probe interval
// or, when a target lets its probe wait out the timeout twice (connect,
// then the SSLRequest's answer), twice the timeout. Without it a probe
// interval past the TTL lets every node's votes lapse between rounds, and
// a quorum is there only now and then.
func voteTTL(interval, timeout time.Duration) time.Duration {
	return max(DefaultVoteTTL, 2*max(interval, 2*timeout))
}
