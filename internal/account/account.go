// Package account keeps user accounts and sessions in the embedded store:
// user names with argon2id password hashes, and sessions (session.go),
// each with a random token of which only a SHA-256 hash is stored.
//
// Password hashing is deliberately slow and memory-hungry (19 MiB per hash
// by default), so it runs with bounded concurrency and refuses work beyond
// a short queue (ErrBusy) instead of letting a login storm exhaust memory.
// Reconnects present a token, which costs one hash, two lookups and a
// synced write (the token rotates).
package account

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/crypto/argon2"
)

// Errors returned to the server, which maps each to an ERROR code.
var (
	ErrUnknownUser     = errors.New("account: unknown user")
	ErrWrongPassword   = errors.New("account: wrong password")
	ErrNameTaken       = errors.New("account: name taken")
	ErrInvalidName     = errors.New("account: invalid name")
	ErrInvalidPassword = errors.New("account: invalid password")
	ErrInvalidToken    = errors.New("account: invalid token")
	ErrBusy            = errors.New("account: password hashing saturated")
)

// Hashing holds argon2id parameters. New hashes use the configured ones;
// each stored hash keeps its own, so they can change without a migration.
type Hashing struct {
	Time      uint32 // passes; default 2
	MemoryKiB uint32 // default 19 MiB (OWASP's argon2id baseline)
	Threads   uint8  // default 1
}

// Config tunes the store. A zero field means its default.
type Config struct {
	Hashing Hashing
	// MaxHashing is how many password hashes run at once. Default GOMAXPROCS.
	MaxHashing int
	// MaxQueued is how many more may wait before ErrBusy. Default 8 per core.
	MaxQueued int
	// NameHold is how long the name of a deleted account stays taken
	// before REGISTER may have it again (delete.go). Default
	// DefaultNameHold, 30 days; negative releases it at once.
	NameHold time.Duration
	// IdleExpiry ends a session not used for this long: its token is
	// refused. Default 30 days.
	IdleExpiry time.Duration
	// Grace is how long a token rotated out by RESUME still resumes (the
	// client may not have received the WELCOME with its successor).
	// Default 2 minutes.
	Grace time.Duration
	// Now, for tests, is the clock sessions read. Default time.Now.
	Now func() time.Time
}

// Store reads and writes accounts.
type Store struct {
	db   *pebble.DB
	cfg  Config
	sem  chan struct{}
	wait atomic.Int64

	mu       sync.Mutex // serializes registrations: name check + id allocation
	nextUser atomic.Uint64
	now      func() time.Time

	userLocks [256]sync.Mutex // by user id: a session's read-modify-write

	// Ids of a cluster's home shards (RegisterIn): shard s hands out
	// k*Shards+s, k counting up from shardBase (above every id nextUser
	// gave out, so the two schemes never collide). shardNext[s] is the
	// next k; written under mu, read atomically.
	shardBase  uint64
	shardNext  [Shards]atomic.Uint64
	shardCount atomic.Uint64 // accounts registered in shards

	// Deleted accounts (delete.go): gone holds every id whose deletion
	// started, ngone counts them so that Exists costs one atomic load
	// while there are none, and unfinished lists those whose deletion had
	// not finished when the store opened.
	gone       sync.Map // user id -> struct{}
	ngone      atomic.Int64
	unfinished []uint64
}

// Shards is the number of home shards a cluster divides ids into: an
// id's home shard is id mod Shards (cluster.ShardOf).
const Shards = 4096

var (
	metaNextUser = []byte{store.PrefixMeta, 'u', 's', 'e', 'r'}
	// metaShardUser + shard (2 bytes) -> the shard's next k
	metaShardUser = []byte{store.PrefixMeta, 'u', 's', 'h', 'd'}
)

