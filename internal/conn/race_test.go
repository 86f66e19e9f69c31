//go:build race

package conn

// The race detector slows everything several times; timing bounds in tests
// get more slack under it.
const raceEnabled = true
