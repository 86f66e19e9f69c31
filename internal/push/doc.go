// Package push sends Web Push notifications (RFC 8030) to users who are
// offline when something is stored for them, so that their app wakes,
// connects and drains its inbox. Payloads are encrypted for the
// subscription (RFC 8291, aes128gcm) and signed with the server's VAPID
// key (RFC 8292); github.com/SherClockHolmes/webpush-go does both.
//
// A push carries no content and no sender: only {"kind":"sync","count":N},
// N being how many entries the coalescing window saw. The push service,
// and whoever runs it, learns that the user got something, and when.
//
// The path, from the inbox lane to the push service:
//
//   - Due, called on the inbox lane for every entry stored for a user who
//     has no live session, costs a map lookup for a user without
//     subscriptions and a map update under a mutex otherwise. It never
//     blocks and never touches the disk: a SEND's SENT does not wait for
//     anything in this package.
//   - The coalescer (one goroutine) gives each user one push per Window:
//     the first entry opens the window, later ones add to its count. When
//     the window closes it asks whether the user came online meanwhile
//     (then no push) and queues one job per subscription.
//   - Workers (a fixed pool reading a bounded queue) POST to the push
//     service with a per-request timeout. 429 and 5xx and network errors
//     are retried with exponential backoff and jitter, or after the
//     service's Retry-After; 404 and 410 delete the subscription; other
//     answers fail the job.
//
// Pushes due but not yet done survive a restart through a small due-set in
// Pebble (one key per user): the coalescer writes a user's key when it
// opens a window and deletes it when every job of that push has ended.
// At start, Open reloads the keys and pushes again to users whose inbox
// still holds entries (Config.Pending). The writes are not synced: Pebble
// writes them to its WAL at once, so a process crash keeps them; a power
// loss can drop the last few, and then those pushes are lost while their
// messages are not. Deriving due pushes from the inboxes alone was
// rejected: every restart would push to every subscribed user with an
// old unread entry, days after the push they already had.
package push
