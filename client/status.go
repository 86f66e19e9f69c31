package client

import (
	"fmt"
	"time"
)

// State is where a Client stands with its connection.
type State uint8

const (
	// StateConnecting: dialling and authenticating.
	StateConnecting State = iota + 1
	// StateConnected: authenticated; messages flow.
	StateConnected
	// StateWaiting: the last attempt failed or the connection ended; the
	// next attempt comes after Status.Wait.
	StateWaiting
)

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateWaiting:
		return "waiting"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Status reports a change of State to Options.OnStatus, so that an
// application can say what it waits for instead of going silent through
// a backoff (a server down, at capacity, restarting).
type Status struct {
	State State
	// Attempt counts connection attempts since the last success, from 1
	// (StateConnecting).
	Attempt int
	// Wait is the delay before the next attempt (StateWaiting).
	Wait time.Duration
	// Busy says the server asked to wait (GOAWAY: at capacity, overloaded,
	// restarting) rather than failing (StateWaiting).
	Busy bool
	// Err says why the attempt failed or the connection ended
	// (StateWaiting).
	Err error
}

// status calls the application's hook, if any.
func (c *Client) status(s Status) {
	if c.opts.OnStatus != nil {
		c.opts.OnStatus(s)
	}
}
