// Package router owns routing: where a user is connected (Table), and for
// every inbox entry whether it is pushed to that connection now, drained
// from the inbox later, or waits for an ACK to open the window (Router).
//
// Today every session is local, so the answer is a pointer to the
// connection. When chatd runs as a cluster, remote routes are added here,
// beside the local ones, and the protocol front (server), which only asks
// the Router, stays as is.
//
// # One message, top to bottom
//
// The path is written to be read in order, after nats-server's client.go
// (readLoop, parse, processInboundClientMsg, deliverMsg, flushClients):
//
//	server.Frame -> server.send           decode SEND, check who may send
//	offline.Inbox.Submit                  queue to the recipient's lane
//	lane commit -> Hooks.Applied          the entry is visible in the inbox
//	Router.Applied -> push                caught up and room in the window:
//	                                      append the frame to the queue (Session,
//	                                      then the connection's queue lock)
//	conn.Batch.Flush                      one write(2) per connection per batch
//
// and back:
//
//	server.Frame -> server.ack -> Router.Ack   entries leave the window
//	offline.Inbox.AckEntries                    delete, queue delivered receipts
//	Router.Drain                                what waited is read and pushed
//
// Login ends in Router.Login (the session becomes the user's live one,
// behind whatever waits in its inbox) and Router.Drain.
package router
