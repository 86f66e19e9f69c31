package codec

// Sizes of a Web Push subscription's keys (RFC 8291): the user agent's
// P-256 public key, uncompressed, and its authentication secret.
const (
	PushKeyLen  = 65
	PushAuthLen = 16
)

// MaxPushSubs bounds PUSH_SUBS' list: one user's subscriptions.
const MaxPushSubs = 64

// PushSubscribe asks the server to push to a Web Push endpoint while the
// user is offline; OK answers it. Device is 1 until accounts have several
// devices.
type PushSubscribe struct {
	Req      uint32
	Device   uint32
	Endpoint []byte // the push service URL the browser or app was given
	P256dh   []byte // PushKeyLen bytes
	Auth     []byte // PushAuthLen bytes
}

// PushList asks for the sender's subscriptions; PUSH_SUBS answers it.
type PushList struct {
	Req uint32
}

// PushSub is one subscription as PUSH_SUBS lists it. The keys are not
// sent back: the client holds them.
type PushSub struct {
	Device   uint32
	Created  uint64 // unix milliseconds
	Endpoint []byte
}

// PushSubs answers PUSH_LIST. Key is the server's VAPID public key
// (uncompressed P-256, 65 bytes; empty when push is off): the
// applicationServerKey an app hands its push service when it subscribes.
type PushSubs struct {
	Req  uint32
	Key  []byte
	Subs []PushSub
}

// PushRemove deletes the subscription of one device; OK answers it.
type PushRemove struct {
	Req    uint32
	Device uint32
}

func (w writer) pushSubs(subs []PushSub) writer {
	n := min(len(subs), MaxPushSubs)
	w = w.u16(uint16(n))
	for _, s := range subs[:n] {
		w = w.u32(s.Device).u64(s.Created).bytes16(s.Endpoint)
	}
	return w
}

// pushSubs decodes PUSH_SUBS' list; like groups it allocates.
func (r *reader) pushSubs(v *[]PushSub) *reader {
	n := r.count16(14, "subscriptions")
	if r.err == nil && n > MaxPushSubs {
		r.fail("too many subscriptions")
	}
	*v = (*v)[:0]
	for i := 0; i < n && r.err == nil; i++ {
		var s PushSub
		r.u32(&s.Device, "device").u64(&s.Created, "created").bytes16(&s.Endpoint, "endpoint")
		*v = append(*v, s)
	}
	return r
}
