package bench

import "github.com/chatd/chatd/internal/admin"

// Stats is the server's /stats document, read over HTTP so that the bench,
// which mostly drives a server in another process or on another host, does
// not link the server in: the type is the admin listener's own.
type Stats = admin.Stats
