package appliance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pgplane/pgplane/raftstate"
	"github.com/pgplane/pgplane/topology"
	"github.com/rs/zerolog"
)

// desiredState keeps the desired state, the topology file with the admin
// API's run-time changes laid over it, and the snapshot made of it. It
// re-reads the file when its modification time, size or content changes; a
// file that breaks a rule is refused and the previous snapshot keeps serving.
type desiredState struct {
	path     string
	interval time.Duration
	publish  func(*topology.Snapshot)
	parser   topology.Parser  // re-decodes only the parts of the file that changed
	store    *raftstate.Store // the run-time changes (C5)
	log      zerolog.Logger

	mu   sync.Mutex         // serialises reloads and changes
	base *topology.Topology // the file's topology, without run-time changes
	// baseServers finds base's servers by name, with their positions.
	baseServers topology.ServerIndex
	checker     topology.Checker // checks changes of servers alone
	// conflict says why the committed run-time changes are not served (they
	// break a rule with this node's topology file), or is nil.
	conflict error
	// checked is the change this node, as leader, checked last and has not
	// seen applied yet, or nil.
	checked *checkedChange
	current *topology.Snapshot
	sum     fileSum
	// parsedServed is true when the parser's last read of the file is the
	// topology served (not a file refused, or one read while a conflict stood).
	parsedServed bool
	// loaded says how the last load that served a file went (loadedHow).
	loaded string
	seeds  [2]maphash.Seed // fileSum's, made with the first
	mtime  time.Time
	size   int64

	stop chan struct{}
	done chan struct{}
}

// overlay lays the run-time changes over the file's topology and validates
// the result (validateLocked: keys are the change's, nil for a file read).
// Without changes the file's topology, already valid, is the result.
func (f *desiredState) overlay(file *topology.Topology, values map[string]json.RawMessage, keys []string) (*topology.Topology, error) {
	if len(values) == 0 {
		return file, nil
	}
	next, problems := f.layLocked(file, values, keys)
	for _, p := range problems {
		f.log.Error().Msgf("%v; skipped", p)
	}
	if vs := f.validateLocked(next, keys); len(vs) > 0 {
		return nil, vs
	}
	return next, nil
}

// layLocked lays values over file. For a change of VNets or zones alone
// (keys) the result keeps the server list served: such a change changes no
// server, and the overlay's list holds the same servers in new copies.
// Sharing the list lets the snapshot keep its servers' views
// (Snapshot.WithNetwork) and CheckTransition skip them.
func (f *desiredState) layLocked(file *topology.Topology, values map[string]json.RawMessage, keys []string) (*topology.Topology, []topology.OverlayProblem) {
	next, problems := topology.Overlay(file, values)
	if _, _, ok := topology.NetworkChanges(keys); ok && f.conflict == nil {
		shared := *next
		shared.Servers = f.current.Topology.Servers
		next = &shared
	}
	return next, problems
}

// values returns a copy of the run-time changes; none without a store.
// It costs the whole state: the servers' path reads one server's values
// (serverValues) instead.
func (f *desiredState) values() map[string]json.RawMessage {
	if f.store == nil {
		return nil
	}
	return f.store.Values()
}

// serverValues returns a function that gives one server's run-time values
// (its key's and those below it) from the store, with changes laid over
// them: at the cost of that server's values, not the whole state's.
func (f *desiredState) serverValues(changes map[string]json.RawMessage) func(string) map[string]json.RawMessage {
	changed := topology.ServerValues(changes)
	return func(name string) map[string]json.RawMessage {
		if f.store == nil {
			return changed(name)
		}
		mine := f.store.Under(topology.ServerKey(name))
		maps.Copy(mine, changed(name))
		return mine
	}
}

// storeValue returns the run-time value at key (nil: none, or a deletion).
func (f *desiredState) storeValue(key string) json.RawMessage {
	if f.store == nil {
		return nil
	}
	v, _ := f.store.Value(key)
	return v
}

// swapLocked publishes a snapshot of next with the given run-time state.
func (f *desiredState) swapLocked(next *topology.Topology, state topology.State) error {
	snap, err := topology.NewSnapshot(next, state, f.nextSerialLocked())
	if err != nil {
		return err
	}
	f.serveLocked(snap)
	return nil
}

