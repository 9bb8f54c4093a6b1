package raftstate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// previousFile is the state file of the last-writer-wins store that Raft
// replaced: a node that finds it imports its changes once.
const previousFile = "state.json"

// previousState is the part of that file the import reads.
type previousState struct {
	Entries []struct {
		Key   string          `json:"key"`
		Value json.RawMessage `json:"value,omitempty"`
	} `json:"entries"`
}

// importPrevious proposes the changes of a previous-format state file, in
// the background until a leader commits them: keys the Raft state already
// holds are left as they are, so that every member may import its own file.
// The file is then renamed state.json.imported.
func (s *Store) importPrevious() {
	path := filepath.Join(s.cfg.Dir, previousFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var prev previousState
	if err == nil {
		err = json.Unmarshal(b, &prev)
	}
	if err != nil {
		s.report(fmt.Errorf("previous state %s not imported: %w", path, err))
		return
	}
	changes := make(map[string]json.RawMessage, len(prev.Entries))
	for _, e := range prev.Entries {
		if e.Key != "" {
			changes[e.Key] = e.Value
		}
	}
	deletionsAsNil(changes)
	if len(changes) == 0 {
		if err := os.Rename(path, path+".imported"); err != nil {
			s.report(fmt.Errorf("previous state %s (empty): %w", path, err))
		}
		return
	}
	go func() {
		for {
			err := s.write(forwardRequest{Origin: s.cfg.Node, Changes: changes, Import: true})
			if err == nil {
				break
			}
			var nq *NoQuorumError
			if !errors.As(err, &nq) {
				s.report(fmt.Errorf("previous state %s not imported, fix it or remove it: %w", path, err))
				return
			}
			select {
			case <-s.stopped:
				return
			case <-time.After(time.Second):
			}
		}
		if err := os.Rename(path, path+".imported"); err != nil {
			s.report(fmt.Errorf("previous state imported, but: %w", err))
		}
		s.log.Info().Msgf("state: imported %d run-time changes from %s (the format before Raft); the file is kept as %s.imported", len(changes), path, previousFile)
	}()
}
