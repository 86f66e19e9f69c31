package server

import (
	"testing"

	"github.com/chatd/chatd/internal/conn"
)

// The start-up log reports MaxConns: it must be the capacity enforced,
// the flag's when given, not the open-files limit less 300 regardless.
func TestMaxConnsIsTheEnforcedCapacity(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxConns = 1
	s := startServer(t, cfg)
	if got := s.MaxConns(); got != 1 {
		t.Fatalf("MaxConns() = %d with MaxConns 1", got)
	}
	dial(t, s).Close()
}

func TestMaxConnsDefaultsToFileLimit(t *testing.T) {
	soft, _, err := conn.FileLimit()
	if err != nil || soft <= 400 {
		t.Skipf("open-files limit %d (%v): no derived capacity", soft, err)
	}
	s := startServer(t, testConfig(t))
	if got := s.MaxConns(); got != int(soft-300) {
		t.Fatalf("MaxConns() = %d unset, want the limit %d less 300", got, soft)
	}
	dial(t, s).Close()
}
