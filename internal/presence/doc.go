// Package presence tells watchers when the users they watch come online,
// go offline or hide, and keeps each user's last-seen time and privacy
// flags.
//
// # Coalescing
//
// A user's change only marks the user dirty; one goroutine (the tick)
// sends each dirty user's current state once per interval. Each watcher
// remembers the last state it was sent about each user and is never sent
// the same state twice in a row. So a watcher gets at most one update per
// interval about one user, and a connection that flaps faster than the
// interval costs its watchers nothing until its state really differs.
//
// # Storage
//
// Last seen and the privacy flags persist together, in the key space
// package store describes:
//
//	'l' | user (8)  ->  last seen, unix ms (8) | privacy flags (1)
//
// The tick writes last-seen times without Sync: a crash may lose the last
// few seconds of them, never a message. SetPrivacy makes its write durable
// before it returns.
//
// # Locks
//
// In order: the caller's lock around Subscribe (the server's session route lock),
// then the tracker's mu, then a watcher's queue lock (Watcher.Write).
// PRESENCE frames are queued under mu, so a watcher's updates about one
// user are queued in the order they were decided. wmu, which makes each
// read-modify-write of an 'l' key whole, is a leaf lock, never held
// across an fsync.
package presence
