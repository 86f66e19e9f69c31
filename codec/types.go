package codec

import "strconv"

// Type identifies a frame. Each constant's comment gives the direction
// (C = client to server, S = server to client) and the body layout.
type Type uint8

// Authentication and accounts.
const (
	TypeRegister Type = 0x01 // C: name str8 | password str8
	TypeLogin    Type = 0x02 // C: name str8 | password str8
	TypeResume   Type = 0x03 // C: token [32]
	TypeWelcome  Type = 0x04 // S: user u64 | token [32] | keepalive u16 | window u16 | max_body u32 | time u64
	TypeLogout   Type = 0x05 // C: (empty)
	TypePassword Type = 0x06 // C: old str8 | new str8
	TypeLookup   Type = 0x07 // C: req u32 | user u64 | name str8
	TypeUser     Type = 0x08 // S: req u32 | user u64 | name str8
	TypeOK       Type = 0x09 // S: req u32
)

// Messages, acknowledgements, receipts and typing.
const (
	TypeSend     Type = 0x10 // C: id [16] | flags u8 | to u64 | body bytes16
	TypeSent     Type = 0x11 // S: id [16] | time u64
	TypeDeliver  Type = 0x12 // S: seq u64 | id [16] | from u64 | group u64 | time u64 | body bytes16
	TypeAck      Type = 0x13 // C: seq u64
	TypeRead     Type = 0x14 // C: to u64 | group u64 | count u8 | ids [16]*count
	TypeReceipt  Type = 0x15 // S: seq u64 | kind u8 | by u64 | group u64 | time u64 | count u8 | ids [16]*count
	TypeTyping   Type = 0x16 // C: to u64 | flags u8 | state u8
	TypeIsTyping Type = 0x17 // S: from u64 | group u64 | state u8
	// SENT_DELIVERED is SENT and the delivered RECEIPT in one frame, for a
	// message its recipient acknowledged live, to a connection that asked
	// for it (OPTIONS): it has no seq and is not acknowledged.
	TypeSentDelivered Type = 0x18 // S: id [16] | time u64 | delivered u64
)

// Presence.
const (
	TypeSubscribe   Type = 0x20 // C: count u8 | users u64*count
	TypeUnsubscribe Type = 0x21 // C: count u8 | users u64*count
	TypePresence    Type = 0x22 // S: user u64 | state u8 | last_seen u64
	TypePrivacy     Type = 0x23 // C: flags u8
)

// Groups.
const (
	TypeGroupCreate Type = 0x30 // C: req u32 | name str8 | count u16 | users u64*count
	TypeGroupAdd    Type = 0x31 // C: req u32 | group u64 | count u16 | users u64*count
	TypeGroupRemove Type = 0x32 // C: req u32 | group u64 | count u16 | users u64*count
	TypeGroupLeave  Type = 0x33 // C: req u32 | group u64
	TypeGroupRename Type = 0x34 // C: req u32 | group u64 | name str8
	TypeGroupAdmin  Type = 0x35 // C: req u32 | group u64 | user u64 | admin u8
	TypeGroupGet    Type = 0x36 // C: req u32 | group u64
	TypeGroupList   Type = 0x37 // C: req u32
	TypeGroupInfo   Type = 0x38 // S: req u32 | group u64 | name str8 | count u16 | (user u64 | role u8)*count
	TypeGroups      Type = 0x39 // S: req u32 | count u16 | (group u64 | name str8)*count
	TypeGroupEvent  Type = 0x3A // S: seq u64 | group u64 | kind u8 | actor u64 | time u64 | name str8 | count u16 | users u64*count
)

// Blocking, contacts and account deletion.
const (
	TypeBlock         Type = 0x50 // C: req u32 | user u64
	TypeUnblock       Type = 0x51 // C: req u32 | user u64
	TypeListGet       Type = 0x52 // C: req u32 | list u8
	TypeList          Type = 0x53 // S: req u32 | list u8 | count u16 | users u64*count
	TypeContact       Type = 0x54 // C: req u32 | user u64 | on u8
	TypeGroupAdds     Type = 0x55 // C: req u32 | from u8
	TypeAccountDelete Type = 0x56 // C: req u32 | password str8
)

// Push subscriptions (Web Push, for when the user is offline).
const (
	TypePushSubscribe Type = 0x70 // C: req u32 | device u32 | endpoint bytes16 | p256dh str8 (65) | auth str8 (16)
	TypePushList      Type = 0x71 // C: req u32
	TypePushSubs      Type = 0x72 // S: req u32 | vapid_key str8 | count u16 | (device u32 | created u64 | endpoint bytes16)*count
	TypePushRemove    Type = 0x73 // C: req u32 | device u32
)

// Sessions: the tokens a user holds, one per logged-in device.
const (
	TypeSessions      Type = 0x58 // C: req u32
	TypeSessionList   Type = 0x59 // S: req u32 | count u16 | (session u64 | flags u8 | created u64 | last_seen u64 | addr str8 | label str8)*count
	TypeSessionRevoke Type = 0x5A // C: req u32 | session u64
	TypeSessionLabel  Type = 0x5B // C: req u32 | label str8
)

