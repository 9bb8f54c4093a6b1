package raftstate

import (
	"fmt"
	"os"
	"sync"

	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
)

// guardedLog is the Raft log, refusing to append once its directory is no
// longer the one it opened: a state directory removed (or replaced) under
// the running node would otherwise take entries into files that no longer
// have a name, acknowledge them, and lose them at the next start.
type guardedLog struct {
	*raftwal.WAL
	dir    string
	opened os.FileInfo
	// gone is called, once, with the refusal when the directory is found
	// gone.
	gone func(*StateDirError)
	once sync.Once
}

func newGuardedLog(wal *raftwal.WAL, dir string, gone func(*StateDirError)) (*guardedLog, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("raft log: %w", err)
	}
	return &guardedLog{WAL: wal, dir: dir, opened: fi, gone: gone}, nil
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
	return g.WAL.StoreLogs(logs)
}

// StateDirError refuses a change on a node whose state directory was
// removed or replaced while it ran.
type StateDirError struct{ Dir string }

func (e *StateDirError) Error() string {
	return fmt.Sprintf("the state directory's Raft log %s was removed or replaced while the node ran: changes are refused until the node is restarted (it then starts a new log and catches up from the other members)", e.Dir)
}

// Unavailable marks the error for a 503.
func (e *StateDirError) Unavailable() bool { return true }
