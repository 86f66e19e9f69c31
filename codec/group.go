package codec

// GroupCreate creates a group named Name with the sender as its admin and
// Users as its other members. GROUP_INFO answers it.
type GroupCreate struct {
	Req   uint32
	Name  []byte
	Users UserList
}

func (f *GroupCreate) Type() Type { return TypeGroupCreate }

func (f *GroupCreate) Append(dst []byte) []byte {
	dst, s := begin(dst, TypeGroupCreate)
	dst = appendU32(dst, f.Req)
	dst = appendStr8(dst, f.Name)
	dst = appendUserList(dst, f.Users)
	return end(dst, s)
}

func (f *GroupCreate) Decode(body []byte) error {
	r := reader{t: TypeGroupCreate, b: body}
	f.Req = r.u32("req")
	f.Name = r.str8("name")
	f.Users = decodeUserList(&r, true)
	return r.done()
}

// GroupMembers is the body of GROUP_ADD and GROUP_REMOVE (admins only).
type GroupMembers struct {
	Req   uint32
	Group uint64
	Users UserList
}

// GroupAdd adds members; OK answers it.
type GroupAdd struct{ GroupMembers }

// GroupRemove removes members; OK answers it.
type GroupRemove struct{ GroupMembers }

func (f *GroupAdd) Type() Type                  { return TypeGroupAdd }
func (f *GroupAdd) Append(dst []byte) []byte    { return f.GroupMembers.append(dst, TypeGroupAdd) }
func (f *GroupAdd) Decode(body []byte) error    { return f.GroupMembers.decode(body, TypeGroupAdd) }
func (f *GroupRemove) Type() Type               { return TypeGroupRemove }
func (f *GroupRemove) Append(dst []byte) []byte { return f.GroupMembers.append(dst, TypeGroupRemove) }
func (f *GroupRemove) Decode(body []byte) error { return f.GroupMembers.decode(body, TypeGroupRemove) }

func (g *GroupMembers) append(dst []byte, t Type) []byte {
	dst, s := begin(dst, t)
	dst = appendU32(dst, g.Req)
	dst = appendU64(dst, g.Group)
	dst = appendUserList(dst, g.Users)
	return end(dst, s)
}

func (g *GroupMembers) decode(body []byte, t Type) error {
	r := reader{t: t, b: body}
	g.Req = r.u32("req")
	g.Group = r.u64("group")
	g.Users = decodeUserList(&r, false)
	return r.done()
}

// GroupRef is the body of GROUP_LEAVE and GROUP_GET.
type GroupRef struct {
	Req   uint32
	Group uint64
}

// GroupLeave removes the sender from a group; OK answers it.
type GroupLeave struct{ GroupRef }

// GroupGet asks for a group's GROUP_INFO (members only).
type GroupGet struct{ GroupRef }

func (f *GroupLeave) Type() Type               { return TypeGroupLeave }
func (f *GroupLeave) Append(dst []byte) []byte { return f.GroupRef.append(dst, TypeGroupLeave) }
func (f *GroupLeave) Decode(body []byte) error { return f.GroupRef.decode(body, TypeGroupLeave) }
func (f *GroupGet) Type() Type                 { return TypeGroupGet }
func (f *GroupGet) Append(dst []byte) []byte   { return f.GroupRef.append(dst, TypeGroupGet) }
func (f *GroupGet) Decode(body []byte) error   { return f.GroupRef.decode(body, TypeGroupGet) }

func (g *GroupRef) append(dst []byte, t Type) []byte {
	dst, s := begin(dst, t)
	dst = appendU32(dst, g.Req)
	dst = appendU64(dst, g.Group)
	return end(dst, s)
}

func (g *GroupRef) decode(body []byte, t Type) error {
	r := reader{t: t, b: body}
	g.Req = r.u32("req")
	g.Group = r.u64("group")
	return r.done()
}

// GroupRename renames a group (admins only); OK answers it.
type GroupRename struct {
	Req   uint32
	Group uint64
	Name  []byte
}

func (f *GroupRename) Type() Type { return TypeGroupRename }

