package codec

import (
	"bytes"
	"errors"
	"testing"
)

// TestDecodeChecks covers the rules a decoder checks beyond the lengths:
// enum ranges, the admin flag and member roles. A value out of range fails
// with its detail; a frame in range decodes even into a struct that held
// the bad value before, which would fail if a check read a field ahead of
// the call that decodes it.
func TestDecodeChecks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		frame  Frame
		off    int  // body offset of the checked byte
		bad    byte // a value out of range
		detail string
		stale  Frame // decodes frame's bytes; holds bad beforehand
	}{
		{"receipt kind", &Receipt{Seq: 1, Kind: ReceiptRead, By: 2, IDs: IDList(nil).AppendID(vecID)},
			8, 4, "unknown receipt kind", &Receipt{Kind: 4}},
		{"receipt kind 0", &Receipt{Seq: 1, Kind: ReceiptExpired, By: 2, IDs: IDList(nil).AppendID(vecID)},
			8, 0, "unknown receipt kind", &Receipt{Kind: 0}},
		{"presence state", &Presence{User: 2, State: PresenceHidden}, 8, 3, "unknown presence state", &Presence{State: 3}},
		{"group event kind", &GroupEvent{Seq: 1, Group: 9, Kind: GroupDemoted, Users: Users(4)},
			16, 8, "unknown group event kind", &GroupEvent{Kind: 8}},
		{"group event kind 0", &GroupEvent{Seq: 1, Group: 9, Kind: GroupCreated},
			16, 0, "unknown group event kind", &GroupEvent{Kind: 0}},
		{"admin flag", &GroupAdmin{Req: 1, Group: 9, User: 2, Admin: true}, 20, 2, "admin must be 0 or 1", &GroupAdmin{}},
		{"member role", &GroupInfo{Req: 1, Group: 9, Name: []byte("t"), Members: []Member{{1, RoleAdmin}}},
			4 + 8 + 2 + 2 + 8, 2, "unknown role", &GroupInfo{Members: []Member{{7, 2}}}},
	} {
		good := tc.frame.Append(nil)[HeaderLen:]
		bad := bytes.Clone(good)
		bad[tc.off] = tc.bad
		_, err := DecodeBody(tc.frame.Type(), bad)
		var fe *FrameError
		if !errors.Is(err, ErrMalformed) || !errors.As(err, &fe) || fe.Detail != tc.detail {
			t.Errorf("%s: byte %d = %d: got %v, want ErrMalformed %q", tc.name, tc.off, tc.bad, err, tc.detail)
		}
		if err := tc.stale.Decode(good); err != nil {
			t.Errorf("%s: good frame into a stale struct: %v", tc.name, err)
		} else if !bytes.Equal(tc.stale.Append(nil)[HeaderLen:], good) {
			t.Errorf("%s: good frame into a stale struct decoded differently", tc.name)
		}
	}
}
