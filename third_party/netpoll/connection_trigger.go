// Copyright 2022 CloudWeGo Authors
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//    http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//go:build !windows
// +build !windows

package netpoll

import (
	"sync/atomic"
	"unsafe"
)

// trigger wakes the one goroutine that waits for a connection's input or
// for its output to drain. Its channel exists only while someone waits: a
// connection that nobody waits on (most of them, most of the time) holds
// no channel, which saves 112 bytes per trigger.
//
// The protocol, for a waiter that must not miss a wake-up:
//
//	waiter:  arm; publish what it waits for (or nothing); check the
//	         condition; wait on the channel arm returned; disarm.
//	waker:   make the condition true; read what the waiter waits for;
//	         fire.
//
// All of these are atomic operations, which Go orders sequentially
// consistently: if the waiter's check misses the waker's change, the
// waker's fire comes after arm and finds the channel. A fire with no
// channel armed wakes nobody and is dropped; a fire into a channel that
// was disarmed meanwhile is buffered in a channel nobody will read again.
type trigger struct {
	ch unsafe.Pointer // chan error, or nil when nobody waits
}

func (t *trigger) load() chan error {
	p := atomic.LoadPointer(&t.ch)
	return *(*chan error)(unsafe.Pointer(&p))
}

// arm makes the channel (one per wait, so a wake-up meant for an earlier
// wait can never end a later one) and returns it. Only one goroutine waits
// on a trigger at a time.
func (t *trigger) arm() chan error {
	ch := make(chan error, 1)
	atomic.StorePointer(&t.ch, *(*unsafe.Pointer)(unsafe.Pointer(&ch)))
	return ch
}

// disarm drops the channel after a wait.
func (t *trigger) disarm() {
	atomic.StorePointer(&t.ch, nil)
}

// fire wakes the waiter, if any, with err. It never blocks.
func (t *trigger) fire(err error) {
	if ch := t.load(); ch != nil {
		select {
		case ch <- err:
		default:
		}
	}
}