func (f *GroupRename) Append(dst []byte) []byte {
	dst, s := begin(dst, TypeGroupRename)
	dst = appendU32(dst, f.Req)
	dst = appendU64(dst, f.Group)
	dst = appendStr8(dst, f.Name)
	return end(dst, s)
}

func (f *GroupRename) Decode(body []byte) error {
	r := reader{t: TypeGroupRename, b: body}
	f.Req = r.u32("req")
	f.Group = r.u64("group")
	f.Name = r.str8("name")
	return r.done()
}

// GroupAdmin grants (Admin = true) or revokes a member's admin role
// (admins only); OK answers it.
type GroupAdmin struct {
	Req   uint32
	Group uint64
	User  uint64
	Admin bool
}

func (f *GroupAdmin) Type() Type { return TypeGroupAdmin }

func (f *GroupAdmin) Append(dst []byte) []byte {
	dst, s := begin(dst, TypeGroupAdmin)
	dst = appendU32(dst, f.Req)
	dst = appendU64(dst, f.Group)
	dst = appendU64(dst, f.User)
	if f.Admin {
		dst = append(dst, 1)
	} else {
		dst = append(dst, 0)
	}
	return end(dst, s)
}

func (f *GroupAdmin) Decode(body []byte) error {
	r := reader{t: TypeGroupAdmin, b: body}
	f.Req = r.u32("req")
	f.Group = r.u64("group")
	f.User = r.u64("user")
	a := r.u8("admin")
	if r.err == nil && a > 1 {
		r.fail("admin must be 0 or 1")
	}
	f.Admin = a == 1
	return r.done()
}

// GroupList asks for the groups the sender belongs to; GROUPS answers it.
type GroupList struct {
	Req uint32
}

func (f *GroupList) Type() Type { return TypeGroupList }

func (f *GroupList) Append(dst []byte) []byte {
	dst, s := begin(dst, TypeGroupList)
	dst = appendU32(dst, f.Req)
	return end(dst, s)
}

func (f *GroupList) Decode(body []byte) error {
	r := reader{t: TypeGroupList, b: body}
	f.Req = r.u32("req")
	return r.done()
}

// Role is a member's role in a group.
type Role uint8

const (
	RoleMember Role = 0
	RoleAdmin  Role = 1
)

// Member is one entry of GROUP_INFO.
type Member struct {
	User uint64
	Role Role
}

// GroupInfo describes a group: its name and members.
type GroupInfo struct {
	Req     uint32
	Group   uint64
	Name    []byte
	Members []Member // decoding allocates this slice: GROUP_INFO is not on a hot path
}

func (f *GroupInfo) Type() Type { return TypeGroupInfo }

func (f *GroupInfo) Append(dst []byte) []byte {
	dst, s := begin(dst, TypeGroupInfo)
	dst = appendU32(dst, f.Req)
	dst = appendU64(dst, f.Group)
	dst = appendStr8(dst, f.Name)
	dst = appendU16(dst, uint16(len(f.Members)))
	for _, m := range f.Members {
		dst = appendU64(dst, m.User)
		dst = append(dst, byte(m.Role))
	}
	return end(dst, s)
}

func (f *GroupInfo) Decode(body []byte) error {
	r := reader{t: TypeGroupInfo, b: body}
	f.Req = r.u32("req")
	f.Group = r.u64("group")
	f.Name = r.str8("name")
	n := int(r.u16("count"))
	if r.err == nil && n*9 > len(body)-r.off {
		r.fail("truncated members")
	}
	f.Members = f.Members[:0]
	for i := 0; i < n && r.err == nil; i++ {
		m := Member{User: r.u64("member"), Role: Role(r.u8("role"))}
		if r.err == nil && m.Role > RoleAdmin {
			r.fail("unknown role")
		}
		f.Members = append(f.Members, m)
	}
	return r.done()
}

// GroupSummary is one entry of GROUPS.
type GroupSummary struct {
	Group uint64
	Name  []byte
}

