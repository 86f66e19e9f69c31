package client

import (
	"context"

	"github.com/chatd/chatd/codec"
)

// CreateGroup creates a group with the caller as admin and returns it.
func (c *Conn) CreateGroup(ctx context.Context, name string, members ...uint64) (*codec.GroupInfo, error) {
	r, err := c.request(ctx, func(req uint32) codec.Frame {
		return &codec.GroupCreate{Req: req, Name: []byte(name), Users: codec.Users(members...)}
	})
	if err != nil {
		return nil, err
	}
	return r.(*codec.GroupInfo), nil
}

// AddMembers adds users to a group (admins only).
func (c *Conn) AddMembers(ctx context.Context, group uint64, users ...uint64) error {
	return c.ok(ctx, func(req uint32) codec.Frame {
		return &codec.GroupAdd{GroupMembers: codec.GroupMembers{Req: req, Group: group, Users: codec.Users(users...)}}
	})
}

// RemoveMembers removes users from a group (admins only).
func (c *Conn) RemoveMembers(ctx context.Context, group uint64, users ...uint64) error {
	return c.ok(ctx, func(req uint32) codec.Frame {
		return &codec.GroupRemove{GroupMembers: codec.GroupMembers{Req: req, Group: group, Users: codec.Users(users...)}}
	})
}

// LeaveGroup removes the caller from a group.
func (c *Conn) LeaveGroup(ctx context.Context, group uint64) error {
	return c.ok(ctx, func(req uint32) codec.Frame {
		return &codec.GroupLeave{GroupRef: codec.GroupRef{Req: req, Group: group}}
	})
}

// RenameGroup renames a group (admins only).
func (c *Conn) RenameGroup(ctx context.Context, group uint64, name string) error {
	return c.ok(ctx, func(req uint32) codec.Frame { return &codec.GroupRename{Req: req, Group: group, Name: []byte(name)} })
}

// SetAdmin grants or revokes a member's admin role (admins only).
func (c *Conn) SetAdmin(ctx context.Context, group, user uint64, admin bool) error {
	return c.ok(ctx, func(req uint32) codec.Frame {
		return &codec.GroupAdmin{Req: req, Group: group, User: user, Admin: admin}
	})
}

// GroupInfo returns a group's name and members (members only).
func (c *Conn) GroupInfo(ctx context.Context, group uint64) (*codec.GroupInfo, error) {
	r, err := c.request(ctx, func(req uint32) codec.Frame { return &codec.GroupGet{GroupRef: codec.GroupRef{Req: req, Group: group}} })
	if err != nil {
		return nil, err
	}
	return r.(*codec.GroupInfo), nil
}

// Groups lists the groups the caller belongs to.
func (c *Conn) Groups(ctx context.Context) ([]codec.GroupSummary, error) {
	r, err := c.request(ctx, func(req uint32) codec.Frame { return &codec.GroupList{Req: req} })
	if err != nil {
		return nil, err
	}
	return r.(*codec.Groups).Groups, nil
}

// Subscribe asks for PRESENCE updates about users; they arrive on Events.
func (c *Conn) Subscribe(users ...uint64) error {
	return c.write(&codec.Subscribe{Users: codec.Users(users...)}, true)
}

// HideLastSeen sets whether subscribers see this user's presence.
func (c *Conn) HideLastSeen(hide bool) error {
	var f codec.PrivacyFlags
	if hide {
		f = codec.PrivacyHideLastSeen
	}
	return c.write(&codec.Privacy{Flags: f}, true)
}

func (c *Conn) ok(ctx context.Context, build func(req uint32) codec.Frame) error {
	_, err := c.request(ctx, build)
	return err
}