// Connection control.
const (
	TypePing   Type = 0x40 // C,S: nonce u64
	TypePong   Type = 0x41 // C,S: nonce u64
	TypeGoaway Type = 0x42 // S: retry_after_ms u32 | reason u8
	TypeKicked Type = 0x43 // S: reason u8
	// OPTIONS sets the connection's options (OptionFlags), answered by OK.
	TypeOptions Type = 0x44 // C: req u32 | flags u32
	TypeError   Type = 0x7F // S: code u16 | req u32 | id [16] | detail str8
)

// The prekey directory (end-to-end keys). A signed key is id u32 | key |
// sig [64]; an optional one is preceded by a presence u8.
const (
	TypeKeysUpload      Type = 0x60 // C: req u32 | flags u8 | identity [32] | signed? | last_resort? | ec_count u16 | (id u32 | key [32])*n | kem_count u8 | (id u32 | key [1568] | sig [64])*n
	TypeKeysCount       Type = 0x61 // C: req u32
	TypeKeysCounts      Type = 0x62 // S: req u32 | device u16 | ec u16 | kem u16
	TypeKeysFetch       Type = 0x63 // C: req u32 | user u64 | device u16 (0: all)
	TypeKeysBundle      Type = 0x64 // S: req u32 | user u64 | count u8 | bundle*count
	TypeKeysCheck       Type = 0x65 // C: req u32 | digest [32]
	TypeKeysLow         Type = 0x66 // S: device u16 | ec u16 | kem u16
	TypeIdentityChanged Type = 0x67 // S: user u64 | device u16
)

// Server key rotation (0x5C-0x5F).
const (
	TypeKeyRotate Type = 0x5C // S: old_key [32] | new_key [32] | valid_from u64 | signature [64]
)

var typeNames = [256]string{
	TypeRegister: "REGISTER", TypeLogin: "LOGIN", TypeResume: "RESUME", TypeWelcome: "WELCOME",
	TypeLogout: "LOGOUT", TypePassword: "PASSWORD", TypeLookup: "LOOKUP", TypeUser: "USER", TypeOK: "OK",
	TypeSend: "SEND", TypeSent: "SENT", TypeDeliver: "DELIVER", TypeAck: "ACK", TypeRead: "READ",
	TypeReceipt: "RECEIPT", TypeTyping: "TYPING", TypeIsTyping: "IS_TYPING", TypeSentDelivered: "SENT_DELIVERED",
	TypeSubscribe: "SUBSCRIBE", TypeUnsubscribe: "UNSUBSCRIBE", TypePresence: "PRESENCE", TypePrivacy: "PRIVACY",
	TypeGroupCreate: "GROUP_CREATE", TypeGroupAdd: "GROUP_ADD", TypeGroupRemove: "GROUP_REMOVE",
	TypeGroupLeave: "GROUP_LEAVE", TypeGroupRename: "GROUP_RENAME", TypeGroupAdmin: "GROUP_ADMIN",
	TypeGroupGet: "GROUP_GET", TypeGroupList: "GROUP_LIST", TypeGroupInfo: "GROUP_INFO", TypeGroups: "GROUPS",
	TypeGroupEvent: "GROUP_EVENT",
	TypeBlock:      "BLOCK", TypeUnblock: "UNBLOCK", TypeListGet: "LIST_GET", TypeList: "LIST",
	TypeContact: "CONTACT", TypeGroupAdds: "GROUP_ADDS", TypeAccountDelete: "ACCOUNT_DELETE",
	TypePing: "PING", TypePong: "PONG", TypeGoaway: "GOAWAY", TypeKicked: "KICKED", TypeOptions: "OPTIONS", TypeError: "ERROR",
	TypeKeysUpload: "KEYS_UPLOAD", TypeKeysCount: "KEYS_COUNT", TypeKeysCounts: "KEYS_COUNTS",
	TypeKeysFetch: "KEYS_FETCH", TypeKeysBundle: "KEYS_BUNDLE", TypeKeysCheck: "KEYS_CHECK",
	TypeKeysLow: "KEYS_LOW", TypeIdentityChanged: "IDENTITY_CHANGED",
	TypePushSubscribe: "PUSH_SUBSCRIBE", TypePushList: "PUSH_LIST", TypePushSubs: "PUSH_SUBS", TypePushRemove: "PUSH_REMOVE",
	TypeKeyRotate: "KEY_ROTATE",
	TypeSessions:  "SESSIONS", TypeSessionList: "SESSION_LIST", TypeSessionRevoke: "SESSION_REVOKE", TypeSessionLabel: "SESSION_LABEL",
}

// Known reports whether t is a frame type of protocol version 1.
func (t Type) Known() bool { return typeNames[t] != "" }

func (t Type) String() string {
	if n := typeNames[t]; n != "" {
		return n
	}
	return "0x" + strconv.FormatUint(uint64(t), 16)
}
