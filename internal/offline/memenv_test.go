package offline

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// memEnv is an in-memory env: a map, batches applied under a lock, and
// hooks that let a test fail or hold an apply or a sync. It logs every
// apply and every sync that returned, in order, so that tests can check
// what happened before what.
type memEnv struct {
	mu  sync.Mutex
	kv  map[string][]byte
	log []memEvent
	// sets counts the Sets of each key since its last deletion, to hold
	// SingleDelete to Pebble's contract: the key was Set exactly once.
	sets map[string]int

	// Set before the inbox opens; called without mu held.
	beforeApply func(b *memBatch) error
	beforeSync  func(b *memBatch) error
}

// memEvent is one apply or one sync that returned.
type memEvent struct {
	synced bool
	b      *memBatch
	err    error
	note   string // set by logNote
}

type memBatch struct {
	writes []memWrite
}

type memWrite struct {
	key, value []byte
	del        bool
	single     bool // SingleDelete
}

func newMemEnv() *memEnv { return &memEnv{kv: map[string][]byte{}} }

func (b *memBatch) Set(key, value []byte) {
	b.writes = append(b.writes, memWrite{key: bytes.Clone(key), value: bytes.Clone(value)})
}
func (b *memBatch) Delete(key []byte) {
	b.writes = append(b.writes, memWrite{key: bytes.Clone(key), del: true})
}
func (b *memBatch) SingleDelete(key []byte) {
	b.writes = append(b.writes, memWrite{key: bytes.Clone(key), del: true, single: true})
}
func (b *memBatch) Empty() bool   { return len(b.writes) == 0 }
func (b *memBatch) Count() uint32 { return uint32(len(b.writes)) }
func (b *memBatch) Close()        {}

// touches reports whether b writes or deletes a key starting with prefix.
func (b *memBatch) touches(prefix []byte, del bool) bool {
	for _, w := range b.writes {
		if w.del == del && bytes.HasPrefix(w.key, prefix) {
			return true
		}
	}
	return false
}

func (e *memEnv) NewBatch() batch { return &memBatch{} }

func (e *memEnv) ApplyNoSyncWait(b batch) error {
	mb := b.(*memBatch)
	if e.beforeApply != nil {
		if err := e.beforeApply(mb); err != nil {
			return err
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.sets == nil {
		e.sets = map[string]int{}
	}
	for _, w := range mb.writes {
		k := string(w.key)
		switch {
		case w.single && e.sets[k] > 1:
			panic(fmt.Sprintf("memenv: SingleDelete of %x, which was Set %d times", w.key, e.sets[k]))
		case w.del:
			delete(e.kv, k)
			delete(e.sets, k)
		default:
			e.kv[k] = w.value
			e.sets[k]++
		}
	}
	e.log = append(e.log, memEvent{b: mb})
	return nil
}

func (e *memEnv) SyncWait(b batch) error {
	mb := b.(*memBatch)
	var err error
	if e.beforeSync != nil {
		err = e.beforeSync(mb)
	}
	e.mu.Lock()
	e.log = append(e.log, memEvent{synced: true, b: mb, err: err})
	e.mu.Unlock()
	return err
}

// logNote adds a test's own event to the log (a hook ran, say).
func (e *memEnv) logNote(note string) {
	e.mu.Lock()
	e.log = append(e.log, memEvent{note: note})
	e.mu.Unlock()
}

func (e *memEnv) events() []memEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]memEvent(nil), e.log...)
}

func (e *memEnv) Get(key []byte) ([]byte, io.Closer, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	v, ok := e.kv[string(key)]
	if !ok {
		return nil, nil, pebble.ErrNotFound
	}
	return bytes.Clone(v), io.NopCloser(nil), nil
}

func (e *memEnv) has(key []byte) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.kv[string(key)]
	return ok
}

// NewIter snapshots the keys in [lo, hi), as a Pebble iterator does.
func (e *memEnv) NewIter(lo, hi []byte) (iterator, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	it := &memIter{}
	for k, v := range e.kv {
		if k >= string(lo) && (hi == nil || k < string(hi)) {
			it.keys = append(it.keys, k)
			it.vals = append(it.vals, v)
		}
	}
	sort.Sort(it)
	return it, nil
}

func (e *memEnv) SetSync(key, value []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.kv[string(key)] = bytes.Clone(value)
	return nil
}

func (e *memEnv) Delete(key []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.kv, string(key))
	return nil
}

func (e *memEnv) DeleteRange(lo, hi []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k := range e.kv {
		if k >= string(lo) && k < string(hi) {
			delete(e.kv, k)
		}
	}
	return nil
}

type memIter struct {
	keys []string
	vals [][]byte
	i    int
}

func (it *memIter) Len() int           { return len(it.keys) }
func (it *memIter) Less(i, j int) bool { return it.keys[i] < it.keys[j] }
func (it *memIter) Swap(i, j int) {
	it.keys[i], it.keys[j] = it.keys[j], it.keys[i]
	it.vals[i], it.vals[j] = it.vals[j], it.vals[i]
}

func (it *memIter) First() bool { it.i = 0; return it.Valid() }
func (it *memIter) SeekGE(key []byte) bool {
	it.i = sort.SearchStrings(it.keys, string(key))
	return it.Valid()
}
func (it *memIter) Next() bool                   { it.i++; return it.Valid() }
func (it *memIter) Valid() bool                  { return it.i < len(it.keys) }
func (it *memIter) Key() []byte                  { return []byte(it.keys[it.i]) }
func (it *memIter) ValueAndErr() ([]byte, error) { return it.vals[it.i], nil }
func (it *memIter) ValueLen() int                { return len(it.vals[it.i]) }
func (it *memIter) Error() error                 { return nil }
func (it *memIter) Close() error                 { return nil }
