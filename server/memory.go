package server

import (
	"os"
	"strconv"
	"strings"
)

// hostMemory returns the machine's RAM in bytes from /proc/meminfo (0
// where there is none): what the server may use when no cgroup limits it.
// `chatd sysctl` reads the same line for another question (how much
// kernel memory TCP buffers may take), so each keeps its own few lines
// rather than the server depending on the tuning package.
func hostMemory() uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
