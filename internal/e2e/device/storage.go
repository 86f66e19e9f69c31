package device

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// What a device keeps, as keys of the caller's key/value table. Values
// are raw bytes; u32 is big-endian. All of it is secret.
//
//	e2e/self/identity        [32] X25519 identity private key
//	e2e/self/signed          u32 id | [32] signed prekey private key
//	e2e/self/last            u32 id | [64] ML-KEM-1024 seed (last-resort key)
//	e2e/self/next            u32 the next prekey id (ids are never reused)
//	e2e/self/published       u8 1 once the first upload was answered
//	e2e/self/signed-at, e2e/oldspk/ID: signed prekey rotation (rotation.go)
//	e2e/ec/ID                [32] one-time EC prekey private key
//	e2e/kem/ID               [64] one-time ML-KEM seed
//	e2e/peer/USER            [32] pinned identity key | u8 flags (1 verified,
//	                         2 changed: a new key waits for /accept) | [32] new key if 2
//	e2e/session/USER         u8 n | n × (u32 len | session.Marshal)   newest first
//	e2e/sender/GROUP         senderkey.Sender.Marshal (this device's chain)
//	e2e/holds/GROUP/USER     u8 1: USER has this device's current chain
//	e2e/recv/GROUP/USER      senderkey.Receiver.Marshal
//
// ID, USER and GROUP are decimal, zero-padded to 20 digits so that keys
// sort by number.
const (
	keyIdentity  = "e2e/self/identity"
	keySigned    = "e2e/self/signed"
	keyLast      = "e2e/self/last"
	keyNext      = "e2e/self/next"
	keyPublished = "e2e/self/published"
)

func num(n uint64) string { return fmt.Sprintf("%020d", n) }

func keyEC(id uint32) string      { return "e2e/ec/" + num(uint64(id)) }
func keyKEM(id uint32) string     { return "e2e/kem/" + num(uint64(id)) }
func keyPeer(u uint64) string     { return "e2e/peer/" + num(u) }
func keySession(u uint64) string  { return "e2e/session/" + num(u) }
func keySender(g uint64) string   { return "e2e/sender/" + num(g) }
func keyHolds(g, u uint64) string { return "e2e/holds/" + num(g) + "/" + num(u) }
func keyRecv(g, u uint64) string  { return "e2e/recv/" + num(g) + "/" + num(u) }
func prefixHolds(g uint64) string { return "e2e/holds/" + num(g) + "/" }
func prefixRecv(g uint64) string  { return "e2e/recv/" + num(g) + "/" }

var errMissing = errors.New("e2e: no keys stored")

func loadIdentity(tx Tx) (*ecdh.PrivateKey, error) {
	b, ok, err := tx.Get(keyIdentity)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errMissing
	}
	k, err := ecdh.X25519().NewPrivateKey(b)
	return k, wrap("identity key", err)
}

// nextID hands out prekey ids, never twice.
func nextID(tx Tx) (uint32, error) {
	b, ok, err := tx.Get(keyNext)
	if err != nil {
		return 0, err
	}
	id := uint32(1)
	if ok && len(b) == 4 {
		id = binary.BigEndian.Uint32(b)
	}
	return id, tx.Put(keyNext, binary.BigEndian.AppendUint32(nil, id+1))
}

// newLongLived makes and stores an identity key, a signed prekey and a
// last-resort key.
func newLongLived(tx Tx, now time.Time) (*ecdh.PrivateKey, error) {
	ik, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, wrap("identity key", err)
	}
	if err := tx.Put(keyIdentity, ik.Bytes()); err != nil {
		return nil, err
	}
	if err := newSigned(tx, now); err != nil {
		return nil, err
	}
	return ik, newLastResort(tx)
}

// newLastResort makes and stores the last-resort key.
func newLastResort(tx Tx) error {
	lr, err := mlkem.GenerateKey1024()
	if err != nil {
		return wrap("last-resort key", err)
	}
	id, err := nextID(tx)
	if err != nil {
		return err
	}
	return tx.Put(keyLast, append(binary.BigEndian.AppendUint32(nil, id), lr.Bytes()...))
}

func loadSigned(tx Tx) (uint32, *ecdh.PrivateKey, error) {
	b, ok, err := tx.Get(keySigned)
	if err != nil {
		return 0, nil, err
	}
	if !ok || len(b) != 4+32 {
		return 0, nil, errMissing
	}
	k, err := ecdh.X25519().NewPrivateKey(b[4:])
	return binary.BigEndian.Uint32(b), k, wrap("signed prekey", err)
}

func loadLast(tx Tx) (uint32, *mlkem.DecapsulationKey1024, error) {
	b, ok, err := tx.Get(keyLast)
	if err != nil {
		return 0, nil, err
	}
	if !ok || len(b) != 4+mlkem.SeedSize {
		return 0, nil, errMissing
	}
	k, err := mlkem.NewDecapsulationKey1024(b[4:])
	return binary.BigEndian.Uint32(b), k, wrap("last-resort key", err)
}
