package history

import (
	"database/sql"
	"fmt"
)

// migrations bring the schema from version i to i+1 (PRAGMA user_version
// holds the version). Append only: a released migration never changes,
// since stores in the field have already run it.
var migrations = []string{
	// 1: contacts, messages with full-text search, and a key/value table
	// for state other features keep beside the messages (end-to-end
	// encryption sessions, for one).
	`CREATE TABLE contacts (
		user INTEGER PRIMARY KEY,
		name TEXT NOT NULL UNIQUE
	);
	CREATE TABLE messages (
		seq      INTEGER PRIMARY KEY,  -- local insertion order; the FTS rowid
		id       BLOB NOT NULL UNIQUE, -- the 16-byte message id
		chat     INTEGER NOT NULL,     -- the other user (one-to-one) or the group
		is_group INTEGER NOT NULL,
		sender   INTEGER NOT NULL,
		outgoing INTEGER NOT NULL,
		time     INTEGER NOT NULL,     -- unix ms: the server's, or local until SENT
		body     TEXT NOT NULL,
		state    INTEGER NOT NULL      -- see State
	);
	CREATE INDEX messages_chat ON messages (chat, is_group, time);
	CREATE INDEX messages_pending ON messages (state) WHERE state = 0;
	CREATE VIRTUAL TABLE messages_fts USING fts5 (body, content='messages', content_rowid='seq');
	CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
		INSERT INTO messages_fts (rowid, body) VALUES (new.seq, new.body);
	END;
	CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
		INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.seq, old.body);
	END;
	CREATE TABLE kv (
		key   TEXT PRIMARY KEY,
		value BLOB NOT NULL
	);`,
	// 2: end-to-end encryption. An outgoing message keeps the envelope it
	// went out in (sealed), so a resend after a restart repeats the same
	// bytes instead of advancing the ratchet; NULL means not sealed yet
	// (no session, or the contact's new identity key is not accepted).
	// e2e_outbox holds control messages (sender-key distributions) until
	// the server has them. Keys, sessions and sender keys live in kv
	// under "e2e/" (internal/e2e/device, STORAGE section).
	`ALTER TABLE messages ADD COLUMN sealed BLOB;
	CREATE TABLE e2e_outbox (
		id      BLOB PRIMARY KEY, -- the 16-byte message id
		peer    INTEGER NOT NULL, -- the user it goes to
		body    BLOB NOT NULL     -- the envelope
	);`,
	// 3: the group a control message carries a sender key for, so a
	// permanent refusal can mark the member as not holding it (0: not
	// known, a row from before this migration).
	`ALTER TABLE e2e_outbox ADD COLUMN grp INTEGER NOT NULL DEFAULT 0;`,
}

// migrate runs the migrations the store has not run yet, each in its own
// transaction with its version bump.
func migrate(db *sql.DB) error {
	var v int
	if err := db.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil {
		return fmt.Errorf("history: read schema version: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("history: store has schema version %d, this chatd knows up to %d: use a newer chatd", v, len(migrations))
	}
	for ; v < len(migrations); v++ {
		tx, err := db.Begin()
		if err != nil {
			return fmt.Errorf("history: migrate to %d: %w", v+1, err)
		}
		if _, err := tx.Exec(migrations[v]); err != nil {
			tx.Rollback()
			return fmt.Errorf("history: migrate to %d: %w", v+1, err)
		}
		if _, err := tx.Exec(fmt.Sprintf(`PRAGMA user_version = %d`, v+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("history: migrate to %d: %w", v+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("history: migrate to %d: %w", v+1, err)
		}
	}
	return nil
}
