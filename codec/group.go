package codec

// GroupCreate creates a group named Name with the sender as its admin and
// Users as its other members. GROUP_INFO answers it.
type GroupCreate struct {
	Req   uint32
	Name  []byte
	Users UserList
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

// GroupRef is the body of GROUP_LEAVE and GROUP_GET.
type GroupRef struct {
	Req   uint32
	Group uint64
}

// GroupLeave removes the sender from a group; OK answers it.
type GroupLeave struct{ GroupRef }

// GroupGet asks for a group's GROUP_INFO (members only).
type GroupGet struct{ GroupRef }

// GroupRename renames a group (admins only); OK answers it.
type GroupRename struct {
	Req   uint32
	Group uint64
	Name  []byte
}

// GroupAdmin grants (Admin = true) or revokes a member's admin role
// (admins only); OK answers it.
type GroupAdmin struct {
	Req   uint32
	Group uint64
	User  uint64
	Admin bool
}

// GroupList asks for the groups the sender belongs to; GROUPS answers it.
type GroupList struct {
	Req uint32
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