// serveLocked serves snap, the file with every run-time change laid over
// it: no conflict stands.
func (f *desiredState) serveLocked(snap *topology.Snapshot) {
	f.current = snap
	f.publish(snap)
	f.setConflictLocked(nil)
}

// nextSerialLocked is the serial of the next snapshot: the time in seconds,
// or one more than the last when that is not later.
func (f *desiredState) nextSerialLocked() uint32 {
	serial := uint32(time.Now().Unix())
	if f.current != nil && serial <= f.current.Serial {
		serial = f.current.Serial + 1
	}
	return serial
}

// setConflictLocked records why the run-time changes are not served (nil:
// they are), for pgplanectl health and coredns_pgplane_state_conflict.
func (f *desiredState) setConflictLocked(err error) {
	f.conflict = err
	if err != nil {
		stateConflict.Set(1)
	} else {
		stateConflict.Set(0)
	}
}

// check checks a run-time change against every rule (A2) with the state
// served: the leader's check of a write before it is committed. It returns
// the rules the change breaks (topology.Violations), or the entry of it that
// cannot be applied (topology.OverlayProblem); it changes nothing.
func (f *desiredState) check(changes map[string]json.RawMessage) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d, problems, vs, ok := f.layServersLocked(changes, f.serverValues(changes)); ok {
		err := f.attributedLocked(refusal(changes, problems, vs), d.Topology, changes)
		if err == nil {
			f.checked = &checkedChange{from: f.current, changes: changes, delta: d}
		}
		return err
	}
	values := f.values()
	maps.Copy(values, changes)
	keys := slices.Collect(maps.Keys(changes))
	next, problems := f.layLocked(f.base, values, keys)
	state := f.validateLocked(next, keys)
	// The rules that bind a change come first: they say why a change that
	// also breaks a state rule (a subnet's new CIDR leaving its server
	// outside) is refused.
	err := f.attributedLocked(refusal(changes, problems, append(topology.CheckTransition(f.current.Topology, next), state...)), next, changes)
	if err == nil {
		f.checked = &checkedChange{from: f.current, changes: changes, whole: next}
	}
	return err
}

// swapChangedLocked publishes the snapshot of next, the topology served
// with the change of keys laid over it: for a change of VNets or zones
// alone indexed at the cost of those (Snapshot.WithNetwork, which makes
// the whole snapshot when next does not share the served server list),
// else whole.
func (f *desiredState) swapChangedLocked(next *topology.Topology, keys []string) error {
	if _, _, ok := topology.NetworkChanges(keys); !ok {
		return f.swapLocked(next, f.current.State)
	}
	snap, err := f.current.WithNetwork(next, f.nextSerialLocked())
	if err != nil {
		return err
	}
	f.serveLocked(snap)
	return nil
}

// validateLocked returns the violations of next, the topology served with
// the change of keys laid over it: for a change of VNets or zones alone, at
// the cost of their servers (topology.ValidateNetwork: the topology served
// broke nothing), else of the whole topology.
func (f *desiredState) validateLocked(next *topology.Topology, keys []string) topology.Violations {
	if vnets, zones, ok := topology.NetworkChanges(keys); ok && f.conflict == nil {
		return topology.ValidateNetwork(next, vnets, zones)
	}
	vs, _ := topology.Validate(next)
	return vs
}

// attributedLocked validates a refused change's topology again with the
// servers the change touches checked last, so that a rule two servers break
// together (T11: a subnet's last addresses; an address both claim) is
// reported against the server this change makes, not against one an
// earlier change made that happens to come later in the file's order. A
// refusal that already names only servers the change touches is returned
// as it is: validating the whole topology again costs what a full rebuild
// does.
func (f *desiredState) attributedLocked(err error, next *topology.Topology, changes map[string]json.RawMessage) error {
	var vs topology.Violations
	if !errors.As(err, &vs) {
		return err
	}
	touched := topology.ServersTouched(changes)
	if len(touched) == 0 || namesOnly(vs, touched) {
		return err
	}
	reordered := *next
	servers := make([]*topology.Server, 0, next.Servers.Len())
	var last []*topology.Server
	for _, s := range next.Servers.All() {
		if touched[s.Name] {
			last = append(last, s)
		} else {
			servers = append(servers, s)
		}
	}
	reordered.Servers = topology.NewServerList(append(servers, last...)...)
	again, _ := topology.Validate(&reordered)
	if len(again) == 0 {
		return err
	}
	return append(topology.CheckTransition(f.current.Topology, next), again...)
}

