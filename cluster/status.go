package cluster

import (
	"sort"
	"time"

	"github.com/hashicorp/memberlist"
)

// What a node reports of the cluster, for pgplanectl cluster show.

// Status is a node's view of the cluster, for `pgplanectl cluster show`.
type Status struct {
	Node    string              `json:"node"`
	Members []MemberStatus      `json:"members"`
	Quorum  int                 `json:"quorum"`
	Down    map[Target][]string `json:"down"` // target -> the members that see it down now
	// Roles are the backends' roles as each member whose votes count sees
	// them (C6): target -> member -> role.
	Roles     map[Target]map[string]Role `json:"roles,omitempty"`
	Decisions []Decision                 `json:"decisions"`
	// Alarms are conditions an operator must act on, such as a split brain.
	Alarms []Alarm `json:"alarms,omitempty"`
}

// MemberStatus is one configured member as this node sees it.
type MemberStatus struct {
	Name       string `json:"name"`
	Gossip     string `json:"gossip"`      // memberlist's view: alive, suspect, dead, or absent
	VotesFresh bool   `json:"votes_fresh"` // its votes count now
}

// Status returns this node's view of the cluster.
func (n *Node) Status() Status {
	now := time.Now()
	alive := map[string]string{}
	for _, m := range n.ml.Members() {
		alive[m.Name] = map[memberlist.NodeStateType]string{memberlist.StateAlive: "alive", memberlist.StateSuspect: "suspect", memberlist.StateDead: "dead", memberlist.StateLeft: "left"}[m.State]
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	st := Status{Node: n.cfg.Name, Quorum: n.ballot.Quorum(), Down: map[Target][]string{}}
	fresh := map[string]bool{}
	for _, m := range n.ballot.Fresh(now) {
		fresh[m] = true
	}
	for _, m := range n.ballot.Members() {
		g := alive[m]
		if g == "" {
			g = "absent"
		}
		st.Members = append(st.Members, MemberStatus{Name: m, Gossip: g, VotesFresh: fresh[m]})
		if v, ok := n.ballot.votes[m]; ok && fresh[m] {
			for t := range v.down {
				st.Down[t] = append(st.Down[t], m)
			}
		}
	}
	st.Roles = map[Target]map[string]Role{}
	for name, si := range n.hooks.Snapshot().Servers() {
		if !si.Server.HighAvailability {
			continue
		}
		for _, t := range []Target{BackendTarget(name, false), BackendTarget(name, true)} {
			if r := n.ballot.Roles(t, now); len(r) > 0 {
				st.Roles[t] = r
			}
		}
	}
	for _, a := range n.alarms {
		st.Alarms = append(st.Alarms, a)
	}
	sort.Slice(st.Alarms, func(i, j int) bool {
		return st.Alarms[i].object()+st.Alarms[i].Kind < st.Alarms[j].object()+st.Alarms[j].Kind
	})
	for _, d := range n.decisions {
		st.Decisions = append(st.Decisions, d)
	}
	sort.Slice(st.Decisions, func(i, j int) bool { return st.Decisions[i].Key < st.Decisions[j].Key })
	return st
}
