package prekey

import (
	"encoding/binary"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
)

// The key space, all under store.PrefixPrekeys and the owner's id, so
// that Delete is one range deletion. Device 0 is no device: it holds the
// user-level tables.
//
//	'E' | user | dev (2) | 'a'                 -> long-lived keys (record, below)
//	'E' | user | dev (2) | 'c'                 -> ec u32 | kem u32: one-time keys stored
//	'E' | user | dev (2) | 'e' | id (4)        -> one-time EC prekey (32)
//	'E' | user | dev (2) | 'q' | id (4)        -> one-time KEM prekey (1568) | signature (64)
//	'E' | user | 0 0 | 'f' | fetcher (8)       -> unix ms (8) of its last fetch of user's keys
//	'E' | user | 0 0 | 'n' | other (8) | dev (2) -> empty: other's device changed identity, not yet told to user
//
// Ids are big-endian, so a device's one-time keys are taken lowest id
// first.
const (
	tabRecord  = 'a'
	tabCounts  = 'c'
	tabEC      = 'e'
	tabKEM     = 'q'
	tabFetcher = 'f'
	tabNotice  = 'n'
)

func userPrefix(user uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{store.PrefixPrekeys}, user)
}

func devPrefix(user uint64, dev uint16) []byte {
	return binary.BigEndian.AppendUint16(userPrefix(user), dev)
}

func devKey(user uint64, dev uint16, tab byte) []byte {
	return append(devPrefix(user, dev), tab)
}

func idKey(user uint64, dev uint16, tab byte, id uint32) []byte {
	return binary.BigEndian.AppendUint32(devKey(user, dev, tab), id)
}

func fetcherKey(user, fetcher uint64) []byte {
	return binary.BigEndian.AppendUint64(devKey(user, 0, tabFetcher), fetcher)
}

func noticeKey(user, other uint64, dev uint16) []byte {
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint64(devKey(user, 0, tabNotice), other), dev)
}

// record is a device's long-lived keys as stored:
// identity (32) | signed id (4) | signed (32) | signed sig (64) |
// last-resort id (4) | last resort (1568) | last-resort sig (64).
type record struct {
	Identity   codec.ECKey
	Signed     codec.SignedECKey
	LastResort codec.KEMPreKey
}

const recordLen = 32 + 4 + 32 + 64 + 4 + codec.KEMKeyLen + 64

func (r *record) encode() []byte {
	b := make([]byte, 0, recordLen)
	b = append(b, r.Identity[:]...)
	b = binary.BigEndian.AppendUint32(b, r.Signed.ID)
	b = append(append(b, r.Signed.Key[:]...), r.Signed.Sig[:]...)
	b = binary.BigEndian.AppendUint32(b, r.LastResort.ID)
	b = append(append(b, r.LastResort.Key...), r.LastResort.Sig[:]...)
	return b
}

// decodeRecord copies v (which may be Pebble's buffer) into a record.
func decodeRecord(v []byte) (record, bool) {
	var r record
	if len(v) != recordLen {
		return r, false
	}
	copy(r.Identity[:], v)
	v = v[32:]
	r.Signed.ID = binary.BigEndian.Uint32(v)
	copy(r.Signed.Key[:], v[4:])
	copy(r.Signed.Sig[:], v[36:])
	v = v[100:]
	r.LastResort.ID = binary.BigEndian.Uint32(v)
	r.LastResort.Key = append([]byte(nil), v[4:4+codec.KEMKeyLen]...)
	copy(r.LastResort.Sig[:], v[4+codec.KEMKeyLen:])
	return r, true
}

// Counts is how many one-time prekeys a device has left.
type Counts struct {
	EC, KEM int
}

func (c Counts) encode() []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, uint32(c.EC)), uint32(c.KEM))
}

func decodeCounts(v []byte) Counts {
	if len(v) != 8 {
		return Counts{}
	}
	return Counts{EC: int(binary.BigEndian.Uint32(v)), KEM: int(binary.BigEndian.Uint32(v[4:]))}
}
