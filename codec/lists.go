package codec

// IDList is a packed list of message ids, 16 bytes each, as on the wire.
// A decoded IDList aliases the frame.
type IDList []byte

// Len returns the number of ids.
func (l IDList) Len() int { return len(l) / 16 }

// At returns the i'th id.
func (l IDList) At(i int) (id MsgID) {
	copy(id[:], l[16*i:16*i+16])
	return id
}

// AppendID appends one id to the list.
func (l IDList) AppendID(id MsgID) IDList { return append(l, id[:]...) }

// UserList is a packed list of user (or group) ids, 8 bytes each.
type UserList []byte

// Len returns the number of ids.
func (l UserList) Len() int { return len(l) / 8 }

// At returns the i'th id.
func (l UserList) At(i int) uint64 { return be.Uint64(l[8*i:]) }

// AppendUser appends one id to the list.
func (l UserList) AppendUser(u uint64) UserList { return be.AppendUint64(l, u) }

// Users builds a UserList from ids (allocates; for clients and tests).
func Users(ids ...uint64) UserList {
	l := make(UserList, 0, 8*len(ids))
	for _, u := range ids {
		l = l.AppendUser(u)
	}
	return l
}

// The lists on the wire: a count, then the packed entries. Encoding writes
// at most the list's limit; decoding enforces it.

// ids writes count u8 then the ids (READ, RECEIPT); at most MaxIDs.
func (w writer) ids(ids IDList) writer {
	n := min(ids.Len(), MaxIDs)
	w.b = append(append(w.b, byte(n)), ids[:16*n]...)
	return w
}

// users8 writes count u8 then the users (SUBSCRIBE); at most MaxSubscribe.
func (w writer) users8(users UserList) writer {
	n := min(users.Len(), MaxSubscribe)
	w.b = append(append(w.b, byte(n)), users[:8*n]...)
	return w
}

// users16 writes count u16 then the users (group frames); at most MaxUsers.
func (w writer) users16(users UserList) writer {
	n := min(users.Len(), MaxUsers)
	w.b = append(be.AppendUint16(w.b, uint16(n)), users[:8*n]...)
	return w
}

func (w writer) members(ms []Member) writer {
	w = w.u16(uint16(len(ms)))
	for _, m := range ms {
		w = w.u64(m.User).u8(uint8(m.Role))
	}
	return w
}

func (w writer) groups(gs []GroupSummary) writer {
	w = w.u16(uint16(len(gs)))
	for _, g := range gs {
		w = w.u64(g.Group).str8(g.Name)
	}
	return w
}

func (w writer) sessions(ss []SessionInfo) writer {
	w = w.u16(uint16(len(ss)))
	for _, x := range ss {
		w = w.u64(x.Session).u8(uint8(x.Flags)).u64(x.Created).u64(x.LastSeen).str8(x.Addr).str8(x.Label)
	}
	return w
}

// count8 reads a u8 count that must not be zero.
func (r *reader) count8() int {
	var n uint8
	r.u8(&n, "count")
	if r.err == nil && n == 0 {
		r.fail("empty id list")
	}
	return int(n)
}

func (r *reader) ids(v *IDList) *reader {
	*v = IDList(r.take(16*r.count8(), "message ids"))
	return r
}

func (r *reader) users8(v *UserList) *reader {
	var n uint8
	r.u8(&n, "count")
	if r.err == nil && n == 0 {
		r.fail("empty user list")
	}
	*v = UserList(r.take(8*int(n), "user ids"))
	return r
}

// users16 reads a group frame's user list, which may be empty only where
// emptyOK.
func (r *reader) users16(v *UserList, emptyOK bool) *reader {
	var n uint16
	r.u16(&n, "count")
	if r.err == nil {
		if n > MaxUsers {
			r.fail("too many users")
		} else if n == 0 && !emptyOK {
			r.fail("empty user list")
		}
	}
	*v = UserList(r.take(8*int(n), "user ids"))
	return r
}

// count16 reads the u16 count of a list whose entries take at least size
// bytes each, and fails at once when the rest of the body cannot hold them,
// before a decoder allocates for them.
func (r *reader) count16(size int, what string) int {
	var n uint16
	r.u16(&n, "count")
	if r.err == nil && int(n)*size > len(r.b)-r.off {
		r.fail("truncated " + what)
	}
	return int(n)
}

// members decodes GROUP_INFO's list. It allocates the slice: GROUP_INFO is
// not on a hot path.
func (r *reader) members(v *[]Member) *reader {
	n := r.count16(9, "members")
	*v = (*v)[:0]
	for i := 0; i < n && r.err == nil; i++ {
		var m Member
		r.u64(&m.User, "member").u8((*uint8)(&m.Role), "role")
		r.check(m.Role <= RoleAdmin, "unknown role")
		*v = append(*v, m)
	}
	return r
}

// groups decodes GROUPS' list; like members it allocates.
func (r *reader) groups(v *[]GroupSummary) *reader {
	n := r.count16(9, "groups")
	*v = (*v)[:0]
	for i := 0; i < n && r.err == nil; i++ {
		var g GroupSummary
		r.u64(&g.Group, "group").str8(&g.Name, "name")
		*v = append(*v, g)
	}
	return r
}

// sessions decodes SESSION_LIST's list; like groups it allocates. The
// list may be empty (a session revoked while it asked).
func (r *reader) sessions(v *[]SessionInfo) *reader {
	n := r.count16(27, "sessions") // an entry is at least 27 bytes
	*v = (*v)[:0]
	for i := 0; i < n && r.err == nil; i++ {
		var x SessionInfo
		r.u64(&x.Session, "session").u8((*uint8)(&x.Flags), "flags").u64(&x.Created, "created").
			u64(&x.LastSeen, "last_seen").str8(&x.Addr, "addr").str8(&x.Label, "label")
		*v = append(*v, x)
	}
	return r
}
