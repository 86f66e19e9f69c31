// Copyright 2023 CloudWeGo Authors
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

//go:build darwin || netbsd || freebsd || openbsd || dragonfly || linux
// +build darwin netbsd freebsd openbsd dragonfly linux

package netpoll

import "runtime/debug"

func (p *defaultPoll) Alloc() (operator *FDOperator) {
	op := p.opcache.alloc()
	op.poll = p
	return op
}

func (p *defaultPoll) Free(operator *FDOperator) {
	p.opcache.freeable(operator)
}

// taskDeferrer is a poller that runs read tasks itself once the current
// batch of events is handled (Config.Inline).
type taskDeferrer interface {
	deferTask(task deferredTask)
}

// deferredTask is a read task queued on the poller: connection.process
// with its callbacks, kept by value so that queueing it allocates nothing.
type deferredTask struct {
	c         *connection
	onConnect OnConnect
	onRequest OnRequest
}

func (p *defaultPoll) deferTask(task deferredTask) { p.deferred = append(p.deferred, task) }

// runDeferred runs the read tasks deferred during the batch just handled,
// on the poller goroutine. Every operator of the batch is done by now, so
// a task that closes its connection can free the operator. A task that
// panics has closed its connection on the way out; the panic is logged
// and the poller goes on, as a Runner's pool would.
func (p *defaultPoll) runDeferred() {
	for i := range p.deferred {
		task := p.deferred[i]
		p.deferred[i] = deferredTask{}
		runDeferredTask(task)
	}
	p.deferred = p.deferred[:0]
}

func runDeferredTask(task deferredTask) {
	defer func() {
		if r := recover(); r != nil {
			logger.Printf("NETPOLL: panic in a read task run on the poller: %v: %s", r, debug.Stack())
		}
	}()
	task.c.process(task.onConnect, task.onRequest)
}

func (p *defaultPoll) appendHup(operator *FDOperator) {
	p.hups = append(p.hups, operator.onHup())
	p.detach(operator)
	operator.done()
}

func (p *defaultPoll) detach(operator *FDOperator) {
	if err := operator.Control(PollDetach); err != nil {
		logger.Printf("NETPOLL: poller detach operator failed: %v", err)
	}
}

func (p *defaultPoll) onhups() {
	if len(p.hups) == 0 {
		return
	}
	hups := p.hups
	p.hups = nil
	go func(onhups []func(p Poll) error) {
		for i := range onhups {
			if onhups[i] != nil {
				onhups[i](p)
			}
		}
	}(hups)
}

// readall read all left data before close connection
func readall(op *FDOperator, br barrier) (total int, err error) {
	ivs := br.ivs
	var n int
	for {
		bs := op.inputs(br.bs)
		if len(bs) == 0 {
			return total, nil
		}

	TryRead:
		n, err = ioread(op.FD, bs, ivs)
		op.inputAck(n)
		total += n
		if err != nil {
			return total, err
		}
		if n == 0 {
			goto TryRead
		}
	}
}