// NameShard is the home shard of a user name: a registration goes to
// that shard's owner node, which gives the account an id in the same
// shard, so a name and its account live on one node.
func NameShard(name []byte) int {
	h := uint64(14695981039346656037)
	for _, c := range name {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return int(h % Shards)
}

// TokenUser is the user id a token was issued to: its first 8 bytes,
// which lets any node of a cluster send a RESUME to the account's home.
// The next 8 name its session (tokenSessionID), and the last 16 are
// random; the store keeps only a SHA-256 of all 32.
func TokenUser(tok codec.Token) uint64 { return binary.BigEndian.Uint64(tok[:8]) }

// tokenSessionID is the session a token says it belongs to: bytes 8-16.
// Only a claim: the session's record must hold the token's hash. Tokens
// issued before it was there have random bytes in its place.
func tokenSessionID(tok codec.Token) uint64 { return binary.BigEndian.Uint64(tok[8:16]) }

// New opens the account store on db.
func New(db *pebble.DB, cfg Config) (*Store, error) {
	if cfg.Hashing.Time == 0 {
		cfg.Hashing.Time = 2
	}
	if cfg.Hashing.MemoryKiB == 0 {
		cfg.Hashing.MemoryKiB = 19 * 1024
	}
	if cfg.Hashing.Threads == 0 {
		cfg.Hashing.Threads = 1
	}
	if cfg.MaxHashing == 0 {
		cfg.MaxHashing = runtime.GOMAXPROCS(0)
	}
	if cfg.MaxQueued == 0 {
		cfg.MaxQueued = 8 * runtime.GOMAXPROCS(0)
	}
	if cfg.NameHold == 0 {
		cfg.NameHold = DefaultNameHold
	}
	if cfg.IdleExpiry == 0 {
		cfg.IdleExpiry = 30 * 24 * time.Hour
	}
	if cfg.Grace == 0 {
		cfg.Grace = 2 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Store{db: db, cfg: cfg, sem: make(chan struct{}, cfg.MaxHashing), now: cfg.Now}
	next, found, err := store.GetUint64(db, metaNextUser)
	if err != nil {
		return nil, fmt.Errorf("account: read next user id: %w", err)
	}
	if !found {
		next = 1
	}
	s.nextUser.Store(next)
	s.shardBase = (next + Shards - 1) / Shards
	if err := s.loadShards(); err != nil {
		return nil, err
	}
	if s.unfinished, err = s.loadDeleted(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) loadShards() error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: metaShardUser, UpperBound: store.PrefixEnd(metaShardUser)})
	if err != nil {
		return fmt.Errorf("account: read shard ids: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) != len(metaShardUser)+2 || len(v) != 8 {
			continue
		}
		shard := binary.BigEndian.Uint16(k[len(metaShardUser):])
		if shard < Shards {
			n := binary.BigEndian.Uint64(v)
			s.shardNext[shard].Store(n)
			s.shardCount.Add(n - min(n, s.shardBase))
		}
	}
	return it.Error()
}

// Exists reports whether user is a registered id whose account was not
// deleted. Ids are handed out in order (per shard, in a cluster) and
// never reused, so this costs no lookup. In a cluster it answers only
// for shards this node has held.
func (s *Store) Exists(user uint64) bool {
	if user == 0 {
		return false
	}
	return (user < s.nextUser.Load() || s.inShards(user)) && !s.Deleted(user)
}

// inShards reports whether user is an id a shard handed out.
func (s *Store) inShards(user uint64) bool {
	k := user / Shards
	return k >= s.shardBase && k < s.shardNext[user%Shards].Load()
}

// Count returns the number of registered users.
func (s *Store) Count() uint64 { return s.nextUser.Load() - 1 + s.shardCount.Load() }

// Register creates an account and a first session, from addr, with the
// next id of a single node's sequence.
func (s *Store) Register(name, password []byte, addr string) (Issued, error) {
	return s.register(name, password, addr, -1)
}

// RegisterIn is Register for a cluster node that owns home shard
// NameShard(name): the account's id is in that shard.
func (s *Store) RegisterIn(name, password []byte, addr string) (Issued, error) {
	return s.register(name, password, addr, NameShard(name))
}

