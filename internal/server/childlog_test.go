package server

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// childLogger writes a child server's log, at debug level, as zap JSON
// lines to path. The file is synced by the kernel's page cache, not by
// the process: a kill -9 loses nothing already written.
func childLogger(path string) (*zap.Logger, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("child log: %w", err)
	}
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(f), zap.DebugLevel)
	return zap.New(core), nil
}

// nodeLogs is where a test's child servers write their logs: one file
// per node per start (n1-0.log, n1-1.log after its first restart...).
// The folder is removed when the test passes and kept, named in the
// test's output, when it fails; CHATD_KEEP_LOGS=dir keeps it always,
// under dir.
type nodeLogs struct {
	dir string

	mu     sync.Mutex
	starts map[string]int
}

func newNodeLogs(t *testing.T) *nodeLogs {
	t.Helper()
	keep := os.Getenv("CHATD_KEEP_LOGS")
	parent := keep
	if parent == "" {
		parent = os.TempDir()
	} else if err := os.MkdirAll(parent, 0o755); err != nil {
		t.Fatalf("CHATD_KEEP_LOGS: %v", err)
	}
	dir, err := os.MkdirTemp(parent, "chatd-"+filepath.Base(t.Name())+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		switch {
		case t.Failed() || keep != "":
			t.Logf("node logs kept in %s", dir)
		default:
			os.RemoveAll(dir)
		}
	})
	return &nodeLogs{dir: dir, starts: map[string]int{}}
}

// next names the log file of node's next start.
func (l *nodeLogs) next(node string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.starts[node]
	l.starts[node]++
	return filepath.Join(l.dir, fmt.Sprintf("%s-%d.log", node, n))
}
