package bench

import (
	"os"
	"strconv"
	"strings"
)

// Kernel holds what the kernel says about TCP sockets on this host. It
// counts both ends of loopback connections.
type Kernel struct {
	TCPInUse    int   `json:"tcp_inuse"`
	TCPMemPages int   `json:"tcp_mem_pages"` // /proc/net/sockstat "mem": buffer pages in use
	TCPSlabObj  int   `json:"tcp_slab_objsize"`
	TCPSlabAct  int   `json:"tcp_slab_active"`
	SlabBytes   int64 `json:"tcp_slab_bytes"` // active TCP socket objects x their size
}

func readKernel() Kernel {
	var k Kernel
	if b, err := os.ReadFile("/proc/net/sockstat"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(line, "TCP:") {
				continue
			}
			f := strings.Fields(line)
			for i := 1; i+1 < len(f); i += 2 {
				v, _ := strconv.Atoi(f[i+1])
				switch f[i] {
				case "inuse":
					k.TCPInUse = v
				case "mem":
					k.TCPMemPages = v
				}
			}
		}
	}
	// slabinfo is readable by root only; without it the slab fields stay 0.
	if b, err := os.ReadFile("/proc/slabinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) > 4 && f[0] == "TCP" {
				k.TCPSlabAct, _ = strconv.Atoi(f[1])
				k.TCPSlabObj, _ = strconv.Atoi(f[3])
				k.SlabBytes = int64(k.TCPSlabAct) * int64(k.TCPSlabObj)
			}
		}
	}
	return k
}
