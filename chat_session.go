package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/history"
)

const chatHelp = `  TEXT                         send TEXT to the current contact or group
                               (until you pick one, replies go to whoever wrote last)
  /to NAME                     talk to NAME from now on
  @NAME TEXT                   send TEXT to NAME once
  /read                        tell the current contact you read their messages
  /history [NAME|#GROUP] [N]   the last N (20) messages with NAME, or the current chat
  /search WORDS                messages holding all WORDS, searched on this machine
                               only (word* matches a prefix)
  /watch NAME                  show NAME's online status and last seen
  /verify NAME                 the safety number to compare with NAME (end-to-end encryption)
  /accept NAME                 trust NAME's new identity key and send what waited for it
  /group new NAME USER...      create a group with those members
  /group add|remove USER...    change the current group's members (admins)
  /group leave                 leave the current group
  /groups                      list your groups
  /g ID                        talk to group ID from now on
  /block NAME, /unblock NAME   stop (or again let) NAME reach you; they are not told
  /blocked                     list whom you blocked
  /sessions                    list your devices: where and when each was last used
  /end N                       log out device N of that list (it needs the password again)
  /label TEXT                  name this device in /sessions
  /help                        this text
  /quit                        leave (Ctrl-D works too)
Ticks: ✓ the server has it, ✓✓ delivered to their device, ✓✓ read.
`

// session is one chat: lines in, lines out. It holds the client, the
// local store and what the person is doing (the current chat).
type session struct {
	cfg   chatConfig
	cl    *client.Client
	store *history.Store
	out   *printer

	mu     sync.Mutex
	self   uint64
	peer   string // current one-to-one contact, or ""
	group  uint64 // current group, or 0
	chosen bool   // the person picked the chat (/to, /g): replies no longer follow the last writer
	names  map[uint64]string
	ids    map[string]uint64
	ticks  map[uint64][]history.Message // receipt seq -> messages it moved on, for the event loop to show
	// sentShown and receiptFirst order ticks (see ticked); events
	// goroutine only.
	sentShown, receiptFirst tickMarks

	lost bool // connection lost since the last "connected"

	listed []codec.SessionInfo // the last /sessions, which /end N refers to

	e2e *e2e // end-to-end encryption; nil with --no-e2e
}

// printer serialises whole lines from the input and event goroutines.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) say(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
}

func (p *printer) raw(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	io.WriteString(p.w, s)
}

// runChat runs a chat session reading commands from in and writing to
// out until in ends, /quit, or the client ends for good.
func runChat(cfg chatConfig, in io.Reader, out io.Writer) error {
	store, err := history.Open(cfg.Store)
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	defer store.Close()
	s := &session{cfg: cfg, store: store, out: &printer{w: out},
		names: map[uint64]string{}, ids: map[string]uint64{}, ticks: map[uint64][]history.Message{}}
	if !cfg.NoE2E {
		s.e2e = newE2E(cfg.Keys)
	}
	contacts, err := store.Contacts()
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	for id, n := range contacts {
		s.names[id], s.ids[n] = n, id
	}
	opts := cfg.Client
	opts.SentDelivered = true // one frame, not SENT and a RECEIPT to acknowledge (sentDelivered)
	opts.Store = s.storeEntry
	opts.OnStatus = s.status
	opts.OnServerKey = s.keyMoved
	var movedFrom []byte
	if opts.ServerKey != nil {
		pin, err := followPin(store, opts.ServerKey)
		if err != nil {
			return fmt.Errorf("chat: %w", err)
		}
		if !bytes.Equal(pin, opts.ServerKey) {
			movedFrom, opts.ServerKey = opts.ServerKey, pin
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ConnectTimeout)
	cl, err := client.Connect(ctx, opts)
	cancel()
	if err != nil {
		return explainLogin(err, cfg)
	}
	defer cl.Close()
	s.cl = cl
	s.mu.Lock()
	s.self = cl.User()
	s.names[s.self], s.ids[opts.Name] = opts.Name, s.self
	s.mu.Unlock()
	switch {
	case opts.Plaintext:
		s.out.say("not encrypted (--plaintext)")
	case movedFrom != nil:
		s.out.say("encrypted (Noise XX) to the server's new key %x, which the key you pinned announced and signed (you may pass it as --server-key from now on)", opts.ServerKey)
	case opts.ServerKey == nil:
		s.out.say("encrypted (Noise XX); server key %x: compare it with what `chatd serve` printed, and pass --server-key to pin it", cl.ServerKey())
	default:
		s.out.say("encrypted (Noise XX) to the pinned server key")
	}
	stop := make(chan struct{})
	defer close(stop)
	if s.e2e != nil {
		if err := s.startE2E(); err != nil {
			return err
		}
		go s.worker(stop)
	} else {
		s.out.say("end-to-end encryption: OFF (--no-e2e): the server can read your messages")
	}
	s.out.say("logged in as %s (user %d); messages are kept in %s", opts.Name, s.self, cfg.Store)
	s.out.raw(chatHelp)
	if s.e2e != nil {
		s.resendE2E()
	} else {
		s.resendPending()
	}
	if cfg.To != "" {
		s.setPeer(cfg.To)
	}

	events := make(chan struct{})
	go func() {
		defer close(events)
		s.events()
	}()
	go s.keepalive(stop)

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-stop:
				return
			}
		}
	}()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			line = strings.TrimSpace(line)
			if line == "/quit" {
				return nil
			}
			if line != "" {
				s.handle(line)
			}
		case <-events:
			err := cl.Err()
			if err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("chat: disconnected for good: %w", err)
			}
			return nil
		}
	}
}

// resendPending sends again, flagged DUP, what an earlier run sent
// without seeing SENT: the server answers SENT without storing it twice.
func (s *session) resendPending() {
	msgs, err := s.store.Pending()
	if err != nil {
		s.out.say("! %v", err)
		return
	}
	for _, m := range msgs {
		flags := codec.FlagDup
		if m.Group {
			flags |= codec.FlagGroup
		}
		s.cl.SendID(m.ID, flags, m.Chat, []byte(m.Body))
	}
	if len(msgs) > 0 {
		s.out.say("sending again %d message(s) that had no ✓ when chat last stopped", len(msgs))
	}
}

// keepalive pings well inside the server's keepalive window.
func (s *session) keepalive(stop <-chan struct{}) {
	every := s.cfg.Keepalive
	if every == 0 {
		every = 30 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if c := s.cl.Conn(); c != nil {
				c.Ping(uint64(time.Now().UnixNano()))
			}
		}
	}
}
