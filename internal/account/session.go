package account

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
	"github.com/cockroachdb/pebble/v2"
)

// Sessions. Every REGISTER, LOGIN and PASSWORD starts a session: a stable
// id, with one current token. RESUME rotates it: the presented token is
// replaced by a fresh one, which WELCOME carries, and the old one keeps
// working for Config.Grace only (so a client whose WELCOME was lost to a
// dropped connection can still resume with what it holds), then never
// again. A copied token is thus good until its owner's next reconnect, and
// using it shows: one of the two ends up with a dead token. Rotation on
// every RESUME rather than on a schedule because a RESUME already writes
// (the session's last seen time and address), so rotation costs no extra
// write, and a schedule would leave a copied token working for its whole
// period.
//
// A session whose last use is older than Config.IdleExpiry is dead: its
// tokens are refused (ErrInvalidToken; the detail says expired) and it is
// deleted when next touched (a RESUME with its token, or a listing), or
// by the sweep (sweep.go), whichever comes first.
//
// Keys:
//
//	'k' | sha256(token) (32)        -> user (8) | created (8) | session (8)
//	'K' | user (8) | session (8)    -> session record (below)
//
// A user's tokens are found through its session records (each names its
// current and previous token), so a RESUME writes three records: the
// fresh token, the session, and the deletion of the token rotated out
// of grace. Format 2 also kept an index 'K' | user | sha256(token) of
// every token, two more records per RESUME; format 3 dropped it.
//
// Session record:
//
//	| version (1) = 1 | created (8) | last seen (8) | current sha256 (32) |
//	| previous sha256 (32, zero: none) | previous valid until (8) | addr str8 | label str8 |
//
// Times are unix milliseconds. Folders written before sessions (format 1)
// are migrated by the store (store.FormatVersion 2): each token becomes a
// session of its own, last seen at the migration; format 3 deletes the
// token index.

// Errors of the session operations.
var (
	// ErrUnknownSession: no such session of this user (or it ended).
	ErrUnknownSession = errors.New("account: unknown session")
	// ErrTokenExpired is an ErrInvalidToken for a session idle too long.
	ErrTokenExpired = fmt.Errorf("%w: session expired after being idle", ErrInvalidToken)
)

// Issued is what a successful REGISTER, LOGIN, RESUME or PASSWORD gives:
// the user, the token WELCOME carries and the session it belongs to.
type Issued struct {
	User    uint64
	Token   codec.Token
	Session uint64
}

// SessionInfo is one session as SESSIONS lists it.
type SessionInfo struct {
	ID       uint64
	Created  time.Time
	LastSeen time.Time
	Addr     string
	Label    []byte
}

const sessionVersion = 1

type session struct {
	created, lastSeen uint64
	current, prev     [32]byte
	prevUntil         uint64
	addr, label       []byte
}

func (r *session) encode() []byte {
	b := make([]byte, 0, 1+8+8+32+32+8+2+len(r.addr)+len(r.label))
	b = append(b, sessionVersion)
	b = binary.BigEndian.AppendUint64(b, r.created)
	b = binary.BigEndian.AppendUint64(b, r.lastSeen)
	b = append(b, r.current[:]...)
	b = append(b, r.prev[:]...)
	b = binary.BigEndian.AppendUint64(b, r.prevUntil)
	b = append(append(b, byte(len(r.addr))), r.addr...)
	return append(append(b, byte(len(r.label))), r.label...)
}

func decodeSession(v []byte) (*session, error) {
	const fixed = 1 + 8 + 8 + 32 + 32 + 8
	if len(v) < fixed+2 || v[0] != sessionVersion {
		return nil, errors.New("account: corrupt session record")
	}
	r := &session{created: binary.BigEndian.Uint64(v[1:]), lastSeen: binary.BigEndian.Uint64(v[9:]),
		prevUntil: binary.BigEndian.Uint64(v[81:])}
	copy(r.current[:], v[17:])
	copy(r.prev[:], v[49:])
	p := v[fixed:]
	n := int(p[0])
	if len(p) < 1+n+1 || len(p) != 1+n+1+int(p[1+n]) {
		return nil, errors.New("account: corrupt session record")
	}
	r.addr = append([]byte(nil), p[1:1+n]...)
	r.label = append([]byte(nil), p[2+n:]...)
	return r, nil
}

func sessionKey(user, id uint64) []byte {
	k := binary.BigEndian.AppendUint64([]byte{store.PrefixUserTokens}, user)
	return binary.BigEndian.AppendUint64(k, id)
}

// lockUser serializes the read-modify-write of user's session records.
func (s *Store) lockUser(user uint64) func() {
	m := &s.userLocks[user%uint64(len(s.userLocks))]
	m.Lock()
	return m.Unlock
}

func (s *Store) nowMs() uint64 { return uint64(s.now().UnixMilli()) }

