// Package history is a chat client's local message store: the messages a
// user sent and received, its contacts, and room for other per-user state
// (key/value), in one SQLite file on the user's machine. The server keeps
// a message only until it is delivered (PROTOCOL.md), so history and
// search live here, as on a phone; the server never sees a search.
package history

import (
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chatd/chatd/codec"
	_ "modernc.org/sqlite" // pure Go, with FTS5
)

// State is where a message stands. An outgoing message climbs Pending,
// Sent, Delivered, Read (the ticks) or ends Failed or Expired; an
// incoming one is Delivered until its reader reads it.
type State uint8

const (
	Pending   State = 0 // outgoing, no SENT yet
	Sent      State = 1 // the server stored it: ✓
	Delivered State = 2 // the recipient's client stored it: ✓✓ (incoming: unread)
	Read      State = 3 // the recipient read it: ✓✓ read
	Failed    State = 4 // refused for good (an ERROR with its id)
	Expired   State = 5 // expired unread in the recipient's inbox
)

func (s State) String() string {
	switch s {
	case Pending:
		return "pending"
	case Sent:
		return "sent"
	case Delivered:
		return "delivered"
	case Read:
		return "read"
	case Failed:
		return "failed"
	case Expired:
		return "expired"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Message is one stored message.
type Message struct {
	ID       codec.MsgID
	Chat     uint64 // the other user, or the group when Group
	Group    bool
	From     uint64
	Outgoing bool
	Time     time.Time
	Body     string
	State    State
}

// Store is an open message store. It is safe for concurrent use.
type Store struct {
	db *sql.DB
}

// DefaultPath is where a user's store lives unless told otherwise:
// $XDG_DATA_HOME/chatd/<server>-<user>.db, or under ~/.local/share when
// XDG_DATA_HOME is unset. One file per server and user, as one user name
// on two servers is two people.
func DefaultPath(server, user string) (string, error) {
	dir := os.Getenv("XDG_DATA_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("history: no home directory for the store (pass --store): %w", err)
		}
		dir = filepath.Join(home, ".local", "share")
	}
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			return r
		}
		return '_'
	}, server)
	return filepath.Join(dir, "chatd", clean+"-"+user+".db"), nil
}

