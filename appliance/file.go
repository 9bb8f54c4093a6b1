package appliance

import (
	"errors"
	"fmt"
	"hash/maphash"
	"os"
	"runtime/debug"
	"time"

	"github.com/pgplane/pgplane/topology"
)

// errWriting reports a file that changed while it was read: a writer is
// still at work, and the next check will see the finished file.
var errWriting = errors.New("topology file changed while being read")

// settle is how long a changed file must stay unchanged before it is read, so
// that a file rewritten in place is not read half-written.
const settle = 50 * time.Millisecond

// stamp is what a file's metadata says of its content.
type stamp struct {
	mtime time.Time
	size  int64
}

// fileSum identifies a file's text: two 64-bit hashes with independent
// random seeds, so that a rewrite with the same bytes is not loaded again.
// (It was SHA-256: 37 ms of a 15 MB file's reload; this takes about 2.)
type fileSum [2]uint64

// sumOf returns data's fileSum; f.mu is held.
func (f *desiredState) sumOf(data []byte) fileSum {
	if f.seeds == ([2]maphash.Seed{}) {
		f.seeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}
	}
	return fileSum{maphash.Bytes(f.seeds[0], data), maphash.Bytes(f.seeds[1], data)}
}

func stampOf(fi os.FileInfo) stamp { return stamp{fi.ModTime(), fi.Size()} }

func (a stamp) equal(b stamp) bool { return a.mtime.Equal(b.mtime) && a.size == b.size }

// load reads the file and, when it holds a valid change, publishes a new
// snapshot. It returns the file's violations, if any, or errWriting.
func (f *desiredState) load() error { return f.loadExpecting(nil) }

// loadExpecting is load for a file that settled with the given stamp: the
// file must still have it before and after it is read, so that a rewrite
// that began after the settling is never read half-done.
func (f *desiredState) loadExpecting(settledAs *stamp) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	before, err := os.Stat(f.path)
	if err != nil {
		return fmt.Errorf("topology file: %w", err)
	}
	if settledAs != nil && !stampOf(before).equal(*settledAs) {
		return errWriting
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("topology file: %w", err)
	}
	after, err := os.Stat(f.path)
	if err != nil {
		return fmt.Errorf("topology file: %w", err)
	}
	if !stampOf(after).equal(stampOf(before)) || int64(len(data)) != after.Size() {
		return errWriting
	}
	f.mtime, f.size = after.ModTime(), after.Size()
	if len(data) == 0 {
		// An empty file is nearly always one being rewritten in place; an
		// empty topology is written as {}.
		return fmt.Errorf("topology file %s is empty; refusing it (write {} for an empty topology)", f.path)
	}
	sum := f.sumOf(data)
	if f.current != nil && sum == f.sum {
		f.loaded = "the same text"
		return nil
	}
	// The Parser compares a file with the one it read last, which must be
	// the one served for an edit to be what changed since.
	lastServed := f.parsedServed
	f.parsedServed = false
	if lastServed && f.current != nil && f.conflict == nil {
		// An edit of servers alone, or of VNets and zones alone, is
		// served at their cost; anything else, or an edit that breaks a
		// rule, is read whole below.
		if file, e, ok := f.parser.Edit(data); ok {
			served := false
			switch {
			case !e.Network:
				served = f.editedServersLocked(file, e.Servers)
			case e.ServersSame:
				served = f.editedNetworkLocked(file, e.VNets, e.Zones)
			}
			if served {
				f.sum, f.parsedServed = sum, true
				return nil
			}
		}
	}
	file, warnings, err := f.parser.Parse(f.path, data)
	if vs := (topology.Violations{}); errors.As(err, &vs) && file != nil && f.current != nil {
		// The rules that bind a change come first, in the words the admin
		// API uses for the same change (A2): deleting a VNet a server
		// uses is "in use" before it is a dangling reference.
		moved := topology.CheckTransition(f.current.Topology, file)
		for i := range moved {
			moved[i].File = f.path
		}
		return append(moved, vs...)
	}
	if err != nil {
		return err
	}
	for _, w := range warnings {
		f.log.Warn().Msg(w.Error())
	}
	next, conflict := f.overlay(file, f.values(), nil)
	if conflict != nil {
		if f.current != nil {
			return fmt.Errorf("topology file %s with the run-time changes laid over it:\n%w", f.path, conflict)
		}
		// At start-up nothing is served yet. Run-time changes that break a
		// rule with this file (a file edited while the node was down) must
		// not keep the node from starting: it serves the file alone and
		// reports the conflict until a change or the file mends it.
		f.log.Error().Msgf("run-time changes break a rule with topology %s; serving the file alone until a change mends them:\n%v", f.path, conflict)
		next = file
	}
	state := topology.State{}
	if f.current != nil {
		if vs := topology.CheckTransition(f.current.Topology, next); len(vs) > 0 {
			for i := range vs {
				vs[i].File = f.path
			}
			return vs
		}
		state = f.current.State
	}
	if err := f.swapLocked(next, state); err != nil {
		return fmt.Errorf("topology file %s: %w", f.path, err)
	}
	f.sum, f.base, f.parsedServed, f.loaded = sum, file, true, "whole"
	f.baseServers = topology.NewServerIndex(file.Servers)
	if conflict != nil {
		f.setConflictLocked(conflict)
	}
	return nil
}

