package group

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/account"
	"github.com/chatd/chatd/internal/store"
	"github.com/cockroachdb/pebble/v2"
)

// Store reads and writes groups.
type Store struct {
	db         *pebble.DB
	maxMembers int

	mu     sync.Mutex
	groups map[uint64]*Group // loaded groups
	next   uint64            // a single node's next id
	// A cluster node's ids are k*account.Shards + shard, for a home shard
	// the node owns; k counts up from above every id in the store, so
	// neither scheme reuses the other's ids.
	last  uint64 // the highest id in the store at open
	nextK uint64

	// testHookAssigned, when set, runs after Create has chosen an id and
	// before it commits: tests use it to interleave creates.
	testHookAssigned func(id uint64)
	// testHookCommit, when set, runs on the committing goroutine just
	// before a create or change is written with Sync.
	testHookCommit atomic.Pointer[func()]
}

var metaNext = []byte{store.PrefixMeta, 'g', 'r', 'o', 'u', 'p'}

// Open returns the group store; maxMembers is the size limit, the creator
// included (default 256).
func Open(db *pebble.DB, maxMembers int) (*Store, error) {
	if maxMembers <= 0 {
		maxMembers = codec.DefaultMaxGroup
	}
	s := &Store{db: db, maxMembers: maxMembers, groups: map[uint64]*Group{}, next: 1}
	next, found, err := store.GetUint64(db, metaNext)
	if err != nil {
		return nil, fmt.Errorf("group: read next id: %w", err)
	}
	if found {
		s.next = next
	}
	// The highest group key names the highest id ever committed; creates
	// commit their keys in one batch, so nothing above it exists.
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{store.PrefixGroup}, UpperBound: []byte{store.PrefixGroup + 1}})
	if err != nil {
		return nil, fmt.Errorf("group: find highest id: %w", err)
	}
	if it.Last() && len(it.Key()) >= 9 {
		s.last = binary.BigEndian.Uint64(it.Key()[1:9])
		s.next = max(s.next, s.last+1)
	}
	s.nextK = s.last/account.Shards + 1
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("group: find highest id: %w", err)
	}
	return s, nil
}

// SetCommitHook makes fn run just before every group create or change is
// written with Sync, on the goroutine writing it. For tests: holding fn
// stands in for a slow fsync.
func (s *Store) SetCommitHook(fn func()) { s.testHookCommit.Store(&fn) }

func (s *Store) beforeCommit() {
	if fn := s.testHookCommit.Load(); fn != nil && *fn != nil {
		(*fn)()
	}
}

// Get returns a group, loading it from the store on first use.
func (s *Store) Get(id uint64) (*Group, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g, ok := s.groups[id]; ok {
		return g, nil
	}
	v, closer, err := s.db.Get(infoKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("%w %d", ErrUnknown, id)
	}
	if err != nil {
		return nil, fmt.Errorf("group: read %d: %w", id, err)
	}
	g := &Group{ID: id, name: append([]byte(nil), v[1:1+int(v[0])]...), members: map[uint64]codec.Role{}}
	closer.Close()
	prefix := memberPrefix(id)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: store.PrefixEnd(prefix)})
	if err != nil {
		return nil, fmt.Errorf("group: read members of %d: %w", id, err)
	}
	for it.First(); it.Valid(); it.Next() {
		g.members[binary.BigEndian.Uint64(it.Key()[10:])] = codec.Role(it.Value()[0])
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("group: read members of %d: %w", id, err)
	}
	s.groups[id] = g
	return g, nil
}

// Create makes a group with creator as admin and users as members (users
// may be empty, may repeat and may name the creator; the limit counts the
// creator). It commits with Sync holding no lock, then makes the group
// visible and calls publish under the group's write lock, so that the
// created event comes before anything sent to the group.
func (s *Store) Create(creator uint64, name []byte, users []uint64, publish func(g *Group)) (*Group, error) {
	return s.create(creator, name, users, -1, publish)
}

// CreateIn is Create for a cluster node that owns home shard: the
// group's id is in that shard, so every node knows the group's home.
func (s *Store) CreateIn(shard int, creator uint64, name []byte, users []uint64, publish func(g *Group)) (*Group, error) {
	return s.create(creator, name, users, shard, publish)
}

