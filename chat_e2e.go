package main

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/e2e/device"
	"github.com/chatd/chatd/internal/e2e/envelope"
	"github.com/chatd/chatd/internal/history"
)

// End-to-end encryption in the chat (README "End-to-end encryption"):
// every body is an envelope (PROTOCOL.md section 14) sealed for the
// contact's device, or under this user's sender key for a group. The
// session state and the message it sealed or opened are written in one
// SQLite transaction, before the message is sent, shown or acknowledged.

// e2e is the chat's encryption state; nil in a session run with --no-e2e.
type e2e struct {
	dev *device.Device
	// flushMu keeps one flush at a time, so a held message is sealed once.
	flushMu sync.Mutex
	// hidden holds the ids of control messages (sender keys) the store
	// hook consumed, so the event loop does not show them.
	hidden sync.Map
	// notes holds, by message id, what the event loop says before
	// showing a message (a changed key, a failed decrypt): the store
	// hook runs on the client's goroutine, where looking up a name (a
	// request) would wait for itself.
	notes sync.Map
	// wake asks the worker to seal and send held messages (after a
	// reconnect) or to refill prekeys (KEYS_LOW).
	wake, refill chan struct{}
	// controls holds the ids of control messages queued in the store and
	// not yet answered, so the event loop asks the store about a SENT or
	// an ERROR only when it is one of them (most are not). Added before
	// each is sent; resendE2E adds those of earlier runs.
	controls sync.Map
}

func newE2E(keys device.Config) *e2e {
	return &e2e{dev: device.New(keys), wake: make(chan struct{}, 1), refill: make(chan struct{}, 1)}
}

// update adapts the store's transactions to the device's.
func (s *session) update(fn func(device.Tx) error) error {
	return s.store.Update(func(tx *history.Tx) error { return fn(tx) })
}

