package benchkit

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// RaftLeader asks a node's admin API (GET /v1/health) which member leads
// the Raft cluster of run-time changes, until one does or timeout passes,
// and returns its number: 1 for "n1". Members must be named n1, n2, ….
func RaftLeader(endpoint string, timeout time.Duration) (int, error) {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := client.Get(endpoint + "/v1/health")
		if err == nil {
			var h struct {
				State struct{ Leader string } `json:"state"`
			}
			json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			var n int
			if _, err := fmt.Sscanf(h.State.Leader, "n%d", &n); err == nil && n >= 1 {
				return n, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, fmt.Errorf("no Raft leader known to %s after %s", endpoint, timeout)
}
