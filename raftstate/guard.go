package raftstate

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb"
	"golang.org/x/sys/unix"
)

// guardedLog is the Raft log, refusing to append once its directory is no
// longer the one it opened: a state directory removed (or replaced) under
// the running node would otherwise take entries into a file that no longer
// has a name, acknowledge them, and lose them at the next start.
type guardedLog struct {
	*raftboltdb.BoltStore
	dir    string
	opened os.FileInfo
	// gone is called, once, with the refusal when the directory is found
	// gone.
	gone func(*StateDirError)
	once sync.Once
}

func newGuardedLog(db *raftboltdb.BoltStore, dir string, gone func(*StateDirError)) (*guardedLog, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("raft log: %w", err)
	}
	return &guardedLog{BoltStore: db, dir: dir, opened: fi, gone: gone}, nil
}

// StoreLog appends one entry, if the directory is still there.
func (g *guardedLog) StoreLog(l *raft.Log) error {
	return g.StoreLogs([]*raft.Log{l})
}

// StoreLogs appends entries, if the directory is still there.
func (g *guardedLog) StoreLogs(logs []*raft.Log) error {
	if fi, err := os.Stat(g.dir); err != nil || !os.SameFile(fi, g.opened) {
		refusal := &StateDirError{Dir: g.dir}
		g.once.Do(func() { g.gone(refusal) })
		return refusal
	}
	return g.BoltStore.StoreLogs(logs)
}

// StateDirError refuses a change on a node whose state directory was
// removed or replaced while it ran.
type StateDirError struct{ Dir string }

func (e *StateDirError) Error() string {
	return fmt.Sprintf("the state directory's Raft log %s was removed or replaced while the node ran: changes are refused until the node is restarted (it then starts a new log and catches up from the other members)", e.Dir)
}

// Unavailable marks the error for a 503.
func (e *StateDirError) Unavailable() bool { return true }

// minFree is the free space a change must leave on the state directory's
// disk: Raft itself writes small records (its term, its vote) that it
// cannot do without, and a full disk would stop it.
const minFree = 4 << 20

// roomFor refuses a change of size bytes when the state directory's disk
// would keep less than minFree: the change is refused before Raft sees it,
// so nothing is acknowledged that could not be written.
func (s *Store) roomFor(size int) error {
	var st unix.Statfs_t
	dir := filepath.Join(s.cfg.Dir, "raft")
	if err := unix.Statfs(dir, &st); err != nil {
		return nil // the append itself will say what is wrong
	}
	free := st.Bavail * uint64(st.Bsize)
	if free < minFree+uint64(size) {
		return &DiskFullError{Dir: dir, Free: free}
	}
	return nil
}

// DiskFullError refuses a change on a node whose state directory's disk is
// (nearly) full.
type DiskFullError struct {
	Dir  string
	Free uint64
}

func (e *DiskFullError) Error() string {
	return fmt.Sprintf("the state directory %s has %d KiB free, under the %d MiB a change must leave for Raft's own records: changes are refused until space is freed (nothing was written)", e.Dir, e.Free>>10, minFree>>20)
}

// Unavailable marks the error for a 503.
func (e *DiskFullError) Unavailable() bool { return true }
