package store

import (
	"bytes"
	"errors"
	"github.com/chatd/chatd/internal/store/storetest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/sys/unix"
)

// fill allocates a file that leaves about leave bytes free on dir's volume.
func fill(t *testing.T, dir string, leave int64) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	free, _, err := statfs(dir)
	if err != nil {
		t.Fatal(err)
	}
	for n := free - leave; n > 0; n -= 4096 {
		if err = unix.Fallocate(int(f.Fd()), 0, 0, n); !errors.Is(err, unix.ENOSPC) {
			break
		}
	}
	if err != nil {
		t.Fatalf("fallocate: %v", err)
	}
	return path
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// openWatched opens a small database in dir that sp watches; both close
// when the test ends, sp first.
func openWatched(t *testing.T, dir string, sp *Space) *pebble.DB {
	t.Helper()
	db, err := Open(dir, Options{CacheSize: 1 << 20, MemTableSize: 1 << 20, Space: sp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	sp.Watch(db)
	t.Cleanup(func() { sp.Close() })
	return db
}

func ballastSize(dir string) int64 {
	fi, err := os.Stat(filepath.Join(dir, BallastName))
	if err != nil {
		return -1
	}
	return fi.Size()
}

// TestSpaceFullAndBack: free space falling under the mark turns Full on
// and deletes the ballast; rising past the resume mark turns it off and
// allocates the ballast again.
func TestSpaceFullAndBack(t *testing.T) {
	vol := storetest.MountTmpfs(t, 16<<20)
	dir := filepath.Join(vol, "data")
	sp, err := OpenSpace(dir, SpaceOptions{Reserve: 4 << 20, Ballast: 2 << 20, MemTableSize: 1 << 20, Interval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if n := ballastSize(dir); n != 2<<20 {
		t.Fatalf("ballast %d bytes at start, want 2 MiB", n)
	}
	openWatched(t, dir, sp)
	waitFor(t, "a first reading", func() bool { return sp.Stats().Free > 0 })
	if sp.Full() {
		t.Fatalf("full on an empty volume: %+v", sp.Stats())
	}

	filler := fill(t, vol, sp.Stats().Low-(256<<10))
	waitFor(t, "the full state", sp.Full)
	if n := ballastSize(dir); n != -1 {
		t.Fatalf("ballast still there (%d bytes) while full", n)
	}
	waitFor(t, "a reading after the release", func() bool { return sp.Stats().Free >= sp.Stats().Low })
	st := sp.Stats()
	if st.Ballast != 0 || st.Free < st.Low || st.Free >= st.Resume || st.Entered != 1 {
		t.Fatalf("while full: %+v, want the ballast's space freed but below the resume mark", st)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the full state to end", func() bool { return !sp.Full() })
	if n := ballastSize(dir); n != 2<<20 {
		t.Fatalf("ballast %d bytes after recovery, want 2 MiB", n)
	}
	if st := sp.Stats(); st.Ballast != 2<<20 || st.Free < st.Low {
		t.Fatalf("after recovery: %+v", st)
	}
}

// TestSpaceENOSPCReleasesBallast is the last line of defence: the disk
// fills between two readings (here the watcher never reads), a WAL write
// meets ENOSPC, and instead of Pebble's fatal commit error the ballast is
// deleted inside the file system and the write retried.
func TestSpaceENOSPCReleasesBallast(t *testing.T) {
	vol := storetest.MountTmpfs(t, 16<<20)
	dir := filepath.Join(vol, "data")
	sp, err := OpenSpace(dir, SpaceOptions{Reserve: 1 << 20, Ballast: 4 << 20, MemTableSize: 1 << 20, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	db := openWatched(t, dir, sp)

	fill(t, vol, 0)
	value := bytes.Repeat([]byte{7}, 64<<10)
	// 1.5 MiB: past the first memtable (1 MiB) into a second WAL, well
	// within the 4 MiB the ballast frees. (Writing more than the ballast
	// frees meets ENOSPC again, and then Pebble exits.)
	for i := range 24 {
		if err := db.Set([]byte("k"+strconv.Itoa(i)), value, pebble.Sync); err != nil {
			t.Fatalf("set %d: %v", i, err)
		}
	}
	st := sp.Stats()
	if st.ENOSPCRecoveries == 0 || !sp.Full() || ballastSize(dir) != -1 {
		t.Fatalf("after writing into a full disk: %+v, ballast %d; want ENOSPC met, full, ballast deleted", st, ballastSize(dir))
	}
	if got, closer, err := db.Get([]byte("k23")); err != nil || !bytes.Equal(got, value) {
		t.Fatalf("read back: %v", err)
	} else {
		closer.Close()
	}
}

// TestSpaceWaitByHeadroom: the watcher reads every Interval near the mark
// or while full, and less often in proportion to the free space above the
// mark, at most maxWaits Intervals apart.
func TestSpaceWaitByHeadroom(t *testing.T) {
	sp := &Space{reserve: 100, o: SpaceOptions{Interval: 10 * time.Millisecond}}
	sp.room.Store(50) // Low = 150
	for _, c := range []struct {
		free int64
		full bool
		want time.Duration
	}{
		{free: 100, want: 10 * time.Millisecond},                // below the mark
		{free: 150, want: 10 * time.Millisecond},                // at it
		{free: 350, want: 30 * time.Millisecond},                // 200 above: 1 + 2 Intervals
		{free: 1 << 40, want: maxWaits * 10 * time.Millisecond}, // far above: the bound
		{free: 1 << 40, full: true, want: 10 * time.Millisecond},
	} {
		sp.free.Store(c.free)
		sp.full.Store(c.full)
		if got := sp.wait(); got != c.want {
			t.Errorf("free %d, full %v: wait %v, want %v", c.free, c.full, got, c.want)
		}
	}
}