// setState publishes a new snapshot of the current topology with a new
// run-time state: a cluster decision (C4).
func (f *desiredState) setState(st topology.State) {
	f.mu.Lock()
	defer f.mu.Unlock()
	snap, err := f.current.WithState(st, f.nextSerialLocked())
	if err != nil {
		f.log.Error().Err(err).Msg("cluster state refused")
		return
	}
	changed := snap.ServerNames // a region's flip: every server may have changed
	if snap.Change != nil {
		changed = func() []string { return snap.Change.Servers }
	}
	for _, name := range changed() {
		// Report a blocked flip once, when it happens, not on every later
		// change of state.
		si := snap.Server(name)
		if was := f.current.Server(name); si != nil && si.RecordBlocked && (was == nil || !was.RecordBlocked) {
			f.log.Error().Msgf("FAILOVER BLOCKED: server %s failed over to its standby, but private DNS zone %s is locked ReadOnly: its record still gives the old address %s (D10)", name, si.Zone.Name, si.Address)
			recordBlocked.WithLabelValues(name).Inc()
		}
	}
	f.current = snap
	f.publish(snap)
}

// changed reports whether the file's modification time or size moved.
func (f *desiredState) changed() bool {
	fi, err := os.Stat(f.path)
	if err != nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return !fi.ModTime().Equal(f.mtime) || fi.Size() != f.size
}

// settled returns the file's stamp when it stays unchanged for the settle
// time, or nil.
func (f *desiredState) settled() *stamp {
	a, err := os.Stat(f.path)
	if err != nil {
		return nil
	}
	time.Sleep(settle)
	b, err := os.Stat(f.path)
	if err != nil || !stampOf(a).equal(stampOf(b)) {
		return nil
	}
	st := stampOf(b)
	return &st
}

// releaseMemory returns to the operating system the heap a read of the
// topology file left behind. Decoding a file takes several times the memory
// its topology keeps (100,000 servers: a heap of about 200 MB at the peak,
// 70 MB kept); the runtime gives the rest back over minutes, and RSS stays
// near the peak meanwhile. It costs one collection (about 60 ms of one
// core at 100,000 servers, the world stopped well under a millisecond).
func releaseMemory() { debug.FreeOSMemory() }

// watch polls the file until Stop.
func (f *desiredState) watch() {
	defer close(f.done)
	var reload <-chan time.Time // nil, never ready, with reload 0
	if f.interval > 0 {
		tick := time.NewTicker(f.interval)
		defer tick.Stop()
		reload = tick.C
	}
	for {
		select {
		case <-f.stop:
			return
		case <-reload:
			if !f.changed() {
				continue
			}
			st := f.settled()
			if st == nil {
				continue
			}
			start := time.Now()
			err := f.loadExpecting(st)
			if errors.Is(err, errWriting) {
				continue
			}
			how := f.loadedHow()
			if err != nil || how == "whole" {
				releaseMemory() // a whole read's garbage; an edit at its cost leaves little
			}
			if err != nil {
				f.log.Error().Msgf("topology %s refused, still serving serial %d:\n%v", f.path, f.serial(), err)
				continue
			}
			f.log.Info().Msgf("topology %s loaded (%s): serial %d in %s", f.path, how, f.serial(), time.Since(start).Round(time.Microsecond))
		}
	}
}

// loadedHow says how the last load that served a file went: "whole", or
// the edit it served at its cost.
func (f *desiredState) loadedHow() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.loaded
}

func (f *desiredState) serial() uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.current.Serial
}

// start begins watching; stopWatch ends it and waits.
func (f *desiredState) start() {
	f.stop, f.done = make(chan struct{}), make(chan struct{})
	go f.watch()
}

func (f *desiredState) stopWatch() {
	if f.stop != nil {
		close(f.stop)
		<-f.done
		f.stop = nil
	}
}
