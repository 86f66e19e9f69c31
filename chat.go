package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
)

const chatHelp = `Type a line to send it to the current contact or group.
  /to NAME                  talk to NAME from now on
  @NAME TEXT                send TEXT to NAME once
  /read                     tell the current contact you read their messages
  /watch NAME               show NAME's online status and last seen
  /group new NAME USER...   create a group with those members
  /group add|remove USER... change the current group's members (admins)
  /group leave              leave the current group
  /groups                   list your groups
  /g ID                     talk to group ID from now on
  /quit                     leave (Ctrl-D works too)
`

// chat is a line-based terminal client: a person types, chatd routes.
func chat(args []string) error {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:7420", "server address")
	user := fs.String("user", "", "your user name (3-32 of a-z 0-9 . _ -)")
	register := fs.Bool("register", false, "create the account if it does not exist yet")
	password := fs.String("password", os.Getenv("CHATD_PASSWORD"), "password (default: $CHATD_PASSWORD, else asked for)")
	to := fs.String("to", "", "contact to talk to first")
	serverKey := fs.String("server-key", os.Getenv("CHATD_SERVER_KEY"), "the server's public key in hex, as `chatd serve` prints it (default: trust the key it presents and show it)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *user == "" {
		return errors.New("chat: -user is required")
	}
	in := bufio.NewReader(os.Stdin)
	if *password == "" {
		fmt.Print("password: ")
		line, err := in.ReadString('\n')
		if err != nil {
			return fmt.Errorf("chat: read password: %w", err)
		}
		*password = strings.TrimSpace(line)
	}
	var pin []byte
	if *serverKey != "" {
		var err error
		if pin, err = hex.DecodeString(*serverKey); err != nil || len(pin) != 32 {
			return fmt.Errorf("chat: --server-key wants 64 hex digits")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	cl, err := client.Connect(ctx, client.Options{Addr: *addr, Name: *user, Password: *password, Register: *register, ServerKey: pin})
	cancel()
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	defer cl.Close()
	if pin == nil {
		fmt.Printf("encrypted (Noise XX); server key %x: compare it with what `chatd serve` printed, and pass --server-key to pin it\n", cl.ServerKey())
	} else {
		fmt.Println("encrypted (Noise XX) to the pinned server key")
	}
	t := &terminal{cl: cl, names: map[uint64]string{cl.User(): *user}, ids: map[string]uint64{}, unread: map[uint64][]codec.MsgID{}}
	fmt.Printf("logged in as %s (user %d)\n%s", *user, cl.User(), chatHelp)
	if *to != "" {
		t.setPeer(*to)
	}
	go t.print()
	go t.keepalive()
	for {
		line, err := in.ReadString('\n')
		if line = strings.TrimSpace(line); line != "" {
			if line == "/quit" {
				return nil
			}
			t.handle(line)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

type terminal struct {
	cl     *client.Client
	mu     sync.Mutex
	peer   string
	group  uint64
	names  map[uint64]string
	ids    map[string]uint64
	unread map[uint64][]codec.MsgID
}

func (t *terminal) handle(line string) {
	switch {
	case strings.HasPrefix(line, "/to "):
		t.setPeer(strings.TrimSpace(line[4:]))
	case line == "/read":
		t.markRead()
	case strings.HasPrefix(line, "/watch "):
		t.watch(strings.TrimSpace(line[7:]))
	case strings.HasPrefix(line, "/group "), line == "/groups", strings.HasPrefix(line, "/g "):
		t.groupCommand(line)
	case strings.HasPrefix(line, "@"):
		name, text, _ := strings.Cut(line[1:], " ")
		t.send(name, text)
	case strings.HasPrefix(line, "/"):
		fmt.Print(chatHelp)
	default:
		t.mu.Lock()
		peer, group := t.peer, t.group
		t.mu.Unlock()
		switch {
		case group != 0:
			if _, err := t.cl.SendGroup(group, []byte(line)); err != nil {
				fmt.Println("!", err)
			}
		case peer != "":
			t.send(peer, line)
		default:
			fmt.Println("no contact yet: /to NAME, @NAME TEXT, or /g GROUP")
		}
	}
}

func (t *terminal) watch(name string) {
	id, err := t.resolve(name)
	if err != nil {
		fmt.Println("!", err)
		return
	}
	if c := t.cl.Conn(); c != nil {
		c.Subscribe(id)
	}
}

// groupCommand handles /group, /groups and /g.
func (t *terminal) groupCommand(line string) {
	c := t.cl.Conn()
	if c == nil {
		fmt.Println("! not connected; try again in a moment")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f := strings.Fields(line)
	users := func(names []string) ([]uint64, bool) {
		var ids []uint64
		for _, n := range names {
			id, err := t.resolve(n)
			if err != nil {
				fmt.Println("!", err)
				return nil, false
			}
			ids = append(ids, id)
		}
		return ids, true
	}
	t.mu.Lock()
	current := t.group
	t.mu.Unlock()
	var err error
	switch {
	case f[0] == "/groups":
		var list []codec.GroupSummary
		if list, err = c.Groups(ctx); err == nil {
			for _, g := range list {
				fmt.Printf("  group %d: %s\n", g.Group, g.Name)
			}
		}
	case f[0] == "/g" && len(f) == 2:
		var id uint64
		if _, err = fmt.Sscan(f[1], &id); err == nil {
			var info *codec.GroupInfo
			if info, err = c.GroupInfo(ctx, id); err == nil {
				t.mu.Lock()
				t.group, t.peer = id, ""
				t.mu.Unlock()
				fmt.Printf("talking to group %d (%s, %d members)\n", id, info.Name, len(info.Members))
			}
		}
	case len(f) >= 3 && f[1] == "new":
		if ids, ok := users(f[3:]); ok {
			var info *codec.GroupInfo
			if info, err = c.CreateGroup(ctx, f[2], ids...); err == nil {
				t.mu.Lock()
				t.group, t.peer = info.Group, ""
				t.mu.Unlock()
				fmt.Printf("created group %d (%s); talking to it\n", info.Group, info.Name)
			}
		}
	case len(f) >= 3 && (f[1] == "add" || f[1] == "remove") && current != 0:
		if ids, ok := users(f[2:]); ok {
			if f[1] == "add" {
				err = c.AddMembers(ctx, current, ids...)
			} else {
				err = c.RemoveMembers(ctx, current, ids...)
			}
		}
	case len(f) == 2 && f[1] == "leave" && current != 0:
		if err = c.LeaveGroup(ctx, current); err == nil {
			t.mu.Lock()
			t.group = 0
			t.mu.Unlock()
		}
	default:
		fmt.Print(chatHelp)
	}
	if err != nil {
		fmt.Println("!", err)
	}
}

func (t *terminal) setPeer(name string) {
	if _, err := t.resolve(name); err != nil {
		fmt.Println("!", err)
		return
	}
	t.mu.Lock()
	t.peer, t.group = name, 0
	t.mu.Unlock()
	fmt.Printf("talking to %s\n", name)
}

func (t *terminal) send(name, text string) {
	id, err := t.resolve(name)
	if err != nil {
		fmt.Println("!", err)
		return
	}
	if _, err := t.cl.Send(id, []byte(text)); err != nil {
		fmt.Println("!", err)
	}
}

func (t *terminal) markRead() {
	t.mu.Lock()
	id := t.ids[t.peer]
	msgs := t.unread[id]
	delete(t.unread, id)
	t.mu.Unlock()
	if c := t.cl.Conn(); c != nil && len(msgs) > 0 {
		for len(msgs) > 0 {
			n := min(len(msgs), codec.MaxIDs)
			c.MarkRead(id, 0, msgs[:n]...)
			msgs = msgs[n:]
		}
	}
}

// resolve turns a name into a user id, asking the server once.
func (t *terminal) resolve(name string) (uint64, error) {
	t.mu.Lock()
	id, ok := t.ids[name]
	t.mu.Unlock()
	if ok {
		return id, nil
	}
	c := t.cl.Conn()
	if c == nil {
		return 0, errors.New("not connected; try again in a moment")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	id, err := c.LookupName(ctx, name)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	t.mu.Lock()
	t.ids[name], t.names[id] = id, name
	t.mu.Unlock()
	return id, nil
}

func (t *terminal) name(id uint64) string {
	t.mu.Lock()
	n, ok := t.names[id]
	t.mu.Unlock()
	if ok {
		return n
	}
	if c := t.cl.Conn(); c != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if n, err := c.LookupUser(ctx, id); err == nil {
			t.mu.Lock()
			t.names[id], t.ids[n] = n, id
			t.mu.Unlock()
			return n
		}
	}
	return fmt.Sprintf("user%d", id)
}

func (t *terminal) print() {
	for f := range t.cl.Events() {
		switch f := f.(type) {
		case *codec.Deliver:
			ts := time.UnixMilli(int64(f.Time)).Format("15:04:05")
			if f.Group != 0 {
				fmt.Printf("[%s] %s in group %d: %s\n", ts, t.name(f.From), f.Group, f.Body)
			} else {
				fmt.Printf("[%s] %s: %s\n", ts, t.name(f.From), f.Body)
			}
			t.mu.Lock()
			t.unread[f.From] = append(t.unread[f.From], f.ID)
			t.mu.Unlock()
		case *codec.Receipt:
			fmt.Printf("  ✓✓ %d %s by %s\n", f.IDs.Len(), f.Kind, t.name(f.By))
		case *codec.Error:
			fmt.Printf("! %v\n", f)
		case *codec.IsTyping:
			fmt.Printf("  %s is typing…\n", t.name(f.From))
		case *codec.Kicked:
			fmt.Printf("! session ended: %v\n", f.Reason)
		case *codec.Presence:
			switch f.State {
			case codec.PresenceOffline:
				seen := "never"
				if f.LastSeen != 0 {
					seen = time.UnixMilli(int64(f.LastSeen)).Format("Jan 2 15:04")
				}
				fmt.Printf("  %s is offline (last seen %s)\n", t.name(f.User), seen)
			default:
				fmt.Printf("  %s is %v\n", t.name(f.User), f.State)
			}
		case *codec.GroupEvent:
			fmt.Printf("  group %d (%s): %s %v\n", f.Group, f.Name, t.name(f.Actor), f.Kind)
		}
	}
	if err := t.cl.Err(); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Println("! disconnected:", err)
	}
	os.Exit(0)
}

// keepalive pings well inside the server's keepalive window.
func (t *terminal) keepalive() {
	for range time.Tick(30 * time.Second) {
		if c := t.cl.Conn(); c != nil {
			c.Ping(uint64(time.Now().UnixNano()))
		}
	}
}
