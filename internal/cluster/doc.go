// Package cluster is chatd's membership of a cluster of chatd nodes: an
// embedded nats-server (routes between nodes, JetStream for the buckets
// below) and the three things built on it. It holds no consensus of its
// own: every replicated decision is a JetStream KV compare-and-set.
//
//   - Liveness (liveness.go): a heartbeat key per node, once a second; a
//     node silent for three heartbeats reads as dead.
//   - The session directory (directory.go): (user, device) -> the node
//     holding the live session. A login's compare-and-set returns the
//     session's epoch (the KV revision); the node it replaced is asked to
//     close the older session (a kick request, backed up by a watch of
//     the directory that resumes after an outage). A kick carries its
//     claim's time: a session whose own claim is still being retried
//     (its login fell in an outage) goes only for a claim newer than its
//     login, not for one the watch replays late.
//   - Home shards (shards.go): id mod 4096 names a user's or group's home
//     shard; one KV key maps shards to their owner nodes, made once and
//     changed only by an explicit move.
//
// The buckets keep min(3, Size) replicas and answer reads from their
// leader (AllowDirect off): with direct gets an R3 bucket answered 5-34%
// of reads right after a put with the old value (notes/cluster.md, which
// has every figure and gotcha this package is written against: NATS
// takes no lock on its store directory, "ready for connections" is not
// "JetStream ready", compare-and-set fails now and then with no rival,
// core NATS drops under overload).
//
// Message durability stays in each node's Pebble: a message's home
// commits it with fsync before anyone says SENT, and NATS only carries
// requests between nodes, each acknowledged by chatd itself. How the
// server uses this package to route across nodes is the server's
// (docs/cluster.md in the repository root describes the whole design and
// what is built so far).
//
// Lock order: Node.mu, then liveness.mu; the shard map is an atomic
// pointer.
package cluster