// Open opens (creating if needed) the store at path and brings its schema
// up to date.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	// WAL with synchronous=FULL: a committed message survives a crash of
	// the process and of the machine, which the acknowledgement to the
	// server (after which the server deletes it) relies on.
	q := url.Values{"_pragma": {"busy_timeout(5000)", "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(1)"}}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("history: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // one writer anyway; this also keeps the pragmas on one connection
	if err := migrate(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("%w (store %s)", err, path)
	}
	os.Chmod(path, 0o600) // private messages
	return &Store{db: db}, nil
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

// AddIncoming stores a delivered message. It is idempotent: a message the
// server sends again (stored but not yet acknowledged before a crash) is
// stored once.
func (s *Store) AddIncoming(d *codec.Deliver) error {
	chat, group := d.From, false
	if d.Group != 0 {
		chat, group = d.Group, true
	}
	_, err := s.db.Exec(`INSERT INTO messages (id, chat, is_group, sender, outgoing, time, body, state)
		VALUES (?, ?, ?, ?, 0, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		d.ID[:], int64(chat), group, int64(d.From), int64(d.Time), string(d.Body), Delivered)
	if err != nil {
		return fmt.Errorf("history: store message: %w", err)
	}
	return nil
}

// AddOutgoing stores a message about to be sent, as Pending.
func (s *Store) AddOutgoing(m Message) error {
	_, err := s.db.Exec(`INSERT INTO messages (id, chat, is_group, sender, outgoing, time, body, state)
		VALUES (?, ?, ?, ?, 1, ?, ?, ?)`,
		m.ID[:], int64(m.Chat), m.Group, int64(m.From), m.Time.UnixMilli(), m.Body, Pending)
	if err != nil {
		return fmt.Errorf("history: store message: %w", err)
	}
	return nil
}

// Advance moves an outgoing message to st if that is further along
// (receipts may come out of order: a read before a delivered) and
// reports the message and whether it changed. Failed and Expired are
// final, and only replace Pending or Sent (a message delivered did not
// fail). With at set (SENT's time) the message takes the server's time.
func (s *Store) Advance(id codec.MsgID, st State, at time.Time) (Message, bool, error) {
	ceiling := Read // the highest state st may replace, plus one
	if st > Read {
		ceiling = Delivered
	}
	q := `UPDATE messages SET state = ? WHERE id = ? AND outgoing = 1 AND state < ? AND state < ?`
	args := []any{st, id[:], st, ceiling}
	if !at.IsZero() {
		q = `UPDATE messages SET state = ?, time = ? WHERE id = ? AND outgoing = 1 AND state < ? AND state < ?`
		args = []any{st, at.UnixMilli(), id[:], st, ceiling}
	}
	res, err := s.db.Exec(q, args...)
	if err != nil {
		return Message{}, false, fmt.Errorf("history: update message: %w", err)
	}
	n, _ := res.RowsAffected()
	m, ok, err := s.Message(id)
	if err != nil || !ok {
		return m, false, err
	}
	return m, n > 0, nil
}

const columns = `id, chat, is_group, sender, outgoing, time, body, state`

func scan(row interface{ Scan(...any) error }) (Message, error) {
	var m Message
	var id []byte
	var chat, from, ms int64
	if err := row.Scan(&id, &chat, &m.Group, &from, &m.Outgoing, &ms, &m.Body, &m.State); err != nil {
		return m, err
	}
	copy(m.ID[:], id)
	m.Chat, m.From, m.Time = uint64(chat), uint64(from), time.UnixMilli(ms)
	return m, nil
}

func (s *Store) query(q string, args ...any) ([]Message, error) {
	rows, err := s.db.Query(q, args...)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer rows.Close()
	var out []Message
	for rows.Next() {
		m, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("history: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	return out, nil
}

// Message returns one message by id.
func (s *Store) Message(id codec.MsgID) (Message, bool, error) {
	m, err := scan(s.db.QueryRow(`SELECT `+columns+` FROM messages WHERE id = ?`, id[:]))
	if errors.Is(err, sql.ErrNoRows) {
		return m, false, nil
	}
	if err != nil {
		return m, false, fmt.Errorf("history: %w", err)
	}
	return m, true, nil
}

// History returns the last limit messages of a chat, oldest first.
func (s *Store) History(chat uint64, group bool, limit int) ([]Message, error) {
	return s.query(`SELECT `+columns+` FROM (
		SELECT seq, `+columns+` FROM messages WHERE chat = ? AND is_group = ? ORDER BY time DESC, seq DESC LIMIT ?
	) ORDER BY time, seq`, int64(chat), group, limit)
}

// Search finds messages holding all the words (in any order, any chat),
// newest last. Words are matched as FTS5 tokens: case-insensitive, whole
// words; a word ending in * matches as a prefix.
func (s *Store) Search(words string, limit int) ([]Message, error) {
	var terms []string
	for _, w := range strings.Fields(words) {
		prefix := strings.HasSuffix(w, "*")
		w = strings.TrimRight(w, "*")
		if w == "" {
			continue
		}
		t := `"` + strings.ReplaceAll(w, `"`, `""`) + `"` // a literal, never FTS5 syntax
		if prefix {
			t += "*"
		}
		terms = append(terms, t)
	}
	if len(terms) == 0 {
		return nil, nil
	}
	return s.query(`SELECT `+columns+` FROM (
		SELECT m.seq, `+prefixed("m.")+` FROM messages_fts f JOIN messages m ON m.seq = f.rowid
		WHERE messages_fts MATCH ? ORDER BY m.time DESC, m.seq DESC LIMIT ?
	) ORDER BY time, seq`, strings.Join(terms, " "), limit)
}

func prefixed(p string) string {
	f := strings.Split(columns, ", ")
	for i := range f {
		f[i] = p + f[i]
	}
	return strings.Join(f, ", ")
}

// Unread returns the incoming messages of a chat not yet marked read,
// oldest first.
func (s *Store) Unread(chat uint64, group bool) ([]Message, error) {
	return s.query(`SELECT `+columns+` FROM messages WHERE chat = ? AND is_group = ? AND outgoing = 0 AND state = ? ORDER BY time, seq`,
		int64(chat), group, Delivered)
}

// MarkRead marks incoming messages read.
func (s *Store) MarkRead(ids ...codec.MsgID) error {
	tx, err := s.db.Begin()
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	defer tx.Rollback()
	for _, id := range ids {
		if _, err := tx.Exec(`UPDATE messages SET state = ? WHERE id = ? AND outgoing = 0`, Read, id[:]); err != nil {
			return fmt.Errorf("history: mark read: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("history: mark read: %w", err)
	}
	return nil
}

// Pending returns outgoing messages that never got SENT (the process
// ended first), oldest first, to be sent again with DUP.
func (s *Store) Pending() ([]Message, error) {
	return s.query(`SELECT ` + columns + ` FROM messages WHERE outgoing = 1 AND state = 0 ORDER BY seq`)
}

// SetContact records a user's name.
func (s *Store) SetContact(user uint64, name string) error {
	_, err := s.db.Exec(`INSERT INTO contacts (user, name) VALUES (?, ?)
		ON CONFLICT (user) DO UPDATE SET name = excluded.name`, int64(user), name)
	if err != nil {
		return fmt.Errorf("history: store contact: %w", err)
	}
	return nil
}

// Contacts returns every known user id and name.
func (s *Store) Contacts() (map[uint64]string, error) {
	rows, err := s.db.Query(`SELECT user, name FROM contacts`)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer rows.Close()
	out := map[uint64]string{}
	for rows.Next() {
		var id int64
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			return nil, fmt.Errorf("history: %w", err)
		}
		out[uint64(id)] = name
	}
	return out, rows.Err()
}

// Get returns the value stored under key (ok false if none).
func (s *Store) Get(key string) (value []byte, ok bool, err error) {
	err = s.db.QueryRow(`SELECT value FROM kv WHERE key = ?`, key).Scan(&value)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("history: get %s: %w", key, err)
	}
	return value, true, nil
}

// Put stores value under key, replacing any.
func (s *Store) Put(key string, value []byte) error {
	_, err := s.db.Exec(`INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	if err != nil {
		return fmt.Errorf("history: put %s: %w", key, err)
	}
	return nil
}