// startE2E loads or makes this device's keys and publishes them.
func (s *session) startE2E() error {
	var created bool
	if err := s.update(func(tx device.Tx) error {
		var err error
		created, err = s.e2e.dev.Init(tx)
		return err
	}); err != nil {
		return fmt.Errorf("chat: end-to-end keys: %w", err)
	}
	c := s.cl.Conn()
	if c == nil {
		return errors.New("chat: not connected to publish end-to-end keys")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.e2e.dev.Publish(ctx, c, s.update); err != nil {
		return fmt.Errorf("chat: publish end-to-end keys: %w", err)
	}
	if created {
		s.out.say("end-to-end encryption: made this device's keys and published them")
	} else {
		s.out.say("end-to-end encryption: on (/verify NAME compares safety numbers)")
	}
	return nil
}

// keysRecheck is how often a running chat publishes its keys again
// (startE2E does at login), so a chat left open for weeks still rotates
// its signed prekey (device.Config.SignedPreKeyPeriod) and tops up the
// directory after a restored server.
const keysRecheck = 24 * time.Hour

// worker seals held messages after a reconnect, refills prekeys and
// rechecks the published keys daily, off the client's goroutine (all
// make requests and wait for answers).
func (s *session) worker(stop <-chan struct{}) {
	recheck := time.NewTicker(keysRecheck)
	defer recheck.Stop()
	for {
		select {
		case <-stop:
			return
		case <-recheck.C:
			if c := s.cl.Conn(); c != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				if err := s.e2e.dev.Publish(ctx, c, s.update); err != nil {
					s.out.say("! publish end-to-end keys: %v", err)
				}
				cancel()
			}
		case <-s.e2e.wake:
			s.flush()
		case <-s.e2e.refill:
			if c := s.cl.Conn(); c != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				if err := s.e2e.dev.Refill(ctx, c, s.update); err != nil {
					s.out.say("! refill one-time prekeys: %v", err)
				}
				cancel()
			}
		}
	}
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// ensureSession fetches user's bundle and starts a session unless one
// exists. It reports device.ErrUnaccepted for a changed identity key.
func (s *session) ensureSession(user uint64) error {
	err := s.update(func(tx device.Tx) error { return s.e2e.dev.Ready(tx, user) })
	if !errors.Is(err, device.ErrNoSession) {
		return err
	}
	c := s.cl.Conn()
	if c == nil {
		return errors.New("not connected")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bs, err := c.FetchKeys(ctx, user, 1)
	var e *codec.Error
	if errors.As(err, &e) && e.Code == codec.CodeNoKeys {
		return fmt.Errorf("%s has no end-to-end keys yet (they have not run chatd chat with encryption)", s.name(user))
	}
	if err != nil {
		return fmt.Errorf("fetch %s's keys: %w", s.name(user), err)
	}
	var changed bool
	err = s.update(func(tx device.Tx) error {
		if s.e2e.dev.Ready(tx, user) == nil {
			return nil // a session arrived from them meanwhile
		}
		var err error
		changed, err = s.e2e.dev.StartSession(tx, user, &bs[0])
		return err
	})
	if err != nil {
		return err
	}
	if changed {
		s.warnChanged(user)
		return device.ErrUnaccepted
	}
	return nil
}

// warnChanged says loudly that a contact's identity key changed.
func (s *session) warnChanged(user uint64) {
	n := s.name(user)
	s.out.say("!!! %s's SAFETY NUMBER CHANGED: their identity key is not the one you had.", n)
	s.out.say("!!! They may have reinstalled chatd, or someone may be in the middle. Messages to %s wait", n)
	s.out.say("!!! until you check (/verify %s, compared with them in person) and type /accept %s.", n, n)
}

func body(text string) *envelope.Content {
	return &envelope.Content{Type: envelope.ContentBody, Body: []byte(text)}
}

// sendE2E stores and seals a message in one transaction, then sends the
// envelope. A message that cannot be sealed yet (no keys, not connected,
// a changed identity) is stored unsealed and waits for flush.
func (s *session) sendE2E(id codec.MsgID, to uint64, group bool, text string) {
	s.mu.Lock()
	self := s.self
	s.mu.Unlock()
	m := history.Message{ID: id, Chat: to, Group: group, From: self, Time: time.Now(), Body: text}
	if err := s.store.Update(func(tx *history.Tx) error { return tx.AddOutgoing(m, nil) }); err != nil {
		s.out.say("! not sent: %v", err)
		return
	}
	s.flushMu().Lock()
	defer s.flushMu().Unlock()
	if err := s.sealAndSend(history.Outgoing{Message: m}); err != nil {
		s.out.say("  … %s waits: %v", quote(text), err)
	}
}

func (s *session) flushMu() *sync.Mutex { return &s.e2e.flushMu }

// flush seals and sends the stored messages that wait unsealed.
func (s *session) flush() {
	s.flushMu().Lock()
	defer s.flushMu().Unlock()
	msgs, err := s.store.PendingSealed()
	if err != nil {
		s.out.say("! %v", err)
		return
	}
	for _, m := range msgs {
		if m.Sealed != nil {
			continue
		}
		if err := s.sealAndSend(m); err != nil {
			s.out.say("  … %s still waits: %v", quote(m.Body), err)
		}
	}
}

// sealAndSend seals one stored message (1:1 or group) and sends it.
// Callers hold flushMu.
func (s *session) sealAndSend(m history.Outgoing) error {
	if m.Group {
		return s.sealGroup(m)
	}
	var sealed []byte
	seal := func() error {
		return s.store.Update(func(tx *history.Tx) error {
			var err error
			if sealed, err = s.e2e.dev.Seal(tx, m.Chat, body(m.Body)); err != nil {
				return err
			}
			return tx.Seal(m.ID, sealed)
		})
	}
	// Seal first: with a session (the usual case) that is the only read
	// of it. A failed Seal changes nothing, so starting a session and
	// sealing again is safe.
	err := seal()
	if errors.Is(err, device.ErrNoSession) {
		if err = s.ensureSession(m.Chat); err == nil {
			err = seal()
		}
	}
	if err != nil {
		return err
	}
	s.cl.SendID(m.ID, 0, m.Chat, sealed)
	if s.cl.Conn() == nil {
		s.out.say("  … not connected: %s goes (✓) when the connection is back", quote(m.Body))
	}
	return nil
}

// sealGroup sends this device's sender key to the members who lack it
// (over their 1:1 sessions), then the message, encrypted once.
func (s *session) sealGroup(m history.Outgoing) error {
	c := s.cl.Conn()
	if c == nil {
		return errors.New("not connected")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	info, err := c.GroupInfo(ctx, m.Chat)
	cancel()
	if err != nil {
		return err
	}
	var members []uint64
	for _, mem := range info.Members {
		if mem.User != m.From {
			members = append(members, mem.User)
		}
	}
	var need []uint64
	if err := s.update(func(tx device.Tx) error {
		var err error
		need, err = s.e2e.dev.NeedKey(tx, m.Chat, members)
		return err
	}); err != nil {
		return err
	}
	var ready []uint64
	for _, u := range need {
		if err := s.ensureSession(u); err != nil {
			s.out.say("  ! %s cannot read group %d yet: %v", s.name(u), m.Chat, err)
			continue
		}
		ready = append(ready, u)
	}
	var controls []history.Control
	var sealed []byte
	err = s.store.Update(func(tx *history.Tx) error {
		controls = controls[:0]
		dist, err := s.e2e.dev.Distribution(tx, m.Chat)
		if err != nil {
			return err
		}
		for _, u := range ready {
			b, err := s.e2e.dev.Seal(tx, u, dist)
			if err != nil {
				return fmt.Errorf("sender key for %s: %w", s.name(u), err)
			}
			ctl := history.Control{ID: client.NewID(), Peer: u, Body: b}
			if err := tx.AddControl(ctl.ID, u, m.Chat, b); err != nil {
				return err
			}
			if err := s.e2e.dev.MarkHolds(tx, m.Chat, u); err != nil {
				return err
			}
			controls = append(controls, ctl)
		}
		if sealed, err = s.e2e.dev.SealGroup(tx, m.Chat, body(m.Body)); err != nil {
			return err
		}
		return tx.Seal(m.ID, sealed)
	})
	if err != nil {
		return err
	}
	for _, ctl := range controls {
		s.e2e.controls.Store(ctl.ID, true)
		s.cl.SendID(ctl.ID, 0, ctl.Peer, ctl.Body)
	}
	s.cl.SendID(m.ID, codec.FlagGroup, m.Chat, sealed)
	return nil
}

// resendE2E, at start, sends again (DUP) what an earlier run sealed
// without seeing SENT, with the same bytes, then seals what waits.
func (s *session) resendE2E() {
	ctls, err := s.store.Controls()
	if err != nil {
		s.out.say("! %v", err)
	}
	for _, c := range ctls {
		s.e2e.controls.Store(c.ID, true)
		s.cl.SendID(c.ID, codec.FlagDup, c.Peer, c.Body)
	}
	msgs, err := s.store.PendingSealed()
	if err != nil {
		s.out.say("! %v", err)
		return
	}
	n := 0
	for _, m := range msgs {
		if m.Sealed == nil {
			continue
		}
		flags := codec.FlagDup
		if m.Group {
			flags |= codec.FlagGroup
		}
		s.cl.SendID(m.ID, flags, m.Chat, m.Sealed)
		n++
	}
	if n > 0 {
		s.out.say("sending again %d message(s) that had no ✓ when chat last stopped", n)
	}
	s.flush()
}

// Received control messages leave a marker (controlPrefix + hex id), so
// that a redelivery (the server resends until the ack) is recognised
// rather than opened again, which the ratchet would refuse as a replay
// and show as a message that did not decrypt. A redelivery comes soon
// after the first delivery, so only the newest markers are kept: without
// a bound they would grow by one per sender key received, forever.
const (
	controlPrefix     = "e2e/control/"
	maxControlMarkers = 1024
)

// markControl stores a marker with the time it was seen (big-endian
// milliseconds, which order as bytes) and trims the oldest beyond
// maxControlMarkers. Markers written before they carried a time (one
// byte) count as the oldest.
func markControl(tx *history.Tx, key string, now time.Time) error {
	if err := tx.Put(key, binary.BigEndian.AppendUint64(nil, uint64(now.UnixMilli()))); err != nil {
		return err
	}
	_, err := tx.Trim(controlPrefix, maxControlMarkers)
	return err
}

// controlAnswered, on the event loop, handles the server's answer (SENT,
// or an ERROR with the id) to a control message and reports whether id
// was one. SENT drops it from the queue. An ERROR here is a refusal for
// good (the client resends by itself after a retryable one and does not
// pass it on): resending it would be refused again at every start, so it
// is dropped too, the member is marked as not holding the sender key
// (the next group message sends another), and the person is told.
func (s *session) controlAnswered(id codec.MsgID, refused *codec.Error) bool {
	if _, ok := s.e2e.controls.LoadAndDelete(id); !ok {
		return false
	}
	c, ok, err := s.store.DropControl(id)
	if err != nil {
		s.out.say("! %v", err)
		return true
	}
	if !ok || refused == nil {
		return true
	}
	if c.Group != 0 {
		err = s.update(func(tx device.Tx) error { return s.e2e.dev.UnmarkHolds(tx, c.Group, c.Peer) })
	}
	what := "a group key"
	if c.Group != 0 {
		what = fmt.Sprintf("your key for group %d", c.Group)
	}
	s.out.say("  ✗ %s was not delivered to %s: %s (it goes again with your next group message)", what, s.name(c.Peer), explainSendError(refused))
	if err != nil {
		s.out.say("! %v", err)
	}
	return true
}

// storeE2E is the store hook's part for encrypted entries: it opens a
// DELIVER and stores the plaintext with the session's new state in one
// transaction, then puts the plaintext in the frame for the event loop.
// A message that does not open is stored as a note saying so (and
// acknowledged: it would not open next time either); the session is
// unchanged.
func (s *session) storeE2E(d *codec.Deliver) error {
	var text string
	var opened *device.Opened
	var openErr error
	control := controlPrefix + hex.EncodeToString(d.ID[:])
	err := s.store.Update(func(tx *history.Tx) error {
		text, opened, openErr = "", nil, nil
		if m, ok, err := tx.Message(d.ID); err != nil || ok {
			text = m.Body // a redelivery: shown as stored
			return err
		}
		if _, ok, err := tx.Get(control); err != nil || ok {
			opened = &device.Opened{Group: 1} // a control message seen before
			return err
		}
		if d.Group != 0 {
			pt, err := s.e2e.dev.OpenGroup(tx, d.Group, d.From, d.Body)
			if err != nil {
				openErr = err
			}
			text = string(pt)
		} else {
			o, err := s.e2e.dev.Open(tx, d.From, d.Body)
			switch {
			case err != nil:
				openErr = err
			case o.Group != 0:
				opened = o
				return markControl(tx, control, time.Now())
			default:
				opened, text = o, string(o.Body)
			}
		}
		if openErr != nil {
			text = fmt.Sprintf("[could not decrypt: %v]", openErr)
		}
		_, err := tx.AddIncoming(d, text)
		return err
	})
	if err != nil {
		return err
	}
	if opened != nil && opened.Group != 0 {
		s.e2e.hidden.Store(d.ID, true)
		return nil
	}
	if n := (note{changed: opened != nil && opened.NewIdentity, err: openErr}); n.changed || n.err != nil {
		s.e2e.notes.Store(d.ID, n)
	}
	d.Body = []byte(text)
	return nil
}

// note is what storeE2E leaves for the event loop to say.
type note struct {
	changed bool
	err     error
}

// sayNote, on the event loop, says what storeE2E found about a message.
func (s *session) sayNote(d *codec.Deliver) {
	v, ok := s.e2e.notes.LoadAndDelete(d.ID)
	if !ok {
		return
	}
	n := v.(note)
	if n.changed {
		s.warnChanged(d.From)
	}
	if n.err != nil {
		s.out.say("! a message from %s did not decrypt: %v", s.name(d.From), n.err)
	}
}

// groupEventE2E rotates this device's sender key when members leave a
// group, in the same transaction as nothing else: the event is stored
// (by this hook) before it is acknowledged.
func (s *session) groupEventE2E(f *codec.GroupEvent) error {
	var gone []uint64
	switch f.Kind {
	case codec.GroupRemoved:
		for i := 0; i < f.Users.Len(); i++ {
			gone = append(gone, f.Users.At(i))
		}
	case codec.GroupLeft:
		gone = []uint64{f.Actor}
	default:
		return nil
	}
	s.mu.Lock()
	self := s.self
	s.mu.Unlock()
	return s.update(func(tx device.Tx) error {
		for _, u := range gone {
			if u == self {
				return s.e2e.dev.LeftGroup(tx, f.Group)
			}
		}
		return s.e2e.dev.MembersRemoved(tx, f.Group, gone)
	})
}

// verify shows the safety number with a contact.
func (s *session) verify(name string) {
	id, err := s.resolve(name)
	if err != nil {
		s.out.say("! %v", err)
		return
	}
	if err := s.ensureSession(id); err != nil && !errors.Is(err, device.ErrUnaccepted) {
		s.out.say("! %v", err)
		return
	}
	var p device.Peer
	if err := s.update(func(tx device.Tx) error {
		var err error
		p, err = s.e2e.dev.Peer(tx, id)
		return err
	}); err != nil {
		s.out.say("! %v", err)
		return
	}
	mine, err := s.e2e.dev.IdentityKey()
	if err != nil {
		s.out.say("! %v", err)
		return
	}
	s.mu.Lock()
	self := s.self
	s.mu.Unlock()
	key := p.Key
	if p.Changed {
		key = p.New
		s.out.say("(%s's identity key CHANGED and is not accepted yet: this is the number for the new key)", name)
	}
	num := device.SafetyNumber(self, mine, id, key)
	g := strings.Fields(num)
	s.out.say("safety number with %s (compare it with theirs, in person or on a call):", name)
	s.out.say("  %s", strings.Join(g[:4], " "))
	s.out.say("  %s", strings.Join(g[4:8], " "))
	s.out.say("  %s", strings.Join(g[8:], " "))
	s.out.say("safety number with %s: %s", name, strings.Join(g, ""))
}

// accept pins a contact's new identity key and sends what waited.
func (s *session) accept(name string) {
	id, err := s.resolve(name)
	if err != nil {
		s.out.say("! %v", err)
		return
	}
	var changed bool
	if err := s.update(func(tx device.Tx) error {
		var err error
		changed, err = s.e2e.dev.AcceptIdentity(tx, id)
		return err
	}); err != nil {
		s.out.say("! %v", err)
		return
	}
	if !changed {
		s.out.say("%s's identity key has not changed: nothing to accept", name)
		return
	}
	s.out.say("accepted %s's new identity key; sending what waited", name)
	s.flush()
}

// identityNotice handles IDENTITY_CHANGED from the server.
func (s *session) identityNotice(f *codec.IdentityChanged) {
	if err := s.update(func(tx device.Tx) error { return s.e2e.dev.IdentityChanged(tx, f.User) }); err != nil {
		s.out.say("! %v", err)
		return
	}
	s.out.say("!!! the server says %s has a new identity key; the next message to them checks it", s.name(f.User))
}
