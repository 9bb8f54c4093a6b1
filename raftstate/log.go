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

// zerologWriter turns hclog's text lines ("TIME [LEVEL]  raft: message")
// into zerolog lines at the same level, without hclog's time.
type zerologWriter struct{ log zerolog.Logger }

func (w zerologWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimSpace(p), []byte("\n")) {
		text := string(line)
		ev := w.log.Warn()
		if _, rest, ok := strings.Cut(text, "["); ok {
			if level, msg, ok := strings.Cut(rest, "]"); ok {
				text = strings.TrimSpace(msg)
				if level == "ERROR" {
					ev = w.log.Error()
				}
			}
		}
		ev.Msg(text)
	}
	return len(p), nil
}
