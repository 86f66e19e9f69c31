// Package device is one chat device's end-to-end encryption: it owns the
// device's keys (identity, signed prekey, one-time EC and ML-KEM prekeys,
// last-resort key), publishes them to the server's prekey directory,
// starts sessions from fetched bundles, seals outgoing bodies into
// envelopes and opens incoming ones, pins each contact's identity key,
// and keeps sender keys for groups.
//
// Every call that changes state takes a Tx: the caller runs it in the
// same database transaction as the message it stores, so a session
// never moves on without the message that moved it (and the other way
// round). A call that fails leaves the Tx's data unchanged, as the
// e2e packages do for their in-memory state; the caller may still commit
// what else it wrote (a "could not decrypt" note, say).
//
// The layout of what is kept is in storage.go.
package device

import (
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/e2e/ratchet"
)

// Tx is the key/value view of one database transaction (history.Tx).
type Tx interface {
	Get(key string) ([]byte, bool, error)
	Put(key string, value []byte) error
	Delete(key string) error
	Keys(prefix string) ([]string, error)
}

// Directory is the server's prekey directory (client.Conn).
type Directory interface {
	UploadKeys(ctx context.Context, up *codec.KeysUpload) (codec.KeysCounts, error)
	FetchKeys(ctx context.Context, user uint64, dev uint16) ([]codec.Bundle, error)
	CheckKeys(ctx context.Context, digest codec.Digest) (bool, error)
}

// Updater runs a function in one transaction (history.Store.Update,
// adapted).
type Updater func(func(Tx) error) error

// Config sizes what a device publishes.
type Config struct {
	// EC and KEM are how many one-time prekeys of each kind an upload
	// carries (the first one, and each refill after KEYS_LOW). Defaults
	// 100 and 10, Signal's batch and the directory's default bounds.
	EC, KEM int
	// Ratchet bounds skipped message keys; zero means the defaults.
	Ratchet ratchet.Config
	// SignedPreKeyPeriod is the age at which Publish replaces the signed
	// prekey (default 7 days); SignedPreKeyGrace is how long the replaced
	// private key still opens initiations made from older bundles
	// (default 30 days, the directory's bundles are fetched on demand but
	// messages may wait in an inbox that long).
	SignedPreKeyPeriod, SignedPreKeyGrace time.Duration
	// Now is the clock for rotation (default time.Now; tests inject one).
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.EC == 0 {
		c.EC = 100
	}
	if c.KEM == 0 {
		c.KEM = 10
	}
	if c.SignedPreKeyPeriod == 0 {
		c.SignedPreKeyPeriod = 7 * 24 * time.Hour
	}
	if c.SignedPreKeyGrace == 0 {
		c.SignedPreKeyGrace = 30 * 24 * time.Hour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

var (
	// ErrNoSession reports a contact with no session yet: fetch a bundle
	// (StartSession) first.
	ErrNoSession = errors.New("e2e: no session with this contact yet")
	// ErrUnaccepted reports a contact whose identity key changed and
	// who has not been accepted since (AcceptIdentity): nothing is
	// sealed to them until then.
	ErrUnaccepted = errors.New("e2e: the contact's identity key changed; not accepted yet")
	// ErrNoSenderKey reports a group message from a member whose sender
	// key never arrived.
	ErrNoSenderKey = errors.New("e2e: no sender key from this member")
)

// Device is one device's keys. Its methods may be called from several
// goroutines; each runs inside the caller's transaction, and the
// database serialises transactions.
type Device struct {
	cfg Config

	mu       sync.Mutex
	identity *ecdh.PrivateKey // cached: it never changes once made
}

// New returns a Device over the keys kept in the store; Init makes them
// the first time.
func New(cfg Config) *Device { return &Device{cfg: cfg.withDefaults()} }

// Init loads the device's identity key, making and storing a new one
// (with a signed prekey and a last-resort key) if the store has none.
// It reports whether it made one.
func (d *Device) Init(tx Tx) (created bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.identity != nil {
		return false, nil
	}
	k, err := loadIdentity(tx)
	if err == nil {
		d.identity = k
		return false, nil
	}
	if !errors.Is(err, errMissing) {
		return false, err
	}
	k, err = newLongLived(tx, d.cfg.Now())
	if err != nil {
		return false, err
	}
	d.identity = k
	return true, nil
}

func (d *Device) id() (*ecdh.PrivateKey, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.identity == nil {
		return nil, errors.New("e2e: device not initialised")
	}
	return d.identity, nil
}

// IdentityKey is the device's public identity key.
func (d *Device) IdentityKey() ([32]byte, error) {
	k, err := d.id()
	if err != nil {
		return [32]byte{}, err
	}
	return [32]byte(k.PublicKey().Bytes()), nil
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("e2e: %s: %w", what, err)
}
