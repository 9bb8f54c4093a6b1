package cluster

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// DecodeKey reads a gossip key file: the key in base64 (as `pgplanectl
// cluster-key` writes it), 16, 24 or 32 bytes once decoded.
func DecodeKey(text []byte) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(text)))
	if err != nil {
		return nil, fmt.Errorf("the key is not base64: %w", err)
	}
	if n := len(key); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("the key is %d bytes; want 16, 24 or 32", n)
	}
	return key, nil
}
