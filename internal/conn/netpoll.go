package conn

import (
	"io"
	"os"
	"strconv"

	"github.com/cloudwego/netpoll"
)

// DefaultBufferSize is the size of the input buffer netpoll gives each new
// connection, and the smallest node it allocates. netpoll's defaults (8 KiB
// input, 4 KiB output nodes, both kept for the connection's life) cost
// about 14 KB per idle connection; chat frames are small, so a small first
// node is enough, and a larger frame simply chains more nodes while it is
// being read. BENCHMARKS.md has the measurements behind the choice.
const DefaultBufferSize = 256

// BufferSize is the value in force. The environment variable
// CHATD_NETPOLL_BUFFER overrides it at start-up ("default" keeps netpoll's
// own sizes), so the saving can be measured against netpoll's defaults.
// CHATD_NETPOLL_POLLERS sets netpoll's poller count (its default is one
// per 20 cores, at least one).
var BufferSize = DefaultBufferSize

// netpoll reads its buffer configuration once, so it must be set in init,
// before any connection exists.
func init() {
	switch v := os.Getenv("CHATD_NETPOLL_BUFFER"); v {
	case "":
	case "default":
		BufferSize = 0
	default:
		if n, err := strconv.Atoi(v); err == nil && n >= 64 {
			BufferSize = n
		}
	}
	pollers := 0
	if n, err := strconv.Atoi(os.Getenv("CHATD_NETPOLL_POLLERS")); err == nil && n > 0 {
		pollers = n
	}
	if BufferSize > 0 {
		netpoll.LinkBufferCap = BufferSize
	}
	// ReleaseIdleInput (third_party/netpoll/PATCHES.md 2): an idle
	// connection holds no input buffer between read turns. OnRequest keeps
	// nothing of netpoll's input past its Release (Handler.Frame's body is
	// valid only until Frame returns), so nothing refers to the memory.
	// Inline (third_party/netpoll/PATCHES.md 6): a read turn that cannot
	// wait runs on the poller after its batch of events (inline.go).
	cfg := netpoll.Config{BufferSize: BufferSize, PollerNum: pollers, Runner: runTask, Inline: runInline} // runner.go
	cfg.ReleaseIdleInput = true
	if err := netpoll.Configure(cfg); err != nil {
		panic("conn: configure netpoll: " + err.Error())
	}
}

// SetLogOutput routes netpoll's own log lines (accept failures and the
// like) to w, typically a zap logger's writer.
func SetLogOutput(w io.Writer) { netpoll.SetLoggerOutput(w) }