// namesOnly reports whether every violation is about one of the servers.
func namesOnly(vs topology.Violations, servers map[string]bool) bool {
	for _, v := range vs {
		name, ok := strings.CutPrefix(v.Object, "server ")
		if !ok {
			return false
		}
		if unq, err := strconv.Unquote(name); err != nil || !servers[unq] {
			return false
		}
	}
	return true
}

// defined reports whether the topology file defines the object at an
// overlay key: a deletion of it must stay in the state.
func (f *desiredState) defined(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return topology.Defines(f.base, f.fileServer, key)
}

// refusal says why a change is refused, or returns nil: an entry of the
// change that cannot be applied, else the rules it breaks.
func refusal(changes map[string]json.RawMessage, problems []topology.OverlayProblem, vs topology.Violations) error {
	for _, p := range problems {
		if _, ours := changes[p.Key]; ours {
			return p
		}
	}
	if len(vs) > 0 {
		return vs
	}
	return nil
}

// layServersLocked lays a change of servers alone over the topology served,
// at the cost of what it touches: the delta, the entries that could not be
// applied, and the rules it breaks (those that bind a change first). ok is
// false when the change is not one of servers alone, a conflict stands, or
// the servers cannot be placed without the whole overlay.
func (f *desiredState) layServersLocked(changed map[string]json.RawMessage, valuesOf func(string) map[string]json.RawMessage) (d *topology.ServerDelta, problems []topology.OverlayProblem, vs topology.Violations, ok bool) {
	names, ok := topology.ServerChanges(changed)
	if !ok || len(names) == 0 || f.conflict != nil {
		return nil, nil, nil, false
	}
	d, problems, vs, _, ok = f.layServerNamesLocked(names, valuesOf)
	return d, problems, vs, ok
}

// layServerNamesLocked lays the named servers over the topology served
// again, from the file and their run-time values, and checks them: the
// delta, the entries that could not be applied, the rules broken and the
// warnings.
func (f *desiredState) layServerNamesLocked(names []string, valuesOf func(string) map[string]json.RawMessage) (d *topology.ServerDelta, problems []topology.OverlayProblem, vs, warnings topology.Violations, ok bool) {
	d, problems, ok = topology.OverlayServers(f.base, f.current.Topology, f.fileServer, f.current.FindServer, f.filePos, valuesOf, names)
	if !ok {
		return nil, nil, nil, nil, false
	}
	d.From = f.current
	violations, warnings := f.checker.ValidateServersWarning(d)
	return d, problems, append(f.current.CheckServers(d), violations...), warnings, true
}

