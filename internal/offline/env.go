package offline

import (
	"io"

	"github.com/cockroachdb/pebble/v2"
)

// env is what the inbox needs of its store, as Pebble's commit pipeline
// has its commitEnv: lanes build a batch, apply it (visible, not yet
// durable), and wait for its sync on the syncer; readers get keys and
// iterate ranges. The Pebble one (pebbleEnv) is the real store; tests
// run lanes over an in-memory one, so that sequence assignment, dedup,
// quota and group countdowns are tested, and raced, without a disk.
type env interface {
	NewBatch() batch
	// ApplyNoSyncWait makes b visible to readers and starts its sync.
	ApplyNoSyncWait(b batch) error
	// SyncWait returns when b is durable (or its sync failed).
	SyncWait(b batch) error
	// Get returns key's value, valid until the closer is closed; an
	// absent key is an error (pebble.ErrNotFound).
	Get(key []byte) ([]byte, io.Closer, error)
	// NewIter iterates keys in [lo, hi) as they were when it was made.
	NewIter(lo, hi []byte) (iterator, error)
	// SetSync writes one key durably, now (the seq high-water mark).
	SetSync(key, value []byte) error
	// DeleteRange deletes keys in [lo, hi) without waiting for a sync.
	DeleteRange(lo, hi []byte) error
	// Delete deletes one key without waiting for a sync.
	Delete(key []byte) error
}

// batch is a lane's write batch.
type batch interface {
	Set(key, value []byte)
	Delete(key []byte)
	// SingleDelete deletes a key that was Set exactly once: an inbox
	// entry (seqs are never reused). Unlike Delete, Pebble drops it
	// together with the Set when they meet in a flush or compaction, so a
	// delivered entry leaves nothing on disk.
	SingleDelete(key []byte)
	Empty() bool
	Count() uint32 // records in the batch
	Close()
}

// iterator is the part of *pebble.Iterator the inbox uses.
type iterator interface {
	First() bool
	SeekGE(key []byte) bool
	Next() bool
	Valid() bool
	Key() []byte
	ValueAndErr() ([]byte, error)
	// ValueLen is the value's length, without reading a value stored
	// apart from its key.
	ValueLen() int
	Error() error
	Close() error
}

// pebbleEnv is the inbox's real store.
type pebbleEnv struct{ db *pebble.DB }

// pebbleBatch is pointer-shaped: boxing it in a batch does not allocate.
type pebbleBatch struct{ b *pebble.Batch }

func (b pebbleBatch) Set(key, value []byte)   { _ = b.b.Set(key, value, nil) }
func (b pebbleBatch) Delete(key []byte)       { _ = b.b.Delete(key, nil) }
func (b pebbleBatch) SingleDelete(key []byte) { _ = b.b.SingleDelete(key, nil) }
func (b pebbleBatch) Empty() bool             { return b.b.Empty() }
func (b pebbleBatch) Count() uint32           { return b.b.Count() }
func (b pebbleBatch) Close()                  { _ = b.b.Close() }

func (e pebbleEnv) NewBatch() batch { return pebbleBatch{e.db.NewBatch()} }

func (e pebbleEnv) ApplyNoSyncWait(b batch) error {
	return e.db.ApplyNoSyncWait(b.(pebbleBatch).b, pebble.Sync)
}

func (e pebbleEnv) SyncWait(b batch) error { return b.(pebbleBatch).b.SyncWait() }

func (e pebbleEnv) Get(key []byte) ([]byte, io.Closer, error) { return e.db.Get(key) }

func (e pebbleEnv) NewIter(lo, hi []byte) (iterator, error) {
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	return pebbleIter{it}, nil
}

// pebbleIter adds ValueLen to a Pebble iterator.
type pebbleIter struct{ *pebble.Iterator }

func (it pebbleIter) ValueLen() int {
	lv := it.LazyValue()
	return lv.Len()
}

func (e pebbleEnv) SetSync(key, value []byte) error { return e.db.Set(key, value, pebble.Sync) }

func (e pebbleEnv) DeleteRange(lo, hi []byte) error { return e.db.DeleteRange(lo, hi, pebble.NoSync) }

func (e pebbleEnv) Delete(key []byte) error { return e.db.Delete(key, pebble.NoSync) }
