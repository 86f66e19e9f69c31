package codec

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the test vectors section of ../PROTOCOL.md")

var (
	vecID    = MsgID{0x01, 0x8f, 0x3a, 0x5c, 0x7b, 0x10, 0x4e, 0x21, 0x9a, 0x33, 0xc4, 0x55, 0x66, 0x77, 0x88, 0x99}
	vecID2   = MsgID{0x01, 0x8f, 0x3a, 0x5c, 0x7b, 0x10, 0x4e, 0x21, 0x9a, 0x33, 0xc4, 0x55, 0x66, 0x77, 0x88, 0x9a}
	vecToken = Token{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28}
	vecTime  = uint64(1795000000000) // 2026-11-18T...Z in unix milliseconds
	// vecP256dh is 0x04 then bytes 01 to 40: shaped like an uncompressed
	// P-256 point (the codec checks only the length; the server checks the
	// curve). vecAuth is bytes a0 to af.
	vecP256dh = append([]byte{4}, seq(1, 64)...)
	vecAuth   = seq(0xa0, 16)
)

// vecKey, vecSig and vecKEM are recognisable stand-ins for keys: the
// bytes count up from a start.
func vecKey(start byte) (k ECKey) {
	for i := range k {
		k[i] = start + byte(i)
	}
	return k
}

func vecSig(start byte) (s Signature) {
	for i := range s {
		s[i] = start + byte(i)
	}
	return s
}

func vecKEM() []byte {
	k := make([]byte, KEMKeyLen)
	for i := range k {
		k[i] = byte(i)
	}
	return k
}

// seq returns n bytes counting up from first.
func seq(first byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = first + byte(i)
	}
	return b
}

