// Package account keeps user accounts and session tokens in the embedded
// store: user names with argon2id password hashes, and random session
// tokens of which only a SHA-256 hash is stored.
//
// Password hashing is deliberately slow and memory-hungry (19 MiB per hash
// by default), so it runs with bounded concurrency and refuses work beyond
// a short queue (ErrBusy) instead of letting a login storm exhaust memory.
// Reconnects present a token, which costs one hash and one lookup.
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
}

// Store reads and writes accounts.
type Store struct {
	db   *pebble.DB
	cfg  Config
	sem  chan struct{}
	wait atomic.Int64

	mu       sync.Mutex // serializes registrations: name check + id allocation
	nextUser atomic.Uint64
}

var metaNextUser = []byte{store.PrefixMeta, 'u', 's', 'e', 'r'}

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
	s := &Store{db: db, cfg: cfg, sem: make(chan struct{}, cfg.MaxHashing)}
	next, found, err := store.GetUint64(db, metaNextUser)
	if err != nil {
		return nil, fmt.Errorf("account: read next user id: %w", err)
	}
	if !found {
		next = 1
	}
	s.nextUser.Store(next)
	return s, nil
}

// Exists reports whether user is a registered id. Ids are handed out in
// order and never deleted, so this costs no lookup.
func (s *Store) Exists(user uint64) bool { return user != 0 && user < s.nextUser.Load() }

// Count returns the number of registered users.
func (s *Store) Count() uint64 { return s.nextUser.Load() - 1 }

// Register creates an account and a first session token.
func (s *Store) Register(name, password []byte) (uint64, codec.Token, error) {
	var tok codec.Token
	// The codec's reason says which rule failed, for the ERROR's detail.
	if err := codec.ValidateName(name); err != nil {
		return 0, tok, fmt.Errorf("%w: %w", ErrInvalidName, err)
	}
	if err := codec.ValidatePassword(password); err != nil {
		return 0, tok, fmt.Errorf("%w: %w", ErrInvalidPassword, err)
	}
	rec, err := s.newRecord(name, password)
	if err != nil {
		return 0, tok, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.lookup(name); err == nil {
		return 0, tok, ErrNameTaken
	} else if !errors.Is(err, ErrUnknownUser) {
		return 0, tok, err
	}
	user := s.nextUser.Load()
	b := s.db.NewBatch()
	defer b.Close()
	b.Set(metaNextUser, binary.BigEndian.AppendUint64(nil, user+1), nil)
	b.Set(nameKey(name), binary.BigEndian.AppendUint64(nil, user), nil)
	b.Set(userKey(user), rec, nil)
	tok, err = addToken(b, user)
	if err != nil {
		return 0, tok, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return 0, tok, fmt.Errorf("account: register %s: %w", name, err)
	}
	s.nextUser.Store(user + 1)
	return user, tok, nil
}

// Login checks a password and issues a session token.
func (s *Store) Login(name, password []byte) (uint64, codec.Token, error) {
	var tok codec.Token
	user, err := s.lookup(name)
	if err != nil {
		return 0, tok, err
	}
	rec, err := s.record(user)
	if err != nil {
		return 0, tok, err
	}
	if err := s.verify(rec, password); err != nil {
		return 0, tok, err
	}
	b := s.db.NewBatch()
	defer b.Close()
	if tok, err = addToken(b, user); err != nil {
		return 0, tok, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return 0, tok, fmt.Errorf("account: login %s: %w", name, err)
	}
	return user, tok, nil
}

// Resume returns the user a token belongs to. It costs one SHA-256 and one
// point lookup.
func (s *Store) Resume(tok codec.Token) (uint64, error) {
	return s.userAt(tokenKey(tok), ErrInvalidToken, "resume")
}

// Revoke deletes one token (LOGOUT).
func (s *Store) Revoke(user uint64, tok codec.Token) error {
	h := sha256.Sum256(tok[:])
	b := s.db.NewBatch()
	defer b.Close()
	b.Delete(append([]byte{store.PrefixToken}, h[:]...), nil)
	b.Delete(userTokenKey(user, h), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("account: revoke: %w", err)
	}
	return nil
}

// ChangePassword checks the old password, stores the new one, revokes
// every token of the user and issues a new one.
func (s *Store) ChangePassword(user uint64, old, new []byte) (codec.Token, error) {
	var tok codec.Token
	if err := codec.ValidatePassword(new); err != nil {
		return tok, fmt.Errorf("%w: %w", ErrInvalidPassword, err)
	}
	rec, err := s.record(user)
	if err != nil {
		return tok, err
	}
	if err := s.verify(rec, old); err != nil {
		return tok, err
	}
	name := recordName(rec)
	fresh, err := s.newRecord(name, new)
	if err != nil {
		return tok, err
	}
	b := s.db.NewBatch()
	defer b.Close()
	b.Set(userKey(user), fresh, nil)
	if err := s.deleteTokens(b, user); err != nil {
		return tok, err
	}
	if tok, err = addToken(b, user); err != nil {
		return tok, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return tok, fmt.Errorf("account: change password: %w", err)
	}
	return tok, nil
}

// LookupName returns the id registered under name.
func (s *Store) LookupName(name []byte) (uint64, error) { return s.lookup(name) }

// Name returns the name of user.
func (s *Store) Name(user uint64) ([]byte, error) {
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

func (s *Store) deleteTokens(b *pebble.Batch, user uint64) error {
	lo := binary.BigEndian.AppendUint64([]byte{store.PrefixUserTokens}, user)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: store.PrefixEnd(lo)})
	if err != nil {
		return fmt.Errorf("account: list tokens: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		b.Delete(append([]byte{store.PrefixToken}, k[9:]...), nil)
		b.Delete(append([]byte(nil), k...), nil)
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

func nameKey(name []byte) []byte { return append([]byte{store.PrefixName}, name...) }

func userKey(user uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{store.PrefixUser}, user)
}

func tokenKey(tok codec.Token) []byte {
	h := sha256.Sum256(tok[:])
	return append([]byte{store.PrefixToken}, h[:]...)
}

func userTokenKey(user uint64, h [32]byte) []byte {
	k := binary.BigEndian.AppendUint64([]byte{store.PrefixUserTokens}, user)
	return append(k, h[:]...)
}

// addToken adds a fresh token for user to b and returns it.
func addToken(b *pebble.Batch, user uint64) (codec.Token, error) {
	var tok codec.Token
	if _, err := rand.Read(tok[:]); err != nil {
		return tok, fmt.Errorf("account: token: %w", err)
	}
	h := sha256.Sum256(tok[:])
	v := binary.BigEndian.AppendUint64(nil, user)
	v = binary.BigEndian.AppendUint64(v, uint64(time.Now().UnixMilli()))
	b.Set(append([]byte{store.PrefixToken}, h[:]...), v, nil)
	b.Set(userTokenKey(user, h), nil, nil)
	return tok, nil
}