func (s *Store) create(creator uint64, name []byte, users []uint64, shard int, publish func(g *Group)) (*Group, error) {
	if codec.ValidateGroupName(name) != nil {
		return nil, fmt.Errorf("%w: the name must be 1 to 64 bytes of UTF-8", ErrInvalid)
	}
	members := map[uint64]codec.Role{creator: codec.RoleAdmin}
	for _, u := range users {
		if u == 0 {
			return nil, fmt.Errorf("%w: user 0 does not exist", ErrInvalid)
		}
		if _, ok := members[u]; !ok {
			members[u] = codec.RoleMember
		}
	}
	if len(members) > s.maxMembers {
		return nil, fmt.Errorf("%w: %d members, the creator included; the limit is %d", ErrFull, len(members), s.maxMembers)
	}
	s.mu.Lock()
	id := s.next
	if shard < 0 {
		s.next++
	} else {
		id = s.nextK*account.Shards + uint64(shard)
		s.nextK++
	}
	s.mu.Unlock()
	if s.testHookAssigned != nil {
		s.testHookAssigned(id)
	}
	g := &Group{ID: id, name: append([]byte(nil), name...), members: members}
	b := s.db.NewBatch()
	defer b.Close()
	info := append([]byte{byte(len(name))}, name...)
	info = binary.BigEndian.AppendUint64(info, uint64(time.Now().UnixMilli()))
	info = binary.BigEndian.AppendUint64(info, creator)
	b.Set(infoKey(id), info, nil)
	for u, r := range members {
		setMember(b, id, u, r)
	}
	s.beforeCommit()
	if err := b.Commit(pebble.Sync); err != nil {
		return nil, fmt.Errorf("group: create: %w", err)
	}
	g.Mu.Lock()
	s.mu.Lock()
	if loaded, ok := s.groups[id]; ok {
		// A Get loaded it from the store between the commit and here; keep
		// the one others may already hold.
		s.mu.Unlock()
		g.Mu.Unlock()
		g = loaded
		g.Mu.Lock()
	} else {
		s.groups[id] = g
		s.mu.Unlock()
	}
	defer g.Mu.Unlock()
	if publish != nil {
		publish(g)
	}
	return g, nil
}

// List returns the groups user belongs to.
func (s *Store) List(user uint64) ([]codec.GroupSummary, error) {
	prefix := binary.BigEndian.AppendUint64([]byte{store.PrefixUserGroups}, user)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: store.PrefixEnd(prefix)})
	if err != nil {
		return nil, fmt.Errorf("group: list: %w", err)
	}
	var ids []uint64
	for it.First(); it.Valid(); it.Next() {
		ids = append(ids, binary.BigEndian.Uint64(it.Key()[9:]))
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("group: list: %w", err)
	}
	out := make([]codec.GroupSummary, 0, len(ids))
	for _, id := range ids {
		g, err := s.Get(id)
		if err != nil {
			continue
		}
		g.Mu.RLock()
		out = append(out, codec.GroupSummary{Group: id, Name: append([]byte(nil), g.name...)})
		g.Mu.RUnlock()
	}
	return out, nil
}

func infoKey(id uint64) []byte {
	return append(binary.BigEndian.AppendUint64([]byte{store.PrefixGroup}, id), 0)
}

func memberPrefix(id uint64) []byte {
	return append(binary.BigEndian.AppendUint64([]byte{store.PrefixGroup}, id), 1)
}

func setMember(b *pebble.Batch, id, user uint64, r codec.Role) {
	b.Set(binary.BigEndian.AppendUint64(memberPrefix(id), user), []byte{byte(r)}, nil)
	k := binary.BigEndian.AppendUint64([]byte{store.PrefixUserGroups}, user)
	b.Set(binary.BigEndian.AppendUint64(k, id), nil, nil)
}

func deleteMember(b *pebble.Batch, id, user uint64) {
	b.Delete(binary.BigEndian.AppendUint64(memberPrefix(id), user), nil)
	k := binary.BigEndian.AppendUint64([]byte{store.PrefixUserGroups}, user)
	b.Delete(binary.BigEndian.AppendUint64(k, id), nil)
}

// Forget drops the loaded groups in gone from memory: their home moved
// to another node, and if it comes back it brings them as they are then.
func (s *Store) Forget(gone func(id uint64) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.groups {
		if gone(id) {
			delete(s.groups, id)
		}
	}
}

// Adopt makes sure ids made here from now on are above the imported
// group id (a shard move brought it).
func (s *Store) Adopt(id uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextK = max(s.nextK, id/account.Shards+1)
	s.next = max(s.next, id+1)
}
