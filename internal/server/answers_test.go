package server

import (
	"crypto/ecdh"
	"crypto/rand"
	"reflect"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
)

// TestRequestAnswers is PROTOCOL.md's table of which request gets which
// answer, over a real socket: each row sends one frame and names the
// answer (or ERROR code) that must come back before a PONG, with the
// request's req echoed and, for an ERROR, a detail a person can act on.
// Rows about other users' and groups' ids check that nobody acts on a
// group, or reaches a user, it has no right to.
func TestRequestAnswers(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxGroup = 4 // the limit counts the creator
	s := startServer(t, cfg)
	alice, bob, carol, dave, eve := register(t, s, "alice"), register(t, s, "bob"), register(t, s, "carol"),
		register(t, s, "dave"), register(t, s, "eve")
	a, b, e := alice.Welcome.User, bob.Welcome.User, eve.Welcome.User
	gid := createGroup(t, alice, "team", bob)
	const nobody = 1 << 40 // no account has this id
	nogroup := gid + 1000  // nor any group this one

	type row struct {
		name string
		from *client.Conn
		send codec.Frame
		want codec.Type // TypeOK, TypeGroupInfo, TypeGroups, TypePushSubs, TypeError, or 0 for no answer
		code codec.Code // for TypeError
	}
	users := func(u ...uint64) codec.UserList { return codec.Users(u...) }
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256dh := k.PublicKey().Bytes()
	pushSub := func(req, device uint32, endpoint string, key []byte) codec.Frame {
		return &codec.PushSubscribe{Req: req, Device: device, Endpoint: []byte(endpoint), P256dh: key, Auth: make([]byte, 16)}
	}
	rows := []row{
		{"create, unknown member", alice, &codec.GroupCreate{Req: 10, Name: []byte("x"), Users: users(b, nobody)}, codec.TypeError, codec.CodeInvalidGroup},
		{"create, member 0", alice, &codec.GroupCreate{Req: 11, Name: []byte("x"), Users: users(0)}, codec.TypeError, codec.CodeInvalidGroup},
		{"create, empty name", alice, &codec.GroupCreate{Req: 12, Name: nil, Users: users(b)}, codec.TypeError, codec.CodeInvalidGroup},
		{"create, no members", alice, &codec.GroupCreate{Req: 13, Name: []byte("solo")}, codec.TypeGroupInfo, 0},
		{"create, limit with the creator", alice, &codec.GroupCreate{Req: 14, Name: []byte("four"), Users: users(a, b, b, carol.Welcome.User, dave.Welcome.User)}, codec.TypeGroupInfo, 0},
		{"create, one over the limit", alice, &codec.GroupCreate{Req: 15, Name: []byte("five"), Users: users(b, carol.Welcome.User, dave.Welcome.User, e)}, codec.TypeError, codec.CodeGroupFull},
		{"add by a member", bob, &codec.GroupAdd{GroupMembers: codec.GroupMembers{Req: 20, Group: gid, Users: users(e)}}, codec.TypeError, codec.CodeNotAdmin},
		{"add by an outsider", eve, &codec.GroupAdd{GroupMembers: codec.GroupMembers{Req: 21, Group: gid, Users: users(e)}}, codec.TypeError, codec.CodeNotMember},
		{"add to no group", alice, &codec.GroupAdd{GroupMembers: codec.GroupMembers{Req: 22, Group: nogroup, Users: users(e)}}, codec.TypeError, codec.CodeUnknownGroup},
		{"add a user id as a group", alice, &codec.GroupAdd{GroupMembers: codec.GroupMembers{Req: 23, Group: e, Users: users(carol.Welcome.User)}}, codec.TypeError, codec.CodeUnknownGroup},
		{"add an unknown user", alice, &codec.GroupAdd{GroupMembers: codec.GroupMembers{Req: 24, Group: gid, Users: users(nobody)}}, codec.TypeError, codec.CodeInvalidGroup},
		{"add a member again", alice, &codec.GroupAdd{GroupMembers: codec.GroupMembers{Req: 25, Group: gid, Users: users(b)}}, codec.TypeError, codec.CodeAlreadyMember},
		{"remove a non-member", alice, &codec.GroupRemove{GroupMembers: codec.GroupMembers{Req: 30, Group: gid, Users: users(e)}}, codec.TypeError, codec.CodeNotMember},
		{"remove by a member", bob, &codec.GroupRemove{GroupMembers: codec.GroupMembers{Req: 31, Group: gid, Users: users(a)}}, codec.TypeError, codec.CodeNotAdmin},
		{"last admin removes self", alice, &codec.GroupRemove{GroupMembers: codec.GroupMembers{Req: 32, Group: gid, Users: users(a)}}, codec.TypeError, codec.CodeLastAdmin},
		{"last admin leaves", alice, &codec.GroupLeave{GroupRef: codec.GroupRef{Req: 40, Group: gid}}, codec.TypeError, codec.CodeLastAdmin},
		{"outsider leaves", eve, &codec.GroupLeave{GroupRef: codec.GroupRef{Req: 41, Group: gid}}, codec.TypeError, codec.CodeNotMember},
		{"rename by a member", bob, &codec.GroupRename{Req: 50, Group: gid, Name: []byte("mine")}, codec.TypeError, codec.CodeNotAdmin},
		{"rename to empty", alice, &codec.GroupRename{Req: 51, Group: gid, Name: nil}, codec.TypeError, codec.CodeInvalidGroup},
		{"rename", alice, &codec.GroupRename{Req: 52, Group: gid, Name: []byte("team 2")}, codec.TypeOK, 0},
		{"demote the last admin", alice, &codec.GroupAdmin{Req: 60, Group: gid, User: a, Admin: false}, codec.TypeError, codec.CodeLastAdmin},
		{"promote a non-member", alice, &codec.GroupAdmin{Req: 61, Group: gid, User: e, Admin: true}, codec.TypeError, codec.CodeNotMember},
		{"promote", alice, &codec.GroupAdmin{Req: 62, Group: gid, User: b, Admin: true}, codec.TypeOK, 0},
		{"get by an outsider", eve, &codec.GroupGet{GroupRef: codec.GroupRef{Req: 70, Group: gid}}, codec.TypeError, codec.CodeNotMember},
		{"get no group", alice, &codec.GroupGet{GroupRef: codec.GroupRef{Req: 71, Group: nogroup}}, codec.TypeError, codec.CodeUnknownGroup},
		{"get", bob, &codec.GroupGet{GroupRef: codec.GroupRef{Req: 72, Group: gid}}, codec.TypeGroupInfo, 0},
		{"list", eve, &codec.GroupList{Req: 73}, codec.TypeGroups, 0},
		{"group typing by an outsider", eve, &codec.Typing{To: gid, Flags: codec.FlagGroup, State: codec.TypingStarted}, codec.TypeError, codec.CodeNotMember},
		{"group typing to no group", alice, &codec.Typing{To: nogroup, Flags: codec.FlagGroup, State: codec.TypingStarted}, codec.TypeError, codec.CodeUnknownGroup},
		{"typing to no user", alice, &codec.Typing{To: nobody, State: codec.TypingStarted}, codec.TypeError, codec.CodeUnknownRecipient},
		{"typing to self", alice, &codec.Typing{To: a, State: codec.TypingStarted}, codec.TypeError, codec.CodeUnknownRecipient},
		{"typing, unused flag bits", alice, &codec.Typing{To: b, Flags: 0x80, State: codec.TypingStarted}, codec.TypeError, codec.CodeInvalidFlags},
		{"privacy, unused flag bits", alice, &codec.Privacy{Flags: 0x82}, codec.TypeError, codec.CodeInvalidFlags},
		{"subscribe to no user", alice, &codec.Subscribe{Users: users(nobody)}, 0, 0},
		{"privacy", alice, &codec.Privacy{}, 0, 0},
		{"push subscribe, http", alice, pushSub(90, 1, "http://fcm.googleapis.com/x", p256dh), codec.TypeError, codec.CodePushNotHTTPS},
		{"push subscribe, a private address", alice, pushSub(91, 1, "https://192.168.1.1/x", p256dh), codec.TypeError, codec.CodePushHostRefused},
		{"push subscribe, key off the curve", alice, pushSub(92, 1, "https://fcm.googleapis.com/x", append([]byte{4}, make([]byte, 64)...)), codec.TypeError, codec.CodePushBadKey},
		{"push subscribe, device 2", alice, pushSub(93, 2, "https://fcm.googleapis.com/x", p256dh), codec.TypeError, codec.CodePushBadDevice},
		{"push remove, nothing subscribed", alice, &codec.PushRemove{Req: 94, Device: 1}, codec.TypeError, codec.CodePushUnknownDevice},
		{"push subscribe", alice, pushSub(95, 1, "https://fcm.googleapis.com/x", p256dh), codec.TypeOK, 0},
		{"push list", alice, &codec.PushList{Req: 96}, codec.TypePushSubs, 0},
		{"push remove", alice, &codec.PushRemove{Req: 97, Device: 1}, codec.TypeOK, 0},
	}
	for i, r := range rows {
		if err := r.from.WriteRaw(r.send.Append(nil)); err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		// Requests with a req are answered once durable, after a PONG
		// maybe: wait for the answer naming the req, then for a PONG, and
		// count every answer seen by then.
		var answers []codec.Frame
		collect := func(f codec.Frame) {
			switch f := f.(type) {
			case *codec.GroupEvent:
				r.from.Ack(f.Seq, true) // news, not an answer
			case *codec.IsTyping, *codec.Presence:
			default:
				answers = append(answers, f)
			}
		}
		if req := reqOf(r.send); req != 0 {
			for done := false; !done; {
				select {
				case f := <-r.from.Events():
					collect(f)
					done = reqOf(f) == req
				case <-time.After(10 * time.Second):
					t.Fatalf("%s: no answer to req %d", r.name, req)
				}
			}
		}
		for _, f := range pong(t, r.from, uint64(1000+i), 10*time.Second) {
			collect(f)
		}
		if r.want == 0 {
			if len(answers) != 0 {
				t.Errorf("%s: answered %+v, want nothing", r.name, answers)
			}
			continue
		}
		if len(answers) != 1 {
			t.Errorf("%s: %d answers %+v, want one %v", r.name, len(answers), answers, r.want)
			continue
		}
		got := answers[0]
		if got.Type() != r.want {
			t.Errorf("%s: answered %+v, want %v", r.name, got, r.want)
			continue
		}
		wantReq := reqOf(r.send)
		switch f := got.(type) {
		case *codec.Error:
			if f.Code != r.code || f.Req != wantReq || len(f.Detail) == 0 {
				t.Errorf("%s: ERROR %v req %d %q, want %v req %d with a detail", r.name, f.Code, f.Req, f.Detail, r.code, wantReq)
			}
		case *codec.OK:
			if f.Req != wantReq {
				t.Errorf("%s: OK req %d, want %d", r.name, f.Req, wantReq)
			}
		case *codec.GroupInfo:
			if f.Req != wantReq {
				t.Errorf("%s: GROUP_INFO req %d, want %d", r.name, f.Req, wantReq)
			}
		case *codec.Groups:
			if f.Req != wantReq || len(f.Groups) != 0 {
				t.Errorf("%s: GROUPS %+v for a user in no group", r.name, f)
			}
		case *codec.PushSubs:
			if f.Req != wantReq || len(f.Subs) != 1 || len(f.Key) != codec.PushKeyLen {
				t.Errorf("%s: PUSH_SUBS %+v, want one subscription and the VAPID key", r.name, f)
			}
		}
	}
}

