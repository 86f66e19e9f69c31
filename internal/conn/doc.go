// Package conn runs chatd's TCP connections on a netpoll event loop: it
// accepts sockets, splits their input into frames, and owns the one write
// path of every connection. It knows frames and transports, not users: what
// a frame means is the Handler's business.
//
// # Connection lifecycle
//
//	accept (poller)        OnPrepare: allocate Conn, register for sweeping, add close callback
//	   |
//	input ready            OnRequest: read the preamble, then whole frames -> Handler.Frame;
//	   |  (poller or pool)  flush what the handler queued for this connection. On the
//	   |                   poller, after its batch of events, when the input is whole
//	   |                   frames the Handler runs without waiting (inline.go); else
//	   |                   on a pool worker
//	   |   ... idle: no goroutine, no timer, only the Conn and netpoll's buffers ...
//	   |
//	closing (one owner)    whoever sets stateClosed first owns the close: Close (handler
//	   |                   error, bad input, sweeper, Shutdown), slowConsumer, closeQuiet.
//	   |                   From then on Begin and Flush refuse; the owner makes one last
//	   |                   non-blocking write of the queue and calls netpoll's Close.
//	close callback         sets stateClosed (the peer may have gone first), takes mu once
//	                       as a barrier, frees the queue, unregisters, Handler.Closed;
//	                       netpoll then waits out a slow flusher's Write and closes the fd
//
// There is one closed flag, stateClosed. A queue that overflows is closed
// asynchronously (End's caller may hold locks Handler.Closed takes); a
// slow flusher whose write times out closes from its own goroutine, which
// holds no lock while netpoll runs the close callback on it.
//
// netpoll runs at most one OnRequest per connection at a time, and runs the
// close callbacks only after OnRequest has returned, before it closes the
// file descriptor and frees its buffers. Handler.Closed therefore never runs
// concurrently with Handler.Frame for the same connection. netpoll runs the
// callbacks on the goroutine that calls Close, unless OnRequest is running,
// which then runs them on its way out.
//
// # Reading
//
// OnRequest never returns with a partial frame consumed: it peeks the 4-byte
// length, checks it against the limit before anything is buffered, and then
// waits (bounded by Config.ReadTimeout) for the whole frame. Only a turn on
// a pool worker can wait: a turn runs on the poller only when every frame
// is in already. Returning with
// unread bytes would make netpoll call it again in a busy loop.
//
// # Writing
//
// A netpoll Connection is not safe for concurrent writers, and writing after
// close panics. So every byte goes through Conn's outbound queue:
//
//   - Any goroutine appends frames between Begin and End (a mutex held for
//     the time it takes to encode a frame). End reports when the queue went
//     from empty to non-empty, so the producer can flush it once after a
//     batch (one write per destination per batch, not per frame).
//   - EndLazy queues a frame that may wait (a receipt): it leaves with the
//     connection's next flushed frame, or after Config.LazyDelay from the
//     one lazy flusher goroutine (lazy.go). End after lazy frames reports
//     the queue as needing a flush, so an eager frame never waits for them.
//   - Flush writes the queue with one non-blocking write(2) on the socket,
//     under the same mutex, so the close callback cannot close the fd in the
//     middle of it. Nothing blocks: a socket that takes everything (the usual
//     case) never allocates netpoll's output buffer.
//   - When the kernel takes only part, the rest goes to one slow-path
//     flusher goroutine that uses netpoll's Write, which waits for the
//     socket with Config.WriteTimeout and holds no lock of ours meanwhile.
//     While it runs, producers keep appending; if the queue passes
//     Config.MaxOutbound bytes, or the write times out, the connection is
//     closed as a slow consumer (ERROR 51).
//
// The queue is a pooled buffer, taken when the first frame is queued and
// returned when a flush empties it: an idle connection holds none.
//
// # Deadlines
//
// The sweeper checks the connections not yet authenticated every
// Config.SweepInterval (250 ms) against AuthTimeout, and every connection
// every max(SweepInterval, Keepalive/64) against Keepalive, using
// millisecond stamps from the monotonic clock: an auth deadline T is met
// between T and T + SweepInterval, a keepalive deadline between T and
// T + max(SweepInterval, Keepalive/64) (2.8 s with the default 3 minutes).
//
// # Bad input
//
// Every close for bad input or a stalled peer is counted by Reason
// (Snapshot.BadInput) and logged: the first few of each reason per
// Config.LogInterval with the peer's address, then one summary line.
//
// # WebSocket
//
// A second listener (Server.ListenWS) takes WebSocket clients on the same
// pollers and pool. websocket.go turns their binary frames back into
// chatd's byte stream, which the same preamble, record and frame readers
// read, and wraps each flush in one binary frame; the HTTP upgrade is
// buffered between turns, never waited for. Nothing above this package
// can tell the two apart.
//
// # Lock order
//
//	registry shard lock  ->  (nothing: held only to add, remove or look)
//	Conn.mu              ->  netpoll's internal locks (write(2), Seal)
//
// Conn.mu is never held while calling out: not across Close, netpoll's
// Close or Write, the Handler, or the logger. The close callback takes
// Conn.mu and then a registry shard lock, one after the other, never
// nested, and then calls Handler.Closed holding neither. So:
//
//   - Never call Close, Write, Begin/End or Flush while holding Conn.mu.
//   - Close runs the close callback, and so Handler.Closed, on the calling
//     goroutine: do not call it while holding a lock Handler.Closed takes.
//   - Handler.Frame runs holding no conn lock; Handler.Closed runs holding
//     none, on the closer's goroutine (pool, sweeper, a flusher, an
//     asynchronous closer, or the caller of Close or Shutdown).
//   - End may be called holding the caller's locks: its slow-consumer close
//     runs on a goroutine of its own.
package conn
