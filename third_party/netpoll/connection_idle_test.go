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
	"bytes"
	"errors"
	"runtime"

	"sync"
	"syscall"
	"testing"
	"time"
)

// withReleaseIdleInput runs f with Feature.ReleaseIdleInput on.
func withReleaseIdleInput(f func()) {
	old := featureReleaseIdleInput
	featureReleaseIdleInput = true
	defer func() { featureReleaseIdleInput = old }()
	f()
}

// inputMemory is the memory c's input buffer holds. It holds the operator,
// as Release does, so that the poller cannot book meanwhile (and the race
// detector sees the order).
func inputMemory(c *connection) int {
	for !c.operator.do() {
		runtime.Gosched()
	}
	defer c.operator.done()
	return c.inputBuffer.memorySize()
}

// releasedIdle fails unless c's input buffer, which the caller just
// emptied and released, holds no memory. Release gives the memory back
// only if the poller is not handling the connection at that moment (it
// may still be, just after it woke the reader); then the next Release
// does, as the next read turn would.
func releasedIdle(t *testing.T, c *connection) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); inputMemory(c) != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("an empty, released input buffer still holds %d bytes", inputMemory(c))
		}
		MustNil(t, c.Reader().Release())
		runtime.Gosched()
	}
}

// TestReleaseIdleInput checks that with Feature.ReleaseIdleInput a
// connection holds no input buffer before its first read and after each
// Release that empties the buffer, and that reads, including one that
// waits for the second half of a packet, still see the right bytes.
func TestReleaseIdleInput(t *testing.T) {
	withReleaseIdleInput(func() {
		r, w := GetSysFdPairs()
		rconn := &connection{}
		MustNil(t, rconn.init(&netFD{fd: r}, nil))
		defer rconn.Close()
		defer syscall.Close(w)
		Equal(t, inputMemory(rconn), 0)

		for round := 0; round < 3; round++ {
			msg := bytes.Repeat([]byte{byte('a' + round)}, 300+round*5000)
			_, err := syscall.Write(w, msg[:100])
			MustNil(t, err)
			done := make(chan []byte, 1)
			go func() {
				// Waits for the rest; copy before Release gives the memory back.
				p, err := rconn.Reader().Next(len(msg))
				MustNil(t, err)
				done <- append([]byte(nil), p...)
				MustNil(t, rconn.Reader().Release())
				done <- nil
			}()
			MustNil(t, writeAll(w, msg[100:]))
			got := <-done
			Assert(t, bytes.Equal(got, msg), "round", round, "read the wrong bytes")
			<-done
			Equal(t, rconn.Reader().Len(), 0)
			releasedIdle(t, rconn)
		}
	})
}

// TestReleaseIdleInputKeepsUnread checks that Release keeps the memory
// while unread bytes remain, and gives it back once they are read.
func TestReleaseIdleInputKeepsUnread(t *testing.T) {
	withReleaseIdleInput(func() {
		r, w := GetSysFdPairs()
		rconn := &connection{}
		MustNil(t, rconn.init(&netFD{fd: r}, nil))
		defer rconn.Close()
		defer syscall.Close(w)
		MustNil(t, writeAll(w, []byte("hello world")))
		p, err := rconn.Reader().Next(6)
		MustNil(t, err)
		Equal(t, string(p), "hello ")
		MustNil(t, rconn.Reader().Release())
		Assert(t, inputMemory(rconn) > 0, "released a buffer that holds unread bytes")
		p, err = rconn.Reader().Next(5)
		MustNil(t, err)
		Equal(t, string(p), "world")
		MustNil(t, rconn.Reader().Release())
		releasedIdle(t, rconn)
	})
}

// TestReleaseIdleInputUpstreamReads runs upstream's read tests with
// Feature.ReleaseIdleInput on.
func TestReleaseIdleInputUpstreamReads(t *testing.T) {
	withReleaseIdleInput(func() {
		t.Run("Read", TestConnectionRead)
		t.Run("WaitReadHalfPacket", TestConnectionWaitReadHalfPacket)
		t.Run("Until", TestConnectionUntil)
		t.Run("NoCopyReadString", TestConnectionNoCopyReadString)
		t.Run("ReadAfterClosed", TestConnectionReadAfterClosed)
	})
}

// TestOutputBufferLazy checks that a connection makes its output buffer
// on the first write only, and that writing and flushing through it work.
func TestOutputBufferLazy(t *testing.T) {
	r, w := GetSysFdPairs()
	wconn := &connection{}
	MustNil(t, wconn.init(&netFD{fd: w}, nil))
	defer wconn.Close()
	defer syscall.Close(r)
	Assert(t, wconn.output() == nil, "a new connection holds an output buffer")
	Equal(t, wconn.MallocLen(), 0)
	MustNil(t, wconn.Flush()) // nothing to flush, still no buffer
	Assert(t, wconn.output() == nil, "an empty flush made an output buffer")
	Assert(t, wconn.isIdle(), "a new connection is not idle")

	_, err := wconn.Writer().WriteString("ping")
	MustNil(t, err)
	Assert(t, wconn.output() != nil, "a write made no output buffer")
	MustNil(t, wconn.Writer().Flush())
	got := make([]byte, 4)
	n, err := syscall.Read(r, got)
	MustNil(t, err)
	Equal(t, string(got[:n]), "ping")
}