// Groups answers GROUP_LIST.
type Groups struct {
	Req    uint32
	Groups []GroupSummary // decoding allocates this slice
}

func (f *Groups) Type() Type { return TypeGroups }

func (f *Groups) Append(dst []byte) []byte {
	dst, s := begin(dst, TypeGroups)
	dst = appendU32(dst, f.Req)
	dst = appendU16(dst, uint16(len(f.Groups)))
	for _, g := range f.Groups {
		dst = appendU64(dst, g.Group)
		dst = appendStr8(dst, g.Name)
	}
	return end(dst, s)
}

func (f *Groups) Decode(body []byte) error {
	r := reader{t: TypeGroups, b: body}
	f.Req = r.u32("req")
	n := int(r.u16("count"))
	if r.err == nil && n*9 > len(body)-r.off {
		r.fail("truncated groups")
	}
	f.Groups = f.Groups[:0]
	for i := 0; i < n && r.err == nil; i++ {
		f.Groups = append(f.Groups, GroupSummary{Group: r.u64("group"), Name: r.str8("name")})
	}
	return r.done()
}

// GroupEventKind says what changed in a group.
type GroupEventKind uint8

const (
	GroupCreated  GroupEventKind = 1 // Actor created the group with Users as members
	GroupAdded    GroupEventKind = 2 // Actor added Users
	GroupRemoved  GroupEventKind = 3 // Actor removed Users
	GroupLeft     GroupEventKind = 4 // Actor left
	GroupRenamed  GroupEventKind = 5 // Actor renamed the group to Name
	GroupPromoted GroupEventKind = 6 // Actor made Users admins
	GroupDemoted  GroupEventKind = 7 // Actor revoked Users' admin role
)

func (k GroupEventKind) String() string {
	switch k {
	case GroupCreated:
		return "created"
	case GroupAdded:
		return "added"
	case GroupRemoved:
		return "removed"
	case GroupLeft:
		return "left"
	case GroupRenamed:
		return "renamed"
	case GroupPromoted:
		return "promoted"
	case GroupDemoted:
		return "demoted"
	}
	return "unknown"
}

// GroupEvent is a membership change delivered through the inbox of every
// member (and of removed members, for their removal). ACK it like DELIVER.
type GroupEvent struct {
	Seq   uint64
	Group uint64
	Kind  GroupEventKind
	Actor uint64
	Time  uint64
	Name  []byte // the group's name after the change
	Users UserList
}

func (f *GroupEvent) Type() Type { return TypeGroupEvent }

func (f *GroupEvent) Append(dst []byte) []byte {
	dst, s := begin(dst, TypeGroupEvent)
	dst = appendU64(dst, f.Seq)
	dst = appendU64(dst, f.Group)
	dst = append(dst, byte(f.Kind))
	dst = appendU64(dst, f.Actor)
	dst = appendU64(dst, f.Time)
	dst = appendStr8(dst, f.Name)
	dst = appendUserList(dst, f.Users)
	return end(dst, s)
}

func (f *GroupEvent) Decode(body []byte) error {
	r := reader{t: TypeGroupEvent, b: body}
	f.Seq = r.u64("seq")
	f.Group = r.u64("group")
	f.Kind = GroupEventKind(r.u8("kind"))
	f.Actor = r.u64("actor")
	f.Time = r.u64("time")
	f.Name = r.str8("name")
	f.Users = decodeUserList(&r, true)
	if r.err == nil && (f.Kind < GroupCreated || f.Kind > GroupDemoted) {
		r.fail("unknown group event kind")
	}
	return r.done()
}

func appendUserList(dst []byte, users UserList) []byte {
	n := users.Len()
	if n > MaxUsers {
		n = MaxUsers
	}
	dst = appendU16(dst, uint16(n))
	return append(dst, users[:8*n]...)
}

func decodeUserList(r *reader, emptyOK bool) UserList {
	n := int(r.u16("count"))
	if r.err == nil {
		if n > MaxUsers {
			r.fail("too many users")
		} else if n == 0 && !emptyOK {
			r.fail("empty user list")
		}
	}
	return r.users(n)
}