// editedNetworkLocked serves an edit of the topology file that changed its
// VNets and private DNS zones alone (vnets and zones: those decoded anew)
// as a run-time change of them is served: the run-time changes laid over
// the file, the network rules checked on every VNet and zone and the
// servers' rules on the servers those hold (ValidateNetwork), the views
// and zones indexed again and only the servers of changed ones
// (WithNetwork). It reports false, and leaves everything as it was, when
// the edit is not that or breaks a rule.
func (f *desiredState) editedNetworkLocked(file *topology.Topology, vnets, zones []string) bool {
	// The servers must be the very ones served (the Parser's last read is
	// the file served): the served server list is kept.
	olds, news := f.base.Servers.Slice(), file.Servers.Slice()
	if !slices.Equal(olds, news) {
		return false
	}
	var keys []string
	for _, v := range vnets {
		keys = append(keys, topology.VNetKey(v))
	}
	for _, z := range zones {
		keys = append(keys, topology.ZoneKey(z))
	}
	now := make(map[string]bool, len(file.VNets)+len(file.PrivateDNSZones))
	for _, v := range file.VNets {
		now[topology.VNetKey(v.Name)] = true
	}
	for _, z := range file.PrivateDNSZones {
		now[topology.ZoneKey(z.Name)] = true
	}
	for _, v := range f.base.VNets {
		if k := topology.VNetKey(v.Name); !now[k] {
			keys = append(keys, k) // removed
		}
	}
	for _, z := range f.base.PrivateDNSZones {
		if k := topology.ZoneKey(z.Name); !now[k] {
			keys = append(keys, k)
		}
	}
	vnetSet, zoneSet, ok := topology.NetworkChanges(keys)
	if !ok {
		return false
	}
	// From here as a run-time change of these VNets and zones: laid over
	// keeping the served servers, checked, served with WithNetwork.
	file.Servers = f.base.Servers // the same servers: the file's index stays valid
	next, problems := f.layLocked(file, f.values(), keys)
	if len(problems) > 0 {
		return false
	}
	if vs := append(topology.CheckTransition(f.current.Topology, next), f.validateLocked(next, keys)...); len(vs) > 0 {
		return false
	}
	if f.swapChangedLocked(next, keys) != nil {
		return false
	}
	f.base = file
	f.loaded = fmt.Sprintf("VNets changed: %d, zones: %d, checked and indexed with their servers", len(vnetSet), len(zoneSet))
	return true
}

// editedServersLocked serves an edit of the topology file that changed its
// servers alone (fresh: those decoded anew, in the file's order) at the
// cost of those servers, as a run-time change of servers is served: laid
// over with their run-time values, checked against the rest, indexed
// alone. It reports false, and leaves everything as it was, when the edit
// is not that or breaks a rule: the whole load then reads the file and
// says what is wrong, with its lines.
func (f *desiredState) editedServersLocked(file *topology.Topology, fresh []*topology.Server) bool {
	index := topology.NewServerIndex(file.Servers)
	isNew := make(map[string]bool, len(fresh))    // in the file, not in the last one served
	isEdited := make(map[string]bool, len(fresh)) // in both, decoded anew
	var edited, added []string
	for _, s := range fresh {
		if got, _ := index.Find(s.Name); got != s {
			return false // a name the file holds twice
		}
		if was, _ := f.baseServers.Find(s.Name); was != nil {
			isEdited[s.Name] = true
			edited = append(edited, s.Name)
			continue
		}
		if isNew[s.Name] || f.current.FindServer(s.Name) != nil {
			return false // held twice; or made at run time, now in the file too: it moves among the file's
		}
		isNew[s.Name] = true
		added = append(added, s.Name)
	}
	// Every server of the file served last is, in the new one, gone, or at
	// the same place among the others and either decoded anew or the very
	// same server (the Parser's last read may be a refused file, whose
	// servers were never served); those gone come first (OverlayServers).
	var removed []string
	olds, news := f.base.Servers.Slice(), file.Servers.Slice()
	j := 0
	skipNew := func() {
		for j < len(news) && isNew[news[j].Name] {
			j++
		}
	}
	for _, s := range olds {
		skipNew()
		if j < len(news) && news[j] == s {
			j++ // the same server, at its place (most of them: no lookup)
			continue
		}
		if got, _ := index.Find(s.Name); got == nil {
			removed = append(removed, s.Name)
			continue
		}
		if j == len(news) || news[j].Name != s.Name {
			return false // moved
		}
		if !isEdited[s.Name] {
			return false // decoded from a refused file
		}
		j++
	}
	skipNew()
	names := slices.Concat(removed, edited, added)
	if j != len(news) || len(names) > 64 && len(names) > len(news)/16 {
		return false // a server moved, or so many changed that the whole load costs less
	}
	// The other sections are the same text as the served file's: keep one
	// copy of them, not two.
	file.DatacenterRanges, file.Regions, file.VNets, file.PrivateDNSZones = f.base.DatacenterRanges, f.base.Regions, f.base.VNets, f.base.PrivateDNSZones
	base, baseServers := f.base, f.baseServers
	f.base, f.baseServers = file, index
	if len(names) == 0 {
		f.loaded = "the same servers" // a comment, a blank line
		return true
	}
	d, problems, vs, warnings, ok := f.layServerNamesLocked(names, f.serverValues(nil))
	if ok && len(problems) == 0 && len(vs) == 0 && f.swapServersLocked(d) == nil {
		for _, w := range warnings {
			f.log.Warn().Msg(w.Error())
		}
		f.loaded = fmt.Sprintf("servers changed: %d, checked and indexed alone", len(names))
		return true
	}
	f.base, f.baseServers = base, baseServers
	return false
}

