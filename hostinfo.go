package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// hostMemory reads the machine's RAM from /proc/meminfo (0 if unknown:
// the sysctl package then assumes 64 GiB).
func hostMemory() uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func commandOutput(name string, args ...string) (io.Reader, error) {
	out, err := exec.Command(name, args...).Output()
	return bytes.NewReader(out), err
}