// reqOf is the req a request carries or an answer repeats: the Req field
// every such frame has (GROUP_ADD and the like have it through an embedded
// body), 0 for frames without one.
func reqOf(f codec.Frame) uint32 {
	req := reflect.ValueOf(f).Elem().FieldByName("Req")
	if !req.IsValid() {
		return 0
	}
	return uint32(req.Uint())
}

// TestCreatorHearsCreated: the creator is answered GROUP_INFO and, like
// every member, also gets a GROUP_EVENT created through the inbox.
func TestCreatorHearsCreated(t *testing.T) {
	s := startServer(t, testConfig(t))
	alice := register(t, s, "alice")
	alice.WriteRaw((&codec.GroupCreate{Req: 5, Name: []byte("solo")}).Append(nil))
	var info *codec.GroupInfo
	var ev *codec.GroupEvent
	for info == nil || ev == nil {
		select {
		case f := <-alice.Events():
			switch f := f.(type) {
			case *codec.GroupInfo:
				info = f
			case *codec.GroupEvent:
				ev = f
				alice.Ack(f.Seq, true)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("info %+v, event %+v", info, ev)
		}
	}
	if len(info.Members) != 1 || info.Members[0].Role != codec.RoleAdmin || ev.Kind != codec.GroupCreated ||
		ev.Group != info.Group || ev.Actor != alice.Welcome.User || ev.Users.Len() != 1 {
		t.Fatalf("info %+v, event %+v", info, ev)
	}
}