// The rotation vector: the old key is section 8's server static key
// (private 10 11 .. 2f), the new one has private key 50 51 .. 6f, and the
// signature is XEdDSA's with Z all zeros (real signatures take Z from a
// secure random source). internal/secure checks that it verifies.
var (
	vecOldKey    = PublicKey(mustHex("d89e3bad79437dbed9f843418304f460ff05c7fe81fe4a9577a804cb9367ff66"))
	vecNewKey    = PublicKey(mustHex("392d174a38b3b1beafaf1fe824870841c5fa531bc6eafdb6402c124664488c1c"))
	vecRotateSig = Signature(mustHex("9d76fcb633e6eb18679650e1f9f10d19a82ee66824989e4f99f99b67c887ddc63b895e41b52ab18984101e6294ae70b059c1e3fa9f612a079129ae108a9c2503"))
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// vectors holds one example of every frame type. PROTOCOL.md shows each
// with its bytes annotated field by field; TestVectors keeps the two equal.
var vectors = []struct {
	name  string
	frame Frame
}{
	{"REGISTER alice / correct horse", &Register{Credentials{Name: []byte("alice"), Password: []byte("correct horse")}}},
	{"LOGIN alice / correct horse", &Login{Credentials{Name: []byte("alice"), Password: []byte("correct horse")}}},
	{"RESUME", &Resume{Token: vecToken}},
	{"WELCOME user 1", &Welcome{User: 1, Token: vecToken, Keepalive: 180, Window: 256, MaxBody: 65000, Time: vecTime}},
	{"LOGOUT", &Logout{}},
	{"PASSWORD", &Password{Old: []byte("correct horse"), New: []byte("battery staple")}},
	{"LOOKUP by name bob", &Lookup{Req: 7, Name: []byte("bob")}},
	{"USER bob is 2", &User{Req: 7, User: 2, Name: []byte("bob")}},
	{"OK", &OK{Req: 7}},
	{"SEND hello to user 2", &Send{ID: vecID, To: 2, Body: []byte("hello")}},
	{"SEND resend to group 9", &Send{ID: vecID, Flags: FlagDup | FlagGroup, To: 9, Body: []byte("hi all")}},
	{"SENT", &Sent{ID: vecID, Time: vecTime}},
	{"SENT_DELIVERED", &SentDelivered{ID: vecID, Time: vecTime, Delivered: vecTime + 12}},
	{"DELIVER", &Deliver{Seq: 42, ID: vecID, From: 1, Time: vecTime, Body: []byte("hello")}},
	{"ACK up to 42", &Ack{Seq: 42}},
	{"READ two messages from user 1", &Read{To: 1, IDs: IDList(nil).AppendID(vecID).AppendID(vecID2)}},
	{"RECEIPT delivered", &Receipt{Seq: 43, Kind: ReceiptDelivered, By: 2, Time: vecTime, IDs: IDList(nil).AppendID(vecID)}},
	{"TYPING to user 2", &Typing{To: 2, State: TypingStarted}},
	{"IS_TYPING in group 9", &IsTyping{From: 1, Group: 9, State: TypingStarted}},
	{"SUBSCRIBE users 2 and 3", &Subscribe{Users: Users(2, 3)}},
	{"UNSUBSCRIBE user 3", &Unsubscribe{Users: Users(3)}},
	{"PRESENCE user 2 offline", &Presence{User: 2, State: PresenceOffline, LastSeen: vecTime}},
	{"PRIVACY hide last seen", &Privacy{Flags: PrivacyHideLastSeen}},
	{"GROUP_CREATE", &GroupCreate{Req: 8, Name: []byte("team"), Users: Users(2, 3)}},
	{"GROUP_ADD", &GroupAdd{GroupMembers{Req: 9, Group: 9, Users: Users(4)}}},
	{"GROUP_REMOVE", &GroupRemove{GroupMembers{Req: 10, Group: 9, Users: Users(4)}}},
	{"GROUP_LEAVE", &GroupLeave{GroupRef{Req: 11, Group: 9}}},
	{"GROUP_RENAME", &GroupRename{Req: 12, Group: 9, Name: []byte("core")}},
	{"GROUP_ADMIN", &GroupAdmin{Req: 13, Group: 9, User: 2, Admin: true}},
	{"GROUP_GET", &GroupGet{GroupRef{Req: 14, Group: 9}}},
	{"GROUP_LIST", &GroupList{Req: 15}},
	{"GROUP_INFO", &GroupInfo{Req: 14, Group: 9, Name: []byte("team"), Members: []Member{{1, RoleAdmin}, {2, RoleMember}}}},
	{"GROUPS", &Groups{Req: 15, Groups: []GroupSummary{{Group: 9, Name: []byte("team")}}}},
	{"GROUP_EVENT added", &GroupEvent{Seq: 44, Group: 9, Kind: GroupAdded, Actor: 1, Time: vecTime, Name: []byte("team"), Users: Users(4)}},
	{"BLOCK user 2", &Block{Req: 16, User: 2}},
	{"UNBLOCK user 2", &Unblock{Req: 17, User: 2}},
	{"LIST_GET blocked", &ListGet{Req: 18, Kind: ListBlocked}},
	{"LIST blocked: users 2 and 3", &List{Req: 18, Kind: ListBlocked, Users: Users(2, 3)}},
	{"CONTACT add user 3", &Contact{Req: 19, User: 3, On: true}},
	{"GROUP_ADDS from contacts only", &GroupAdds{Req: 20, From: AddsFromContacts}},
	{"ACCOUNT_DELETE", &AccountDelete{Req: 21, Password: []byte("correct horse")}},
	{"PUSH_SUBSCRIBE device 1", &PushSubscribe{Req: 16, Device: 1, Endpoint: []byte("https://push.example/s/abc"), P256dh: vecP256dh, Auth: vecAuth}},
	{"PUSH_LIST", &PushList{Req: 17}},
	{"PUSH_SUBS one subscription", &PushSubs{Req: 17, Key: vecP256dh, Subs: []PushSub{{Device: 1, Created: vecTime, Endpoint: []byte("https://push.example/s/abc")}}}},
	{"PUSH_REMOVE device 1", &PushRemove{Req: 18, Device: 1}},
	{"SESSIONS", &Sessions{Req: 16}},
	{"SESSION_LIST two sessions", &SessionList{Req: 16, Sessions: []SessionInfo{
		{Session: 0x1122334455667788, Flags: SessionCurrent | SessionOnline, Created: vecTime - 86_400_000, LastSeen: vecTime, Addr: []byte("198.51.100.7:50412"), Label: []byte("phone")},
		{Session: 0x99, Created: vecTime - 7*86_400_000, LastSeen: vecTime - 3_600_000, Addr: []byte("203.0.113.9:41000")},
	}}},
	{"SESSION_REVOKE", &SessionRevoke{Req: 17, Session: 0x99}},
	{"SESSION_LABEL laptop", &SessionLabel{Req: 18, Label: []byte("laptop")}},
	{"PING", &Ping{Nonce: 0x0102030405060708}},
	{"PONG", &Pong{Nonce: 0x0102030405060708}},
	{"GOAWAY retry after 1.5 s", &Goaway{RetryAfter: 1500, Reason: GoawayShutdown}},
	{"KICKED logged in elsewhere", &Kicked{Reason: KickElsewhere}},
	{"OPTIONS sent-delivered", &Options{Req: 22, Flags: OptionSentDelivered}},
	{"KICKED account deleted", &Kicked{Reason: KickDeleted}},
	{"KEYS_UPLOAD refill: replace one-time EC keys, two EC and one KEM prekey", &KeysUpload{Req: 16, Flags: UploadReplaceEC, Identity: vecKey(0x10),
		EC: []ECPreKey{{ID: 101, Key: vecKey(0x20)}, {ID: 102, Key: vecKey(0x30)}}, KEM: []KEMPreKey{{ID: 201, Key: vecKEM(), Sig: vecSig(0x40)}}}},
	{"KEYS_UPLOAD rotate the signed prekey", &KeysUpload{Req: 17, Identity: vecKey(0x10), Signed: &SignedECKey{ID: 2, Key: vecKey(0x50), Sig: vecSig(0x60)}}},
	{"KEYS_COUNT", &KeysCount{Req: 18}},
	{"KEYS_COUNTS device 1: 99 EC, 9 KEM", &KeysCounts{Req: 18, Device: 1, EC: 99, KEM: 9}},
	{"KEYS_FETCH all devices of user 2", &KeysFetch{Req: 19, User: 2}},
	{"KEYS_BUNDLE user 2 device 1", &KeysBundle{Req: 19, User: 2, Bundles: []Bundle{{Device: 1, Identity: vecKey(0x10),
		Signed: SignedECKey{ID: 2, Key: vecKey(0x50), Sig: vecSig(0x60)}, EC: &ECPreKey{ID: 101, Key: vecKey(0x20)},
		KEM: KEMPreKey{ID: 201, Key: vecKEM(), Sig: vecSig(0x40)}}}}},
	{"KEYS_CHECK", &KeysCheck{Req: 20, Digest: Digest(vecKey(0x70))}},
	{"KEYS_LOW device 1: 9 EC, 2 KEM left", &KeysLow{Device: 1, EC: 9, KEM: 2}},
	{"IDENTITY_CHANGED user 2 device 1", &IdentityChanged{User: 2, Device: 1}},
	{"KEY_ROTATE", &KeyRotate{Old: vecOldKey, New: vecNewKey, ValidFrom: vecTime, Sig: vecRotateSig}},
	{"KICKED session revoked", &Kicked{Reason: KickRevoked}},
	{"ERROR inbox byte quota for a SEND", &Error{Code: CodeInboxBytesFull, ID: vecID, Detail: []byte("inbox bytes")}},
	{"ERROR inbox full for a SEND", &Error{Code: CodeInboxFull, ID: vecID, Detail: []byte("inbox full")}},
}

// TestVectors checks that every vector encodes to the bytes PROTOCOL.md
// shows, that those bytes decode back to the same frame, and that every
// frame type of the protocol has a vector.
func TestVectors(t *testing.T) {
	seen := map[Type]bool{}
	var doc strings.Builder
	for _, v := range vectors {
		b := v.frame.Append(nil)
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("%s: decode own encoding: %v", v.name, err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(v.frame)) {
			t.Errorf("%s: round trip\n got %#v\nwant %#v", v.name, got, v.frame)
		}
		seen[v.frame.Type()] = true
		doc.WriteString(annotate(t, v.name, b))
	}
	for i := 0; i < 256; i++ {
		if tt := Type(i); tt.Known() && !seen[tt] {
			t.Errorf("frame type %v has no test vector", tt)
		}
	}

	const path = "../PROTOCOL.md"
	const beginMark, endMark = "<!-- vectors:begin -->\n", "<!-- vectors:end -->"
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	i, j := strings.Index(text, beginMark), strings.Index(text, endMark)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the %q and %q markers", path, beginMark, endMark)
	}
	want := doc.String()
	if *update {
		text = text[:i+len(beginMark)] + want + text[j:]
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if have := text[i+len(beginMark) : j]; have != want {
		t.Errorf("PROTOCOL.md test vectors are out of date with the codec; run go test ./codec -run TestVectors -update and review the diff")
	}
	// The hex in the document must decode on its own, as a reader's
	// implementation would decode it.
	for _, block := range strings.Split(want, "```text\n")[1:] {
		b := hexOf(t, block[:strings.Index(block, "```")])
		if _, err := Decode(b); err != nil {
			t.Errorf("document vector does not decode: %v\n%s", err, block)
		}
	}
}

// annotate renders one vector as markdown: a heading and the frame's
// bytes, one field per line with its name.
func annotate(t *testing.T, name string, b []byte) string {
	type span struct {
		what   string
		off, n int
	}
	var spans []span
	fieldTrace = func(what string, off, n int) { spans = append(spans, span{what, off, n}) }
	defer func() { fieldTrace = nil }()
	if _, err := Decode(b); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "#### %s\n\n```text\n", name)
	line := func(hexs, note string) { fmt.Fprintf(&sb, "%-40s # %s\n", hexs, note) }
	line(hex.EncodeToString(b[:4]), fmt.Sprintf("len = %d", len(b)-4))
	line(hex.EncodeToString(b[4:5]), "type = "+Type(b[4]).String())
	body := b[HeaderLen:]
	for _, s := range spans {
		chunk := body[s.off : s.off+s.n]
		for len(chunk) > 16 {
			line(hex.EncodeToString(chunk[:16]), s.what+" …")
			chunk = chunk[16:]
		}
		if len(chunk) > 0 {
			line(hex.EncodeToString(chunk), s.what)
		}
	}
	sb.WriteString("```\n\n")
	return sb.String()
}