func (s *Store) register(name, password []byte, addr string, shard int) (Issued, error) {
	// The codec's reason says which rule failed, for the ERROR's detail.
	if err := codec.ValidateName(name); err != nil {
		return Issued{}, fmt.Errorf("%w: %w", ErrInvalidName, err)
	}
	if err := codec.ValidatePassword(password); err != nil {
		return Issued{}, fmt.Errorf("%w: %w", ErrInvalidPassword, err)
	}
	rec, err := s.newRecord(name, password)
	if err != nil {
		return Issued{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.lookup(name); err == nil {
		return Issued{}, ErrNameTaken
	} else if !errors.Is(err, ErrUnknownUser) {
		return Issued{}, err
	}
	b := s.db.NewBatch()
	defer b.Close()
	if held, err := s.nameHeld(b, name); err != nil {
		return Issued{}, err
	} else if held {
		return Issued{}, ErrNameTaken // a deleted account's, until its hold ends
	}
	var user, k uint64
	// The two schemes skip each other's ids, for a store that has been a
	// single node and a cluster node in turn.
	if shard < 0 {
		user = s.nextUser.Load()
		for s.inShards(user) {
			user++
		}
		b.Set(metaNextUser, binary.BigEndian.AppendUint64(nil, user+1), nil)
	} else {
		k = max(s.shardNext[shard].Load(), s.shardBase)
		for k*Shards+uint64(shard) < s.nextUser.Load() {
			k++
		}
		user = k*Shards + uint64(shard)
		b.Set(shardUserKey(shard), binary.BigEndian.AppendUint64(nil, k+1), nil)
	}
	b.Set(nameKey(name), binary.BigEndian.AppendUint64(nil, user), nil)
	b.Set(userKey(user), rec, nil)
	is, err := s.startSession(b, user, addr)
	if err != nil {
		return Issued{}, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return Issued{}, fmt.Errorf("account: register %s: %w", name, err)
	}
	if shard < 0 {
		s.nextUser.Store(user + 1)
	} else {
		s.shardNext[shard].Store(k + 1)
		s.shardCount.Add(1)
	}
	return is, nil
}

// Login checks a password and starts a session from addr.
func (s *Store) Login(name, password []byte, addr string) (Issued, error) {
	user, err := s.lookup(name)
	if err != nil {
		return Issued{}, err
	}
	if s.Deleted(user) {
		return Issued{}, ErrUnknownUser
	}
	rec, err := s.record(user)
	if err != nil {
		return Issued{}, err
	}
	if err := s.verify(rec, password); err != nil {
		return Issued{}, err
	}
	b := s.db.NewBatch()
	defer b.Close()
	is, err := s.startSession(b, user, addr)
	if err != nil {
		return Issued{}, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return Issued{}, fmt.Errorf("account: login %s: %w", name, err)
	}
	return is, nil
}

// Revoke ends the session tok belongs to (LOGOUT): none of its tokens
// resumes once it returns. A token already dead is no error.
func (s *Store) Revoke(user uint64, tok codec.Token) error {
	if TokenUser(tok) != user {
		return nil
	}
	sid, _, err := s.tokenSession(tok, sha256.Sum256(tok[:]))
	if errors.Is(err, ErrInvalidToken) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.EndSession(user, sid); err != nil && !errors.Is(err, ErrUnknownSession) {
		return err
	}
	return nil
}

// ChangePassword checks the old password, stores the new one, ends every
// session of the user and starts a new one from addr.
func (s *Store) ChangePassword(user uint64, old, new []byte, addr string) (Issued, error) {
	if err := codec.ValidatePassword(new); err != nil {
		return Issued{}, fmt.Errorf("%w: %w", ErrInvalidPassword, err)
	}
	if s.Deleted(user) {
		return Issued{}, ErrUnknownUser
	}
	rec, err := s.record(user)
	if err != nil {
		return Issued{}, err
	}
	if err := s.verify(rec, old); err != nil {
		return Issued{}, err
	}
	name := recordName(rec)
	fresh, err := s.newRecord(name, new)
	if err != nil {
		return Issued{}, err
	}
	defer s.lockUser(user)()
	b := s.db.NewBatch()
	defer b.Close()
	b.Set(userKey(user), fresh, nil)
	if err := s.deleteTokens(b, user); err != nil {
		return Issued{}, err
	}
	is, err := s.startSession(b, user, addr)
	if err != nil {
		return Issued{}, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return Issued{}, fmt.Errorf("account: change password: %w", err)
	}
	return is, nil
}

// LookupName returns the id registered under name.
func (s *Store) LookupName(name []byte) (uint64, error) {
	user, err := s.lookup(name)
	if err == nil && s.Deleted(user) {
		return 0, ErrUnknownUser
	}
	return user, err
}

// Name returns the name of user.
func (s *Store) Name(user uint64) ([]byte, error) {
	if s.Deleted(user) {
		return nil, ErrUnknownUser
	}
	rec, err := s.record(user)
	if err != nil {
		return nil, err
	}
	return recordName(rec), nil
}

func (s *Store) lookup(name []byte) (uint64, error) {
	if codec.ValidateName(name) != nil {
		return 0, ErrUnknownUser
	}
	return s.userAt(nameKey(name), ErrUnknownUser, "lookup")
}

// userAt reads the user id a name's or a token's key holds; missing is
// the error when there is none.
func (s *Store) userAt(key []byte, missing error, op string) (uint64, error) {
	user, found, err := store.GetUint64(s.db, key)
	if err != nil {
		return 0, fmt.Errorf("account: %s: %w", op, err)
	}
	if !found {
		return 0, missing
	}
	return user, nil
}

func (s *Store) record(user uint64) ([]byte, error) {
	v, closer, err := s.db.Get(userKey(user))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrUnknownUser
	}
	if err != nil {
		return nil, fmt.Errorf("account: read user %d: %w", user, err)
	}
	defer closer.Close()
	if len(v) < recordFixed+1 || v[0] != recordVersion {
		return nil, fmt.Errorf("account: user %d: corrupt record", user)
	}
	return append([]byte(nil), v...), nil
}

// deleteTokens adds to b the deletion of user's sessions and of the
// tokens they name.
func (s *Store) deleteTokens(b *pebble.Batch, user uint64) error {
	lo := binary.BigEndian.AppendUint64([]byte{store.PrefixUserTokens}, user)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: store.PrefixEnd(lo)})
	if err != nil {
		return fmt.Errorf("account: list sessions: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if r, err := decodeSession(it.Value()); err == nil && len(k) == 17 {
			dropSession(b, user, binary.BigEndian.Uint64(k[9:]), r)
		} else {
			// Unreadable, or a format 2 index key a migration missed: a
			// token naming a session that is gone is refused and dropped
			// when presented (Resume).
			b.Delete(append([]byte(nil), k...), nil)
		}
	}
	return it.Error()
}

