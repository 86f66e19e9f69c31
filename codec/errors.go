package codec

import (
	"errors"
	"fmt"
	"strconv"
)

// Decoding errors. Every error this package returns wraps one of these.
var (
	ErrMalformed   = errors.New("codec: malformed frame")
	ErrTooLarge    = errors.New("codec: frame too large")
	ErrUnknownType = errors.New("codec: unknown frame type")
	ErrBadPreamble = errors.New("codec: bad preamble")
	ErrVersion     = errors.New("codec: unsupported protocol version")
)

// FrameError says which frame and which byte a decoding error is about.
type FrameError struct {
	Type   Type
	Offset int // byte offset within the body, -1 when not applicable
	Detail string
	Err    error // one of the package sentinels
}

func (e *FrameError) Error() string {
	if e.Type == 0 {
		return e.Err.Error() + ": " + e.Detail
	}
	return fmt.Sprintf("%v: %v frame at body offset %d: %s", e.Err, e.Type, e.Offset, e.Detail)
}

func (e *FrameError) Unwrap() error { return e.Err }

// Code is the error code carried by an ERROR frame. Codes are stable: a
// client may switch on them. PROTOCOL.md lists what each means and whether
// the server closes the connection after sending it.
type Code uint16

const (
	// Protocol errors: the server sends ERROR and closes the connection.
	CodeMalformed       Code = 1 // a frame did not decode
	CodeTooLarge        Code = 2 // a frame's length exceeded the limit
	CodeUnknownType     Code = 3 // a frame type this server does not know
	CodeVersion         Code = 4 // the preamble's protocol version is not supported
	CodeBadPreamble     Code = 5 // the preamble was not "chatd"
	CodeEncryption      Code = 6 // plaintext transport refused: encryption required
	CodeWrongDirection  Code = 7 // a server-to-client frame type was sent by a client
	CodeHandshakeFailed Code = 8 // the Noise handshake failed

	// Session errors: the connection stays open unless noted.
	CodeNotAuthenticated Code = 10 // only REGISTER, LOGIN, RESUME and PING before WELCOME
	CodeAlreadyAuth      Code = 11 // a second REGISTER/LOGIN/RESUME on one connection
	CodeAuthPending      Code = 12 // a frame arrived while authentication was in progress
	CodeAuthTimeout      Code = 13 // not authenticated in time; the server closes

	// Account errors.
	CodeUnknownUser     Code = 20 // no such user name (or id)
	CodeWrongPassword   Code = 21 // the password does not match
	CodeNameTaken       Code = 22 // REGISTER with a name already in use
	CodeInvalidName     Code = 23 // a user name outside the allowed form
	CodeInvalidPassword Code = 24 // a password outside 8..128 bytes
	CodeInvalidToken    Code = 25 // RESUME with an unknown or revoked token
	CodeTooManyLogins   Code = 26 // login attempts rate-limited; retry later
	CodeBusy            Code = 27 // password hashing or the message store is saturated; retry later
	CodeStorageFull     Code = 28 // the server's disk is nearly full: the message was not stored; retry later

	// Messaging errors, referring to a SEND by its message id.
	CodeUnknownRecipient Code = 30 // SEND to a user id that does not exist
	CodeInboxFull        Code = 31 // the recipient's inbox is at its quota
	CodeBodyTooLarge     Code = 32 // body longer than the server's max_body
	CodeInvalidFlags     Code = 33 // reserved flag bits set
	CodeSelfSend         Code = 34 // SEND to oneself
	CodeBadAck           Code = 35 // ACK of a sequence number never delivered
	CodeNotDelivered     Code = 36 // READ of a message that was never delivered to the reader
	CodeDuplicateID      Code = 37 // a message id the sender already used for another recipient or body

	// Group errors, referring to a request by its req id or a SEND by its id.
	CodeUnknownGroup   Code = 40 // no such group, or not visible to you
	CodeNotMember      Code = 41 // you are not a member of the group
	CodeNotAdmin       Code = 42 // the operation needs a group admin
	CodeGroupFull      Code = 43 // the group would exceed its member limit
	CodeInvalidGroup   Code = 44 // bad group name or member list
	CodeAlreadyMember  Code = 45 // GROUP_ADD of a current member
	CodeLastAdmin      Code = 46 // the last admin cannot leave or step down while members remain
	CodeTooManyTargets Code = 47 // SUBSCRIBE beyond the per-connection limit

	// Blocking and account errors, referring to a request by its req id or
	// a SEND by its id.
	CodeYouBlocked   Code = 70 // SEND to a user you blocked: unblock first
	CodeAddRefused   Code = 71 // a group add naming a user who does not accept adds from you
	CodeListFull     Code = 72 // BLOCK or CONTACT beyond the per-user list limit
	CodeNotOnCluster Code = 74 // retired: no server sends it since blocking and deletion work on a cluster; reserved

	// Limits.
	CodeRateLimited  Code = 50 // frame or byte rate exceeded; the server closes
	CodeSlowConsumer Code = 51 // the client did not read fast enough; the server closes

	// Sessions and quotas.
	CodeInboxBytesFull Code = 75 // the message would take the recipient's inbox past its byte quota
	CodeUnknownSession Code = 76 // SESSION_REVOKE of a session id that is not one of yours (or has ended)

	// Server errors.
	CodeInternal       Code = 60 // the server failed; the request may be retried
	CodeShuttingDown   Code = 61 // the server is stopping; retry after GOAWAY's delay
	CodeUnknownOutcome Code = 62 // the server cannot tell whether the message was stored: resend it with DUP
	CodeUnavailable    Code = 63 // a cluster node this request needs did not answer; retry later

	// Prekey directory errors, referring to a request by its req id.
	CodeBadSignature  Code = 80 // a KEYS_UPLOAD signature does not verify against its identity key
	CodeKeysMismatch  Code = 81 // KEYS_CHECK: the server's long-lived keys differ (or there are none)
	CodeNoKeys        Code = 82 // KEYS_FETCH of a user or device with no keys uploaded
	CodeFetchLimited  Code = 83 // KEYS_FETCH of this target too often; retry later
	CodeInvalidKeys   Code = 84 // KEYS_UPLOAD breaks a rule: missing long-lived keys, id 0, repeated id, bad key
	CodeKeysFull      Code = 85 // KEYS_UPLOAD would store more one-time prekeys than the server allows
	CodeKeysClustered Code = 86 // retired: servers before the cluster directory refused it on a cluster node; none sends it now
	// Push subscription errors, referring to a request by its req id.
	CodePushNotHTTPS      Code = 90 // the endpoint is not an https URL (http only to loopback, where the server allows it)
	CodePushHostRefused   Code = 91 // the endpoint's host is not on the server's list of push services
	CodePushBadKey        Code = 92 // p256dh is not a point on P-256
	CodePushUnknownDevice Code = 93 // PUSH_REMOVE of a device with no subscription
	CodePushBadDevice     Code = 94 // a device id other than 1 (one device per account, for now)
	CodePushDisabled      Code = 95 // this server sends no pushes
	CodePushNotHome       Code = 96 // retired: servers before PUSH_* were forwarded to the home node sent it away from home
	// Server key rotation (78-79).
	CodeKeyRetired Code = 78 // the server key the client pinned was retired: verify the server's key again
)

