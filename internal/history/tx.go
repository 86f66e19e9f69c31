package history

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/chatd/chatd/codec"
)

// Tx is one SQLite transaction over the store: end-to-end encryption
// writes a session's new state and the message it decrypted (or
// encrypted) together, so a crash never leaves one without the other.
type Tx struct {
	tx *sql.Tx
}

// Update runs fn in one transaction, committed if fn returns nil and
// rolled back otherwise.
func (s *Store) Update(fn func(*Tx) error) error {
	tx, err := s.db.Begin()
	if err != nil {
		return fmt.Errorf("history: begin: %w", err)
	}
	if err := fn(&Tx{tx: tx}); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("history: commit: %w", err)
	}
	return nil
}

// Get returns the value stored under key (ok false if none).
func (t *Tx) Get(key string) ([]byte, bool, error) {
	var v []byte
	err := t.tx.QueryRow(`SELECT value FROM kv WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("history: get %s: %w", key, err)
	}
	return v, true, nil
}

// Put stores value under key, replacing any.
func (t *Tx) Put(key string, value []byte) error {
	_, err := t.tx.Exec(`INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	if err != nil {
		return fmt.Errorf("history: put %s: %w", key, err)
	}
	return nil
}

// Delete removes key (nothing if absent).
func (t *Tx) Delete(key string) error {
	if _, err := t.tx.Exec(`DELETE FROM kv WHERE key = ?`, key); err != nil {
		return fmt.Errorf("history: delete %s: %w", key, err)
	}
	return nil
}

// Keys lists the keys starting with prefix, in order.
func (t *Tx) Keys(prefix string) ([]string, error) {
	// A range scan, not LIKE: prefix may hold % or _.
	rows, err := t.tx.Query(`SELECT key FROM kv WHERE key >= ? AND key < ? ORDER BY key`, prefix, prefix+"\U0010FFFF")
	if err != nil {
		return nil, fmt.Errorf("history: keys %s: %w", prefix, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, fmt.Errorf("history: keys %s: %w", prefix, err)
		}
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out, rows.Err()
}

// Trim keeps at most keep of the keys starting with prefix, those with
// the greatest values (shorter values count as smaller, then bytewise:
// big-endian timestamps order by time), and deletes the rest. It returns
// how many it deleted.
func (t *Tx) Trim(prefix string, keep int) (int, error) {
	res, err := t.tx.Exec(`DELETE FROM kv WHERE key IN (
		SELECT key FROM kv WHERE key >= ? AND key < ?
		ORDER BY length(value) DESC, value DESC, key DESC LIMIT -1 OFFSET ?)`,
		prefix, prefix+"\U0010FFFF", keep)
	if err != nil {
		return 0, fmt.Errorf("history: trim %s: %w", prefix, err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// AddIncoming stores a received message with body as its text (the
// plaintext, when d.Body is an envelope). It reports false when the
// message was stored before (a redelivery), leaving it unchanged.
func (t *Tx) AddIncoming(d *codec.Deliver, body string) (bool, error) {
	chat, group := d.From, false
	if d.Group != 0 {
		chat, group = d.Group, true
	}
	res, err := t.tx.Exec(`INSERT INTO messages (id, chat, is_group, sender, outgoing, time, body, state)
		VALUES (?, ?, ?, ?, 0, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		d.ID[:], int64(chat), group, int64(d.From), int64(d.Time), body, Delivered)
	if err != nil {
		return false, fmt.Errorf("history: store message: %w", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// Message returns one message by id.
func (t *Tx) Message(id codec.MsgID) (Message, bool, error) {
	m, err := scan(t.tx.QueryRow(`SELECT `+columns+` FROM messages WHERE id = ?`, id[:]))
	if errors.Is(err, sql.ErrNoRows) {
		return m, false, nil
	}
	if err != nil {
		return m, false, fmt.Errorf("history: %w", err)
	}
	return m, true, nil
}

// AddOutgoing stores a message about to be sent, as Pending, with the
// envelope it goes out in (nil: not sealed yet).
func (t *Tx) AddOutgoing(m Message, sealed []byte) error {
	_, err := t.tx.Exec(`INSERT INTO messages (id, chat, is_group, sender, outgoing, time, body, state, sealed)
		VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?)`,
		m.ID[:], int64(m.Chat), m.Group, int64(m.From), m.Time.UnixMilli(), m.Body, Pending, sealed)
	if err != nil {
		return fmt.Errorf("history: store message: %w", err)
	}
	return nil
}

// Seal records the envelope a pending message goes out in.
func (t *Tx) Seal(id codec.MsgID, sealed []byte) error {
	if _, err := t.tx.Exec(`UPDATE messages SET sealed = ? WHERE id = ?`, sealed, id[:]); err != nil {
		return fmt.Errorf("history: seal message: %w", err)
	}
	return nil
}

// AddControl queues a control message (a sender-key distribution for
// group) for peer until the server has it (DropControl on SENT) or
// refuses it for good.
func (t *Tx) AddControl(id codec.MsgID, peer, group uint64, body []byte) error {
	if _, err := t.tx.Exec(`INSERT INTO e2e_outbox (id, peer, grp, body) VALUES (?, ?, ?, ?)`, id[:], int64(peer), int64(group), body); err != nil {
		return fmt.Errorf("history: queue control message: %w", err)
	}
	return nil
}

// Control is a queued control message.
type Control struct {
	ID    codec.MsgID
	Peer  uint64
	Group uint64 // 0 for rows queued before the group was recorded
	Body  []byte
}

// Controls returns the control messages the server has not confirmed, in
// the order they were queued.
func (s *Store) Controls() ([]Control, error) {
	rows, err := s.db.Query(`SELECT id, peer, grp, body FROM e2e_outbox ORDER BY rowid`)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer rows.Close()
	var out []Control
	for rows.Next() {
		var c Control
		var id []byte
		var peer, group int64
		if err := rows.Scan(&id, &peer, &group, &c.Body); err != nil {
			return nil, fmt.Errorf("history: %w", err)
		}
		copy(c.ID[:], id)
		c.Peer, c.Group = uint64(peer), uint64(group)
		out = append(out, c)
	}
	return out, rows.Err()
}

// DropControl forgets a control message the server confirmed (SENT) or
// refused for good; it returns the row and reports whether id was one.
func (s *Store) DropControl(id codec.MsgID) (Control, bool, error) {
	c := Control{ID: id}
	var peer, group int64
	err := s.db.QueryRow(`DELETE FROM e2e_outbox WHERE id = ? RETURNING peer, grp, body`, id[:]).Scan(&peer, &group, &c.Body)
	if errors.Is(err, sql.ErrNoRows) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("history: drop control message: %w", err)
	}
	c.Peer, c.Group = uint64(peer), uint64(group)
	return c, true, nil
}

// Outgoing is a pending outgoing message and its envelope (nil when not
// sealed yet).
type Outgoing struct {
	Message
	Sealed []byte
}

// PendingSealed returns the outgoing messages that never got SENT, oldest
// first, with their envelopes.
func (s *Store) PendingSealed() ([]Outgoing, error) {
	rows, err := s.db.Query(`SELECT ` + columns + `, sealed FROM messages WHERE outgoing = 1 AND state = 0 ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer rows.Close()
	var out []Outgoing
	for rows.Next() {
		var o Outgoing
		var id []byte
		var chat, from, ms int64
		if err := rows.Scan(&id, &chat, &o.Group, &from, &o.Outgoing, &ms, &o.Body, &o.State, &o.Sealed); err != nil {
			return nil, fmt.Errorf("history: %w", err)
		}
		copy(o.ID[:], id)
		o.Chat, o.From = uint64(chat), uint64(from)
		o.Time = time.UnixMilli(ms)
		out = append(out, o)
	}
	return out, rows.Err()
}