// Account record layout:
//
//	| version (1) = 1 | time (4) | memory KiB (4) | threads (1) | salt (16) | hash (32) | created (8) | name (rest) |
const (
	recordVersion = 1
	recordFixed   = 1 + 4 + 4 + 1 + 16 + 32 + 8
)

func (s *Store) newRecord(name, password []byte) ([]byte, error) {
	var salt [16]byte
	if _, err := rand.Read(salt[:]); err != nil {
		return nil, fmt.Errorf("account: salt: %w", err)
	}
	h := s.cfg.Hashing
	hash, err := s.hash(password, salt[:], h)
	if err != nil {
		return nil, err
	}
	rec := make([]byte, 0, recordFixed+len(name))
	rec = append(rec, recordVersion)
	rec = binary.BigEndian.AppendUint32(rec, h.Time)
	rec = binary.BigEndian.AppendUint32(rec, h.MemoryKiB)
	rec = append(rec, h.Threads)
	rec = append(rec, salt[:]...)
	rec = append(rec, hash...)
	rec = binary.BigEndian.AppendUint64(rec, uint64(time.Now().UnixMilli()))
	return append(rec, name...), nil
}

func (s *Store) verify(rec, password []byte) error {
	h := Hashing{
		Time:      binary.BigEndian.Uint32(rec[1:]),
		MemoryKiB: binary.BigEndian.Uint32(rec[5:]),
		Threads:   rec[9],
	}
	got, err := s.hash(password, rec[10:26], h)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(got, rec[26:58]) != 1 {
		return ErrWrongPassword
	}
	return nil
}

func recordName(rec []byte) []byte { return append([]byte(nil), rec[recordFixed:]...) }

// hash runs argon2id with bounded concurrency.
func (s *Store) hash(password, salt []byte, h Hashing) ([]byte, error) {
	if s.wait.Add(1) > int64(s.cfg.MaxHashing+s.cfg.MaxQueued) {
		s.wait.Add(-1)
		return nil, ErrBusy
	}
	defer s.wait.Add(-1)
	s.sem <- struct{}{}
	defer func() { <-s.sem }()
	return argon2.IDKey(password, salt, h.Time, h.MemoryKiB, h.Threads, 32), nil
}

func shardUserKey(shard int) []byte {
	return binary.BigEndian.AppendUint16(append([]byte(nil), metaShardUser...), uint16(shard))
}

func nameKey(name []byte) []byte { return append([]byte{store.PrefixName}, name...) }

func userKey(user uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{store.PrefixUser}, user)
}

// addToken adds a fresh token of user's session sid to b and returns it
// (user's id, the session's, then 16 random bytes: TokenUser,
// tokenSessionID) and its SHA-256. The record from the token's hash to
// its session is still written: tokens issued before they named their
// session are found through it (tokenSession), and so are new ones by a
// build from before.
func addToken(b *pebble.Batch, user, sid uint64) (codec.Token, [32]byte, error) {
	var tok codec.Token
	binary.BigEndian.PutUint64(tok[:8], user)
	binary.BigEndian.PutUint64(tok[8:16], sid)
	if _, err := rand.Read(tok[16:]); err != nil {
		return tok, [32]byte{}, fmt.Errorf("account: token: %w", err)
	}
	h := sha256.Sum256(tok[:])
	v := binary.BigEndian.AppendUint64(nil, user)
	v = binary.BigEndian.AppendUint64(v, uint64(time.Now().UnixMilli()))
	v = binary.BigEndian.AppendUint64(v, sid)
	b.Set(append([]byte{store.PrefixToken}, h[:]...), v, nil)
	return tok, h, nil
}

// ShardCounterKey is the record that counts the ids a shard handed out:
// a shard move carries it with the shard's accounts.
func ShardCounterKey(shard int) []byte { return shardUserKey(shard) }

// AdoptShard reads shard's counter after a move imported the shard's
// records, so that its accounts exist here and new ids follow theirs.
func (s *Store) AdoptShard(shard int) error {
	n, found, err := store.GetUint64(s.db, shardUserKey(shard))
	if err != nil || !found {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	count := func(next uint64) uint64 { return next - min(next, s.shardBase) } // as loadShards counts
	if old := s.shardNext[shard].Load(); n > old {
		s.shardNext[shard].Store(n)
		s.shardCount.Add(count(n) - count(old))
	}
	return nil
}