func hexOf(t *testing.T, annotated string) []byte {
	var all []byte
	for _, l := range strings.Split(annotated, "\n") {
		if k := strings.IndexByte(l, '#'); k >= 0 {
			l = l[:k]
		}
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		b, err := hex.DecodeString(l)
		if err != nil {
			t.Fatalf("bad hex %q: %v", l, err)
		}
		all = append(all, b...)
	}
	return all
}

// normalize makes nil and empty slices compare equal.
func normalize(f Frame) Frame {
	v := reflect.ValueOf(f).Elem()
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				walk(v.Field(i))
			}
		case reflect.Slice:
			if v.Len() == 0 && v.CanSet() {
				v.Set(reflect.Zero(v.Type()))
			}
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i))
			}
		}
	}
	walk(v)
	return f
}

func TestHeaderLimits(t *testing.T) {
	for _, tc := range []struct {
		hdr  []byte
		max  int
		want error
	}{
		{[]byte{0, 0, 0, 0}, 0, ErrMalformed},
		{[]byte{0, 0, 0xff, 0xec}, 0, ErrTooLarge}, // MaxLen+1
		{[]byte{0xff, 0xff, 0xff, 0xff}, 0, ErrTooLarge},
		{[]byte{0, 0, 1, 1}, 256, ErrTooLarge},
		{[]byte{0, 0, 1, 0}, 256, nil},
		{[]byte{0, 0, 0xff, 0xeb}, 0, nil}, // MaxLen
	} {
		_, err := ParseHeader(tc.hdr, tc.max)
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("ParseHeader(%x, %d) = %v, want %v", tc.hdr, tc.max, err, tc.want)
		}
	}
}