var codeNames = map[Code]string{
	CodeMalformed: "malformed frame", CodeTooLarge: "frame too large", CodeUnknownType: "unknown frame type",
	CodeVersion: "unsupported protocol version", CodeBadPreamble: "bad preamble",
	CodeEncryption: "encryption required", CodeWrongDirection: "frame not allowed from a client",
	CodeHandshakeFailed:  "handshake failed",
	CodeNotAuthenticated: "not authenticated", CodeAlreadyAuth: "already authenticated",
	CodeAuthPending: "authentication in progress", CodeAuthTimeout: "authentication timeout",
	CodeUnknownUser: "unknown user", CodeWrongPassword: "wrong password", CodeNameTaken: "name taken",
	CodeInvalidName: "invalid name", CodeInvalidPassword: "invalid password", CodeInvalidToken: "invalid token",
	CodeTooManyLogins: "too many login attempts", CodeBusy: "server busy", CodeStorageFull: "storage full",
	CodeUnknownRecipient: "unknown recipient", CodeInboxFull: "recipient inbox full",
	CodeBodyTooLarge: "body too large", CodeInvalidFlags: "invalid flags", CodeSelfSend: "cannot send to self",
	CodeBadAck: "ack beyond delivered", CodeNotDelivered: "not delivered to you", CodeDuplicateID: "message id already used",
	CodeUnknownGroup: "unknown group", CodeNotMember: "not a group member", CodeNotAdmin: "not a group admin",
	CodeGroupFull: "group full", CodeInvalidGroup: "invalid group", CodeAlreadyMember: "already a member",
	CodeLastAdmin: "last admin", CodeTooManyTargets: "too many subscriptions",
	CodeYouBlocked: "you blocked this user", CodeAddRefused: "group add refused", CodeListFull: "list full",
	CodeNotOnCluster: "not available on a cluster",
	CodeRateLimited:  "rate limited", CodeSlowConsumer: "slow consumer",
	CodeInboxBytesFull: "recipient inbox byte quota reached", CodeUnknownSession: "unknown session",
	CodeInternal: "internal error", CodeShuttingDown: "shutting down", CodeUnknownOutcome: "outcome unknown", CodeUnavailable: "node unavailable",
	CodeBadSignature: "bad key signature", CodeKeysMismatch: "keys mismatch", CodeNoKeys: "no keys",
	CodeFetchLimited: "key fetches rate-limited", CodeInvalidKeys: "invalid keys", CodeKeysFull: "too many prekeys",
	CodeKeysClustered: "prekeys not served in a cluster (retired)",
	CodePushNotHTTPS:  "push endpoint not https", CodePushHostRefused: "push service not allowed",
	CodePushBadKey: "bad push key", CodePushUnknownDevice: "no push subscription for that device",
	CodePushBadDevice: "bad push device", CodePushDisabled: "push disabled", CodePushNotHome: "push subscriptions are at the home node (retired)",
	CodeKeyRetired: "server key retired",
}

func (c Code) String() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return "code " + strconv.Itoa(int(c))
}

// CodeOf maps a decoding error to the code the server reports for it.
func CodeOf(err error) Code {
	switch {
	case errors.Is(err, ErrTooLarge):
		return CodeTooLarge
	case errors.Is(err, ErrUnknownType):
		return CodeUnknownType
	case errors.Is(err, ErrVersion):
		return CodeVersion
	case errors.Is(err, ErrBadPreamble):
		return CodeBadPreamble
	default:
		return CodeMalformed
	}
}
