package codec

// Blocking, contacts and account deletion (PROTOCOL.md section 10).

// Block adds a user to the sender's block list; OK answers it once the
// list is on disk.
type Block struct {
	Req  uint32
	User uint64
}

// Unblock removes a user from the sender's block list; OK answers it.
type Unblock struct {
	Req  uint32
	User uint64
}

// ListKind names one of a user's own lists of users.
type ListKind uint8

const (
	ListBlocked  ListKind = 0 // the users the sender blocked
	ListContacts ListKind = 1 // the sender's contacts (CONTACT)
)

func (k ListKind) String() string {
	switch k {
	case ListBlocked:
		return "blocked"
	case ListContacts:
		return "contacts"
	}
	return "unknown list"
}

// ListGet asks for one of the sender's lists; LIST answers it.
type ListGet struct {
	Req  uint32
	Kind ListKind
}

// List answers LIST_GET with the list's users, in increasing id order.
type List struct {
	Req   uint32
	Kind  ListKind
	Users UserList
}

// Contact adds a user to the sender's contacts (On) or removes them; OK
// answers it. Contacts are the users a "contacts only" GROUP_ADDS setting
// lets add the sender to groups.
type Contact struct {
	Req  uint32
	User uint64
	On   bool
}

// AddsFrom says who may add a user to groups (GROUP_ADDS).
type AddsFrom uint8

const (
	AddsFromEveryone AddsFrom = 0 // anyone who has not been blocked (the default)
	AddsFromContacts AddsFrom = 1 // only the user's contacts
)

func (a AddsFrom) String() string {
	switch a {
	case AddsFromEveryone:
		return "everyone"
	case AddsFromContacts:
		return "contacts"
	}
	return "unknown"
}

// GroupAdds sets who may add the sender to groups; OK answers it.
type GroupAdds struct {
	Req  uint32
	From AddsFrom
}

// AccountDelete deletes the sender's account, the password confirming
// it: OK answers once the deletion is recorded, and KICKED (reason
// deleted) ends the session.
type AccountDelete struct {
	Req      uint32
	Password []byte
}