func TestPreamble(t *testing.T) {
	p := AppendPreamble(nil, TransportNoiseXX)
	if got := hex.EncodeToString(p); got != "6368617464010100" {
		t.Fatalf("preamble = %s", got)
	}
	if tr, err := ParsePreamble(p); err != nil || tr != TransportNoiseXX {
		t.Fatalf("ParsePreamble = %v, %v", tr, err)
	}
	bad := append([]byte(nil), p...)
	bad[5] = 2
	if _, err := ParsePreamble(bad); !errors.Is(err, ErrVersion) {
		t.Errorf("version 2: %v", err)
	}
	if _, err := ParsePreamble([]byte("GET / HTTP/1.1\r\n")); !errors.Is(err, ErrBadPreamble) {
		t.Errorf("http: %v", err)
	}
}

// TestSplitStream walks a stream of every vector concatenated, cut at every
// possible point, the way bytes arrive from a socket.
func TestSplitStream(t *testing.T) {
	var stream []byte
	for _, v := range vectors {
		stream = v.frame.Append(stream)
	}
	for cut := 0; cut <= len(stream); cut += 7 {
		var got int
		buf := append([]byte(nil), stream[:cut]...)
		feed := stream[cut:]
		for {
			tp, body, rest, ok, err := Split(buf, 0)
			if err != nil {
				t.Fatalf("cut %d: %v", cut, err)
			}
			if !ok {
				if len(feed) == 0 {
					break
				}
				buf = append(buf, feed...)
				feed = nil
				continue
			}
			if _, err := DecodeBody(tp, body); err != nil {
				t.Fatalf("cut %d frame %d: %v", cut, got, err)
			}
			got++
			buf = rest
		}
		if got != len(vectors) || len(buf) != 0 {
			t.Fatalf("cut %d: decoded %d of %d frames, %d bytes left", cut, got, len(vectors), len(buf))
		}
	}
}

func TestMalformedTyped(t *testing.T) {
	for _, v := range vectors {
		b := v.frame.Append(nil)
		body := b[HeaderLen:]
		// Every strict prefix of a body, and the body with one extra byte,
		// must fail with ErrMalformed and never panic.
		for n := 0; n < len(body); n++ {
			if _, err := DecodeBody(v.frame.Type(), body[:n]); err == nil {
				if v.frame.Type() == TypeLogout && n == 0 {
					continue
				}
				t.Errorf("%s: prefix of %d bytes decoded", v.name, n)
			} else if !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: prefix error %v is not ErrMalformed", v.name, err)
			}
		}
		if _, err := DecodeBody(v.frame.Type(), append(bytes.Clone(body), 0)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: trailing byte: %v", v.name, err)
		}
	}
	if _, err := DecodeBody(0x6E, nil); !errors.Is(err, ErrUnknownType) {
		t.Errorf("unknown type: %v", err)
	}
}