// swapServersLocked publishes the snapshot of a change of servers alone,
// indexing only those.
func (f *desiredState) swapServersLocked(d *topology.ServerDelta) error {
	snap, err := f.current.WithServers(d, f.nextSerialLocked())
	if err != nil {
		return fmt.Errorf("change written but not served: %w", err)
	}
	f.current = snap
	f.publish(snap)
	return nil
}

// fileServer returns the file's server of that name, or nil.
func (f *desiredState) fileServer(name string) *topology.Server {
	srv, _ := f.baseServers.Find(name)
	return srv
}

// filePos returns the position of the file's server of that name among the
// file's servers, or -1.
func (f *desiredState) filePos(name string) int {
	_, pos := f.baseServers.Find(name)
	return pos
}

// applied serves the state after committed changes were applied: keys are
// the keys they touched, or nil when anything may have changed (a
// snapshot). Every change was checked by the leader against the state
// before it; should this node's topology file differ from the leader's so
// that the changes break a rule here, this node keeps serving what it had,
// says why, and takes the changes once a later one or its file mends them.
func (f *desiredState) applied(keys []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	checked := f.checked
	f.checked = nil
	if checked.matches(f.current, keys, f.storeValue) {
		// This node's leader checked this very change against the state
		// it applies to: what it checked (a delta, or the whole topology
		// with every run-time change laid over the file) is served as it
		// was checked, without laying and validating it again.
		if checked.delta != nil {
			if err := f.swapServersLocked(checked.delta); err == nil {
				return
			}
		} else if err := f.swapChangedLocked(checked.whole, keys); err == nil {
			return
		}
	}
	changes := make(map[string]json.RawMessage, len(keys))
	for _, k := range keys {
		changes[k] = nil
	}
	if d, _, vs, ok := f.layServersLocked(changes, f.serverValues(nil)); ok && len(vs) == 0 {
		if err := f.swapServersLocked(d); err == nil {
			return
		}
	}
	// Anything else, a combination refused with this node's state
	// included: the whole overlay serves it, or says why and records the
	// conflict.
	next, err := f.overlay(f.base, f.values(), keys)
	if err == nil {
		err = f.swapChangedLocked(next, keys)
	}
	if err != nil {
		f.setConflictLocked(err)
		f.log.Error().Msgf("committed run-time changes break a rule with this node's topology file, still serving serial %d:\n%v", f.current.Serial, err)
	}
}

// checkedChange is a change the leader checked: the snapshot it was
// checked against and what it makes, served as it is when the committed
// entry is that change applied to that snapshot.
type checkedChange struct {
	from    *topology.Snapshot
	changes map[string]json.RawMessage
	delta   *topology.ServerDelta // a change of servers alone
	whole   *topology.Topology    // any other: the file with every run-time change laid over it, validated
}

// matches reports whether applying keys, which now hold the values value
// returns, to the snapshot current is the change checked. A key whose
// deletion was forgotten rather than kept is absent: the same for the
// overlay.
func (c *checkedChange) matches(current *topology.Snapshot, keys []string, value func(string) json.RawMessage) bool {
	if c == nil || c.from != current || len(keys) != len(c.changes) {
		return false
	}
	for _, k := range keys {
		want, ok := c.changes[k]
		if !ok || !bytes.Equal(value(k), want) {
			return false
		}
	}
	return true
}

// conflictErr returns why the replicated changes are not served, or nil.
func (f *desiredState) conflictErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conflict
}