// clip keeps an address within a str8.
func clip(addr string) []byte {
	if len(addr) > 255 {
		addr = addr[:255]
	}
	return []byte(addr)
}

// startSession adds to b a new session for user, from addr, with a fresh
// token.
func (s *Store) startSession(b *pebble.Batch, user uint64, addr string) (Issued, error) {
	var id [8]byte
	for binary.BigEndian.Uint64(id[:]) == 0 {
		if _, err := rand.Read(id[:]); err != nil {
			return Issued{}, fmt.Errorf("account: session id: %w", err)
		}
	}
	sid := binary.BigEndian.Uint64(id[:])
	tok, h, err := addToken(b, user, sid)
	if err != nil {
		return Issued{}, err
	}
	now := s.nowMs()
	r := &session{created: now, lastSeen: now, current: h, addr: clip(addr)}
	b.Set(sessionKey(user, sid), r.encode(), nil)
	return Issued{User: user, Token: tok, Session: sid}, nil
}

// readSession returns user's session sid, or nil if there is none.
func (s *Store) readSession(user, sid uint64) (*session, error) {
	v, closer, err := s.db.Get(sessionKey(user, sid))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("account: read session: %w", err)
	}
	defer closer.Close()
	return decodeSession(v)
}

// dropSession adds to b the deletion of a session and its tokens.
func dropSession(b *pebble.Batch, user, sid uint64, r *session) {
	b.Delete(sessionKey(user, sid), nil)
	for _, h := range [][32]byte{r.current, r.prev} {
		if h != ([32]byte{}) {
			dropToken(b, user, h)
		}
	}
}

func dropToken(b *pebble.Batch, user uint64, h [32]byte) {
	b.Delete(append([]byte{store.PrefixToken}, h[:]...), nil)
}

func (s *Store) expired(r *session, now uint64) bool {
	return now > r.lastSeen && now-r.lastSeen > uint64(s.cfg.IdleExpiry.Milliseconds())
}

// tokenSession finds the session of token tok (h its SHA-256), which
// belongs to TokenUser(tok) if to anyone: its id and record, or a nil
// record when the token's record names a session that is gone. The token names its session (tokenSessionID), so
// one read of that session's record, which must hold h as its current or
// previous token, finds it; that read was needed anyway, and the read of
// the token's own record it saves was a fifth of a RESUME's CPU (a
// random key in a large memtable). A token from before tokens named
// their session, or one its claimed session does not know, is looked up
// through its record, as before; that record must be the same user's.
func (s *Store) tokenSession(tok codec.Token, h [32]byte) (uint64, *session, error) {
	user := TokenUser(tok)
	if sid := tokenSessionID(tok); sid != 0 {
		r, err := s.readSession(user, sid)
		if err != nil {
			return 0, nil, err
		}
		if r != nil && (h == r.current || h == r.prev) {
			return sid, r, nil
		}
	}
	owner, sid, err := s.tokenRecord(h)
	if err != nil {
		return 0, nil, err
	}
	if owner != user {
		return 0, nil, ErrInvalidToken // its first bytes were not its user's
	}
	r, err := s.readSession(user, sid)
	return sid, r, err
}

// tokenRecord reads a token's record: its user and session.
func (s *Store) tokenRecord(h [32]byte) (user, sid uint64, err error) {
	v, closer, err := s.db.Get(append([]byte{store.PrefixToken}, h[:]...))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, 0, ErrInvalidToken
	}
	if err != nil {
		return 0, 0, fmt.Errorf("account: read token: %w", err)
	}
	defer closer.Close()
	if len(v) != 24 {
		return 0, 0, fmt.Errorf("account: token record of %d bytes (a folder not migrated?)", len(v))
	}
	return binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[16:]), nil
}

// Resume checks a token and rotates it: the session gets a fresh token
// (returned) and the presented one keeps working for Config.Grace. A token
// presented again within its grace (its WELCOME was lost) rotates again
// from it, and the token issued in between, which nobody received, dies.
// The session's last seen time and address are updated. The write is
// synced: the client will hold only the new token.
func (s *Store) Resume(tok codec.Token, addr string) (Issued, error) {
	h := sha256.Sum256(tok[:])
	user := TokenUser(tok)
	if s.Deleted(user) { // a token a login issued while the deletion began
		return Issued{}, ErrInvalidToken
	}
	defer s.lockUser(user)()
	sid, r, err := s.tokenSession(tok, h)
	if err != nil {
		return Issued{}, err
	}
	b := s.db.NewBatch()
	defer b.Close()
	now := s.nowMs()
	// A refused token is forgotten (its record, or its expired session),
	// so it costs no lookup of a session again.
	refuse := func(why error) (Issued, error) {
		if why == ErrTokenExpired {
			dropSession(b, user, sid, r)
		} else {
			dropToken(b, user, h)
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			return Issued{}, fmt.Errorf("account: resume: %w", err)
		}
		return Issued{}, why
	}
	switch {
	case r == nil:
		return refuse(ErrInvalidToken)
	case s.expired(r, now):
		return refuse(ErrTokenExpired)
	case h == r.current:
		if r.prev != ([32]byte{}) {
			dropToken(b, user, r.prev)
		}
		r.prev, r.prevUntil = h, now+uint64(s.cfg.Grace.Milliseconds())
	case h == r.prev && now < r.prevUntil:
		dropToken(b, user, r.current) // issued, never received
	default:
		return refuse(ErrInvalidToken) // rotated out, its grace over
	}
	fresh, fh, err := addToken(b, user, sid)
	if err != nil {
		return Issued{}, err
	}
	r.current, r.lastSeen, r.addr = fh, now, clip(addr)
	b.Set(sessionKey(user, sid), r.encode(), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return Issued{}, fmt.Errorf("account: resume: %w", err)
	}
	return Issued{User: user, Token: fresh, Session: sid}, nil
}

