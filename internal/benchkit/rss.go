package benchkit

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// RSSKiB reads a process's resident set size in KiB from /proc.
func RSSKiB(pid int) (int, error) { return statusKiB(pid, "VmRSS:") }

// PeakRSSKiB returns the highest resident set size of a process so far
// (VmHWM), in KiB.
func PeakRSSKiB(pid int) (int, error) { return statusKiB(pid, "VmHWM:") }

// AnonRSSKiB returns the anonymous part of a process's resident set (its
// heap and stacks, without the pages of its binary and libraries), in KiB.
func AnonRSSKiB(pid int) (int, error) { return statusKiB(pid, "RssAnon:") }

// statusKiB reads one KiB field of /proc/PID/status.
func statusKiB(pid int, field string) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}
