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

package netpoll

import (
	"runtime"
	"sync/atomic"
)

// FDOperator is a collection of operations on file descriptors.
type FDOperator struct {
	// FD is file descriptor, poll will bind when register.
	FD int

	// The FDOperator provides three operations of reading, writing, and hanging.
	// The poll actively fire the FDOperator when fd changes, no check the return value of FDOperator.
	OnRead  func(p Poll) error
	OnWrite func(p Poll) error
	OnHup   func(p Poll) error

	// The following is the required fn, which must exist when used, or directly panic.
	// Fns are only called by the poll when handles connection events.
	Inputs   func(vs [][]byte) (rs [][]byte)
	InputAck func(n int) (err error)

	// Outputs will locked if len(rs) > 0, which need unlocked by OutputAck.
	// supportZeroCopy is not implemented, and it will be ignored
	Outputs   func(vs [][]byte) (rs [][]byte, supportZeroCopy bool)
	OutputAck func(n int) (err error)

	// conn, when set, is the connection the operator serves (patch 8):
	// the poller calls its methods through inputs, inputAck, outputs,
	// outputAck and onHup, and the five fields above stay nil. Five method
	// values bound to the connection cost 80 bytes per connection.
	conn *connection

	// poll is the registered location of the file descriptor.
	poll Poll

	// protect only detach once
	detached int32

	// private, used by operatorCache
	next  *FDOperator
	state int32 // CAS: 0(unused) 1(inuse) 2(do-done)
	index int32 // index in operatorCache
}

func (op *FDOperator) Control(event PollEvent) error {
	if event == PollDetach && atomic.AddInt32(&op.detached, 1) > 1 {
		return nil
	}
	return op.poll.Control(op, event)
}

func (op *FDOperator) Free() {
	op.poll.Free(op)
}

func (op *FDOperator) do() (can bool) {
	return atomic.CompareAndSwapInt32(&op.state, 1, 2)
}

func (op *FDOperator) done() {
	atomic.StoreInt32(&op.state, 1)
}

func (op *FDOperator) inuse() {
	for !atomic.CompareAndSwapInt32(&op.state, 0, 1) {
		if atomic.LoadInt32(&op.state) == 1 {
			return
		}
		runtime.Gosched()
	}
}

func (op *FDOperator) unused() {
	for !atomic.CompareAndSwapInt32(&op.state, 1, 0) {
		if atomic.LoadInt32(&op.state) == 0 {
			return
		}
		runtime.Gosched()
	}
}

func (op *FDOperator) isUnused() bool {
	return atomic.LoadInt32(&op.state) == 0
}

func (op *FDOperator) reset() {
	op.FD = 0
	op.OnRead, op.OnWrite, op.OnHup = nil, nil, nil
	op.Inputs, op.InputAck = nil, nil
	op.Outputs, op.OutputAck = nil, nil
	op.conn = nil
	op.poll = nil
	op.detached = 0
}

// readsInput says whether the operator reads into a buffer (a connection)
// rather than calling OnRead.
func (op *FDOperator) readsInput() bool { return op.conn != nil || op.Inputs != nil }

// writesOutput is readsInput's twin for the write side.
func (op *FDOperator) writesOutput() bool { return op.conn != nil || op.Outputs != nil }

func (op *FDOperator) inputs(vs [][]byte) [][]byte {
	if c := op.conn; c != nil {
		return c.inputs(vs)
	}
	return op.Inputs(vs)
}

func (op *FDOperator) inputAck(n int) error {
	if c := op.conn; c != nil {
		return c.inputAck(n)
	}
	return op.InputAck(n)
}

func (op *FDOperator) outputs(vs [][]byte) ([][]byte, bool) {
	if c := op.conn; c != nil {
		return c.outputs(vs)
	}
	return op.Outputs(vs)
}

func (op *FDOperator) outputAck(n int) error {
	if c := op.conn; c != nil {
		return c.outputAck(n)
	}
	return op.OutputAck(n)
}

// onHup returns what the poller runs once the fd hung up. A connection's
// method value is made here, on the way out, not for its whole life.
func (op *FDOperator) onHup() func(p Poll) error {
	if c := op.conn; c != nil {
		return c.onHup
	}
	return op.OnHup
}
