// Package bench is chatd's benchmark tool: the C1M scenarios (connect,
// hold, route, reconnect storms) run against a server it starts itself or
// one given by address. Workloads are functions over one Config that the
// `chatd bench` command fills from flags; there are no mutable globals.
//
// Clients run in worker processes (the same binary, `chatd bench worker`),
// because one process may open only so many files; each worker spreads its
// sockets over source addresses 127.0.0.2 to 127.0.0.254 so that the
// client side never runs out of ephemeral ports.
package bench
