package raftstate

import (
	"bytes"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/rs/zerolog"
)

// newHCLogger gives hashicorp/raft a logger that writes its warnings and
// errors as the appliance's zerolog lines.
func newHCLogger(log zerolog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   "raft",
		Level:  hclog.Warn,
		Output: zerologWriter{log},
	})
}

// zerologWriter turns hclog's text lines into zerolog lines.
type zerologWriter struct{ log zerolog.Logger }

func (w zerologWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimSpace(p), []byte("\n")) {
		text := string(line)
		ev := w.log.Warn()
		if strings.Contains(text, "[ERROR]") {
			ev = w.log.Error()
		}
		ev.Msg(text)
	}
	return len(p), nil
}
