package server

import (
	"testing"
	"time"

	"github.com/chatd/chatd/internal/cluster"
)

// TestPendingClaimKeptAgainstOlderClaims: a session whose claim is still
// being retried (a directory outage at its login) is not closed by a kick
// about a claim made before its login. After a leader's death the
// directory watch replays such claims late, and the session the retry was
// about to make the owner was closed instead, leaving the older one open
// (TestClusterDirectoryLeaderKilled, now and then). A claim made after
// the login, or one whose time is not known (an older node), still wins;
// a written claim compares epochs.
func TestPendingClaimKeptAgainstOlderClaims(t *testing.T) {
	login := time.UnixMilli(1_795_000_000_000)
	pending := &claim{since: login}
	for _, c := range []struct {
		since int64
		keep  bool
	}{
		{login.UnixMilli() - 3000, true}, // claimed elsewhere 3 s before this login
		{login.UnixMilli() - 1, true},
		{login.UnixMilli(), false}, // the same millisecond: the other login may be the later one
		{login.UnixMilli() + 5, false},
		{0, false}, // no time: as before
	} {
		if got := pending.outlives(cluster.Kick{User: 1, Epoch: 9, By: "n3", Since: c.since}); got != c.keep {
			t.Errorf("kick for a claim at %d, login at %d: kept %v, want %v", c.since, login.UnixMilli(), got, c.keep)
		}
	}
	written := &claim{epoch: 9}
	if !written.outlives(cluster.Kick{Epoch: 9, Since: login.UnixMilli() + 5}) || written.outlives(cluster.Kick{Epoch: 10}) {
		t.Error("a written claim does not compare epochs")
	}
}
