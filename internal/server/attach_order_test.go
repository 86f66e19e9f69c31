package server

import (
	"encoding/binary"
	"testing"
	"time"
)

// A session that ends while its attach is on its way may have its detach
// reach the home first: the home remembers that detach, and the attach
// that follows is not taken. Otherwise the user reads as online at its
// home, and is pushed to on a node without the session, until that node
// dies.
func TestDetachBeforeAttach(t *testing.T) {
	s := startOneNodeCluster(t)
	const user, sid = 77, 1<<32 | 5
	detach := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, user), sid)
	attach := func(sid uint64) {
		req := binary.BigEndian.AppendUint64(nil, user)
		req = binary.BigEndian.AppendUint64(req, sid)
		req = binary.BigEndian.AppendUint64(req, 3) // epoch
		req = binary.BigEndian.AppendUint64(req, uint64(time.Now().UnixMilli()))
		s.serveAttach(append(req, "n2"...), func([]byte) {})
	}
	attached := func() uint64 {
		s.rm.mu.Lock()
		defer s.rm.mu.Unlock()
		if a := s.rm.away[user]; a != nil {
			return a.sid
		}
		return 0
	}

	s.serveDetach(detach, func([]byte) {})
	attach(sid)
	if got := attached(); got != 0 {
		t.Fatalf("an attach after its session's detach was taken (conn %d)", got)
	}
	// The next session of the user attaches as ever, and its own detach
	// removes it.
	attach(sid + 1<<32)
	if got := attached(); got != sid+1<<32 {
		t.Fatalf("the next session's attach: attached %d", got)
	}
	s.serveDetach(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, user), sid+1<<32), func([]byte) {})
	if got := attached(); got != 0 {
		t.Fatalf("after the detach: attached %d", got)
	}
	// An early detach is forgotten after its time.
	s.serveDetach(detach, func([]byte) {})
	s.rm.mu.Lock()
	d := s.rm.earlyDetach[user]
	d.at = d.at.Add(-2 * s.earlyDetachTTL())
	s.rm.earlyDetach[user] = d
	s.rm.mu.Unlock()
	s.sweepEarlyDetaches()
	s.rm.mu.Lock()
	_, kept := s.rm.earlyDetach[user]
	s.rm.mu.Unlock()
	if kept {
		t.Fatal("an early detach outlived its time")
	}
}
