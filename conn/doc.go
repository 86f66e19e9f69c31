// Package conn runs chatd's TCP connections on a netpoll event loop: it
// accepts sockets, splits their input into frames, and owns the one write
// path of every connection. It knows frames and transports, not users: what
// a frame means is the Handler's business.
//
// # Connection lifecycle
//
//	accept (poller)        OnPrepare: allocate Conn, register for sweeping, add close callback
//	   |
//	input ready (pool)     OnRequest: read the preamble, then whole frames -> Handler.Frame;
//	   |                   flush what the handler queued for this connection
//	   |   ... idle: no goroutine, no timer, only the Conn and netpoll's buffers ...
//	   |
//	close (any side)       close callback: mark closed under the write lock,
//	                       wait out a slow flusher, unregister, Handler.Closed
//
// netpoll runs at most one OnRequest per connection at a time, and runs the
// close callbacks only after OnRequest has returned, before it closes the
// file descriptor and frees its buffers. Handler.Closed therefore never runs
// concurrently with Handler.Frame for the same connection.
//
// # Reading
//
// OnRequest never returns with a partial frame consumed: it peeks the 4-byte
// length, checks it against the limit before anything is buffered, and then
// waits (bounded by Config.ReadTimeout) for the whole frame. Returning with
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
//   - Flush writes the queue with one non-blocking write(2) on the socket,
//     under the same mutex, so the close callback cannot close the fd in the
//     middle of it. Nothing blocks: a socket that takes everything (the usual
//     case) never allocates netpoll's output buffer.
//   - When the kernel takes only part, the rest goes to one slow-path
//     flusher goroutine that uses netpoll's writer, which waits for the
//     socket with Config.WriteTimeout. While it runs, producers keep
//     appending; if the queue passes Config.MaxOutbound bytes the connection
//     is closed as a slow consumer.
//
// The queue is a pooled buffer, taken when the first frame is queued and
// returned when a flush empties it: an idle connection holds none.
//
// Lock order: Conn.mu, then netpoll's internal locks. Never call Close while
// holding Conn.mu: the close callback takes it.
package conn
