// Package server is chatd: it joins the connection layer (conn), the
// session table and delivery (router: push, drain, ack), accounts and
// inboxes (account, offline), groups and presence into the protocol
// PROTOCOL.md describes. Frames arrive from conn's event loop; writes that must be durable go through the inbox's
// lanes (messages, receipts, acks) or the server's commit lanes (group
// changes, PRIVACY, LOGOUT, block and contact lists); deliveries go out
// through each connection's single write path. Account deletion runs
// its steps on a goroutine of its own (delete.go, deleters.go).
//
// # Lock order
//
// This is the whole process's lock order, written once. A goroutine that
// holds a lock may take only locks below it in the list; each package's
// doc gives the detail of its own.
//
//	group.Group.wmu     one group's change at a time; held across that change's
//	                    fsync, only on a commit lane (commits.go), never on the event loop
//	group.Group.Mu      (RW) the group's members and message order; senders hold it
//	                    for reading while they queue a message to the members' lanes;
//	                    never held across an fsync
//	group.Store.mu      the map of loaded groups; lookups and store reads only
//	router.Session.mu   a connection's delivery state (pushed, acked, window, backlog;
//	                    router/session.go), kept inline as session.route, whose lock also
//	                    guards the token and subscriptions (session.go)
//	presence.Tracker.mu watchers and dirty users; PRESENCE frames are queued under it
//	router shard mu     (RW) the session table: Lookup, Swap, Remove
//	offline lane.mu     a lane's queue: Submit and friends only append
//	conn.Conn.mu        a connection's outbound queue; held only to append, seal and
//	                    write(2) without blocking; never held while calling out
//	conn registry mu    the sweeper's shard of open connections; a leaf
//	conn lazyQueue.mu   connections holding only lazy frames (receipts), taken by
//	                    EndLazy after it released Conn.mu, and by the lazy flusher; a leaf
//
// Leaves, never held while taking another of the locks above: presence.Tracker.wmu
// (one read-modify-write of a last-seen key, a NoSync commit),
// account.Store.mu (registrations: name check and id; held across the
// account's Sync commit, on a registration goroutine), offline seqAlloc.mu,
// offline Inbox.liveMu (arming the live timer, under a lane.mu),
// loginLimiter.mu, admission.Control.mu, the block.Store shard mu (RW:
// read on the event loop by SEND, TYPING and READ, and under
// presence.Tracker.mu by the hide filter). block.Store.wmu (one list
// change, held across its Sync commit on a commit lane) takes only a
// shard mu.
//
// Rules that keep the order honest:
//
//   - Nothing that closes a connection runs under a lock its close callback
//     takes. Closed (handle.go) takes the router shard, route and presence's mu,
//     and netpoll runs it on the goroutine that calls Close: so Close,
//     kick and fatal are called holding none of the locks above. conn.End
//     may be called holding any of them: its slow-consumer close is
//     asynchronous.
//   - No fsync on a netpoll goroutine or under Group.Mu, route, presence's mu
//     or Conn.mu: durable writes go to the inbox lanes (offline) or the
//     commit lanes (commits.go), and answers are queued when they are
//     durable.
//   - The inbox calls its hooks (Applied, Durable, MarkRead's done) from
//     lane and syncer goroutines holding no offline lock; the hooks take
//     route (router.Router.Applied) and then Conn.mu.
package server
