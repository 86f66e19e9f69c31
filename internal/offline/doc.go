// Package offline keeps every user's inbox: the ordered log of messages,
// receipts and group events waiting for that user's client to acknowledge
// them. It is the store half of store-and-forward. An entry lives only
// until the client acknowledges it (or its retention expires).
//
// # Keys
//
//	'i' | user (8) | seq (8)               -> entry (see entry.go)
//	'd' | day (4) | sender (8) | id (16)   -> recipient (8) | seq (8) | time (8) | body hash (8)   dedup window
//
// Ids are unique per sender only, so the dedup key is (sender, id); the
// recipient is a user or a group, and the hash (FNV-1a) tells a reused id
// with another body. Records written before the hash are 24 bytes. Every
// message is checked against the window; an in-memory filter of the
// window's pairs (seen.go) spares the Pebble lookups for new ids.
//
// Big-endian integers make one user's entries a contiguous, seq-ordered key
// range, read with an iterator bounded to it. An entry key is Set once
// (seqs are never reused) and deleted with SingleDelete, which Pebble drops
// together with the Set when they meet: an entry delivered before its
// memtable flushes leaves nothing on disk, not even a tombstone.
//
// # The commit pipeline
//
// Writes go through lanes. A user's inbox belongs to exactly one lane
// (chosen by hashing the user id), and each lane is one goroutine that
// loops:
//
//	take every queued op                 (ops for many users, from many senders)
//	assign seqs, encode entries          (one Pebble batch)
//	ApplyNoSyncWait(batch)               (visible now: readers see it in seq order)
//	hooks.Applied(entries)               (the server pushes to online recipients at once)
//	hand the batch to the lane's syncer  (SyncWait, then hooks.Durable: "sent" acks)
//
// Callers submit typed values: a Message (Submit, SubmitGroup), a
// Receipt, a GroupEvent. Acks, deletes, expiries, body releases and READ
// checks are internal commands. A lane works on one internal op per
// write (ops.go): the entry it writes, or the command's own fields; a
// Message carries its op, so storing one costs one allocation. The
// inbox is generic in the sender's handle (the server's connection),
// which Hooks.Durable gives back with each message's outcome.
//
// Lanes reach the store only through env (env.go): batch, apply, wait for
// the sync, get, iterate. Pebble is one env; the tests run lanes over an
// in-memory one, so the commit rules are tested without a disk.
//
// Invariants:
//
//  1. Seqs of one inbox increase in the order its ops were queued, because
//     one goroutine assigns them, from a counter shared by all lanes that
//     only grows (seq.go). So per-sender order holds in every inbox. A
//     live delivery takes its seq only while none of the inbox's ops is
//     queued or being committed, under the lane's lock, and pushes before
//     releasing it.
//  2. An entry is visible before anyone is told of it: Applied runs after
//     the apply, so a client can acknowledge (and delete) an entry only
//     after the entry exists, and the delete follows it in the WAL.
//  3. "Sent" only after fsync: Durable runs after SyncWait (or, for a
//     message delivered live and never stored, after its recipient's ACK:
//     LiveAcked; live.go). Many lanes keep
//     many batches in flight, and Pebble's commit pipeline folds their
//     syncs into shared fsyncs (measured 139K commits/s with 256 concurrent
//     writers on the target machine, 3.1K/s with one).
//  4. A delete of acknowledged or expired entries is queued only after the
//     delivered or expired receipts it produces are durable, so a crash can
//     repeat a delivery (the client drops the duplicate by id) but never
//     lose a receipt (a receipt of a message acknowledged live is not
//     stored when it can go with the message's SENT: live.go). Nobody
//     waits for that delete, so it is queued lazily:
//     it rides with the lane's next batch, or goes Config.LazyOps (100 ms)
//     later, which at moderate load saves a batch and a sync per message.
//     Until it applies, the lane holds the entries in its
//     settling set: another ack or an expiry skips them, so each entry
//     gets one receipt and is counted out once.
//  5. An entry older than the TTL is never returned by Read nor pushed
//     (Expiring): the reader queues an expiry op, which settles it like an
//     ack with an expired receipt. The periodic sweep finds the rest.
//  6. A lane's per-inbox counts (depth) are exact: the start-up pass counts
//     every inbox from a snapshot taken before any lane writes, and the
//     lane adds its changes since start. Until that count arrives, quota
//     checks count the inbox's keys (bounded by the quota), erring full.
//
// Designs rejected: one global committer goroutine (serialises every
// apply behind one core and is exactly what the measurements warn about);
// a Commit(Sync) per message from the sender's goroutine (holds an event
// loop goroutine for a whole fsync and pushes only after the sync).
package offline
