package presence

import (
	"encoding/binary"
	"fmt"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
)

// Read returns user's stored last-seen time (unix ms, 0 if never) and
// privacy flags.
func (p *Tracker[W]) Read(user uint64) (lastSeen uint64, privacy codec.PrivacyFlags) {
	v, closer, err := p.db.Get(key(user))
	if err != nil {
		return 0, 0
	}
	defer closer.Close()
	if len(v) != 9 {
		return 0, 0
	}
	return binary.BigEndian.Uint64(v), codec.PrivacyFlags(v[8])
}

// SetPrivacy stores user's flags durably and tells its watchers. It
// fsyncs: call it off the event loop.
func (p *Tracker[W]) SetPrivacy(user uint64, flags codec.PrivacyFlags) error {
	p.wmu.Lock()
	last, _ := p.Read(user)
	err := p.db.Set(key(user), value(last, flags), pebble.NoSync)
	p.wmu.Unlock()
	if err == nil {
		// Syncing the log makes the write above durable, without holding
		// wmu (which the tick needs) across the fsync.
		err = p.db.LogData(nil, pebble.Sync)
	}
	if err != nil {
		return fmt.Errorf("presence: store privacy of %d: %w", user, err)
	}
	p.Changed(user, 0)
	return nil
}

// Delete removes user's last-seen time and privacy flags, durably, and
// sends its watchers its new state (offline, never seen). Config.Deleted
// must already report user, so that no later tick writes the key again.
func (p *Tracker[W]) Delete(user uint64) error {
	p.wmu.Lock()
	err := p.db.Delete(key(user), pebble.Sync)
	p.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("presence: delete %d: %w", user, err)
	}
	p.Changed(user, 0)
	return nil
}

// writeLastSeen stores the last-seen times in seen, keeping each user's
// privacy flags.
func (p *Tracker[W]) writeLastSeen(seen map[uint64]uint64) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	b := p.db.NewBatch()
	defer b.Close()
	for u, at := range seen {
		if p.cfg.Deleted != nil && p.cfg.Deleted(u) {
			continue // Delete removed the key, or is about to
		}
		_, priv := p.Read(u)
		if h := p.testHookRead.Load(); h != nil {
			(*h)()
		}
		b.Set(key(u), value(at, priv), nil)
	}
	// Not Sync: a crash may lose the last few seconds of last-seen
	// times, never a message; the next Sync commit flushes these.
	if err := b.Commit(pebble.NoSync); err != nil {
		p.log.Error("presence: write last seen", zap.Error(err))
	}
}

func key(user uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{store.PrefixLastSeen}, user)
}

func value(at uint64, privacy codec.PrivacyFlags) []byte {
	return append(binary.BigEndian.AppendUint64(nil, at), byte(privacy))
}