// TestWaitEndsOnClose checks that a reader waiting for more input and a
// writer waiting for the socket to drain both return when the connection
// is closed, however the close falls against the moment they start to
// wait (a lazily made trigger must not lose the close's wake-up). Neither
// has a timeout, so a lost wake-up hangs the test.
func TestWaitEndsOnClose(t *testing.T) {
	const rounds = 100
	for i := 0; i < rounds; i++ {
		// Two socket pairs: nothing is ever written to r's peer, and
		// nothing ever reads w's peer.
		r, rpeer := GetSysFdPairs()
		wpeer, w := GetSysFdPairs()
		rconn, wconn := &connection{}, &connection{}
		MustNil(t, rconn.init(&netFD{fd: r}, nil))
		MustNil(t, wconn.init(&netFD{fd: w}, nil))
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, err := rconn.Reader().Next(1 << 20) // never arrives
			Assert(t, err != nil, "a read of bytes never sent succeeded")
		}()
		go func() {
			defer wg.Done()
			// More than a socket pair buffers: the flush must wait.
			_, err := wconn.Write(make([]byte, 8<<20))
			Assert(t, err != nil, "a write nobody reads succeeded")
		}()
		time.Sleep(time.Duration(i%10) * 100 * time.Microsecond)
		rconn.Close()
		wconn.Close()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: a wait did not end on close", i)
		}
		syscall.Close(rpeer)
		syscall.Close(wpeer)
	}
}

// TestFlushSeesEarlierClose checks that a flush that must wait for the
// socket returns at once when the connection was closed before it armed
// its trigger: that close's wake-up found no channel, so waitFlush must
// see the closing state instead of waiting for ever.
func TestFlushSeesEarlierClose(t *testing.T) {
	peer, w := GetSysFdPairs()
	defer syscall.Close(peer)
	wconn := &connection{}
	MustNil(t, wconn.init(&netFD{fd: w}, nil))
	defer wconn.Close()
	// Fill the socket, so that the flush below cannot finish at once.
	junk := make([]byte, 64<<10)
	for {
		if _, err := syscall.Write(w, junk); err != nil {
			break // EAGAIN
		}
	}
	_, err := wconn.writeBuffer().WriteBinary(junk)
	MustNil(t, err)
	MustNil(t, wconn.output().Flush())
	// A close that has set the closing state but whose wake-up came before
	// any channel existed.
	MustTrue(t, wconn.closeBy(user))
	done := make(chan error, 1)
	go func() { done <- wconn.flush() }()
	select {
	case err := <-done:
		Assert(t, errors.Is(err, ErrConnClosed), err)
	case <-time.After(5 * time.Second):
		t.Fatal("flush waited on a connection closed before it armed")
	}
	wconn.force(closing, none) // let the deferred Close run the close path
}

// TestIdleInputNodeEmbedded (PATCHES.md 13): an idle input buffer points
// at the node embedded in its connection, and releasing that node, as a
// Release does when it passes it, keeps it out of the pool.
func TestIdleInputNodeEmbedded(t *testing.T) {
	withReleaseIdleInput(func() {
		r, w := GetSysFdPairs()
		rconn := &connection{}
		MustNil(t, rconn.init(&netFD{fd: r}, nil))
		defer rconn.Close()
		defer syscall.Close(w)
		idle := &rconn.inputIdle
		Assert(t, rconn.inputBuffer == &rconn.input, "the input buffer is not the connection's own")
		atIdle, _ := idleState(rconn)
		Assert(t, atIdle, "a new connection's buffer is not at its idle node")
		for round := 0; round < 3; round++ {
			MustNil(t, writeAll(w, []byte("hello")))
			p, err := rconn.Reader().Next(5)
			MustNil(t, err)
			Equal(t, string(p), "hello")
			MustNil(t, rconn.Reader().Release())
			releasedIdle(t, rconn)
			atIdle, unchanged := idleState(rconn)
			Assert(t, atIdle, "round", round, "an idle buffer is not at its idle node")
			Assert(t, unchanged, "round", round, "the idle node changed")
		}
		idle.refer = 1
		MustNil(t, idle.Release())
		Equal(t, idle.refer, int32(1)) // not counted down to the pool
	})
}

// idleState reports whether c's input buffer is at its idle node and the
// node is as releaseTo left it. It holds the operator, as inputMemory does:
// the poller books the next bytes after the idle node.
func idleState(c *connection) (atIdle, unchanged bool) {
	for !c.operator.do() {
		runtime.Gosched()
	}
	defer c.operator.done()
	b, idle := c.inputBuffer, &c.inputIdle
	atIdle = b.head == idle && b.read == idle && b.flush == idle && b.write == idle
	unchanged = idle.mode == readonlyMask|embeddedMask && idle.buf == nil && idle.next == nil
	return atIdle, unchanged
}