// Check reports the user a token belongs to if it would resume, without
// rotating it.
func (s *Store) Check(tok codec.Token) (uint64, error) {
	h := sha256.Sum256(tok[:])
	user := TokenUser(tok)
	_, r, err := s.tokenSession(tok, h)
	switch {
	case err != nil:
		return 0, err
	case r == nil, s.Deleted(user):
		return 0, ErrInvalidToken
	case s.expired(r, s.nowMs()):
		return 0, ErrTokenExpired
	case h == r.current, h == r.prev && s.nowMs() < r.prevUntil:
		return user, nil
	}
	return 0, ErrInvalidToken
}

// Sessions lists user's live sessions, most recently seen first; expired
// ones are deleted on the way.
func (s *Store) Sessions(user uint64) ([]SessionInfo, error) {
	defer s.lockUser(user)()
	lo := binary.BigEndian.AppendUint64([]byte{store.PrefixUserTokens}, user)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: store.PrefixEnd(lo)})
	if err != nil {
		return nil, fmt.Errorf("account: list sessions: %w", err)
	}
	b := s.db.NewBatch()
	defer b.Close()
	now := s.nowMs()
	var out []SessionInfo
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != 17 {
			continue // not a session record (a format 2 token index key)
		}
		sid := binary.BigEndian.Uint64(k[9:])
		r, err := decodeSession(it.Value())
		if err != nil {
			it.Close()
			return nil, fmt.Errorf("account: session %x of user %d: %w", sid, user, err)
		}
		if s.expired(r, now) {
			dropSession(b, user, sid, r)
			continue
		}
		out = append(out, SessionInfo{ID: sid, Created: time.UnixMilli(int64(r.created)),
			LastSeen: time.UnixMilli(int64(r.lastSeen)), Addr: string(r.addr), Label: r.label})
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, fmt.Errorf("account: list sessions: %w", err)
	}
	if !b.Empty() {
		if err := b.Commit(pebble.NoSync); err != nil {
			return nil, fmt.Errorf("account: drop expired sessions: %w", err)
		}
	}
	slices.SortFunc(out, func(a, b SessionInfo) int {
		if c := b.LastSeen.Compare(a.LastSeen); c != 0 {
			return c
		}
		return bytes.Compare(binary.BigEndian.AppendUint64(nil, a.ID), binary.BigEndian.AppendUint64(nil, b.ID))
	})
	return out, nil
}

// EndSession deletes one of user's sessions and its tokens, synced: once
// it returns, neither token resumes.
func (s *Store) EndSession(user, sid uint64) error {
	defer s.lockUser(user)()
	r, err := s.readSession(user, sid)
	if err != nil {
		return err
	}
	if r == nil {
		return ErrUnknownSession
	}
	b := s.db.NewBatch()
	defer b.Close()
	dropSession(b, user, sid, r)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("account: end session: %w", err)
	}
	return nil
}

// Label names a session (a device name, from its client).
func (s *Store) Label(user, sid uint64, label []byte) error {
	return s.updateSession(user, sid, pebble.NoSync, func(r *session) { r.label = append([]byte(nil), label...) })
}

// Seen records that a session was in use now (its connection ended), so
// that idle expiry counts from there.
func (s *Store) Seen(user, sid uint64) error {
	now := s.nowMs()
	return s.updateSession(user, sid, pebble.NoSync, func(r *session) { r.lastSeen = max(r.lastSeen, now) })
}

func (s *Store) updateSession(user, sid uint64, opts *pebble.WriteOptions, change func(*session)) error {
	defer s.lockUser(user)()
	r, err := s.readSession(user, sid)
	if err != nil {
		return err
	}
	if r == nil {
		return ErrUnknownSession
	}
	change(r)
	if err := s.db.Set(sessionKey(user, sid), r.encode(), opts); err != nil {
		return fmt.Errorf("account: update session: %w", err)
	}
	return nil
}
