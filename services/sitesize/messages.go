package sitesize

import "container/heap"

// message is anything sent to the pool's owner. The owner runs apply on its own goroutine, in
// the order messages arrive; apply does the message's whole work and answers, when the sender
// waits, on a buffered channel of the message, so the owner never waits for a handler.
type message interface {
	apply(o *owner)
}

// addMsg is a handler's batch joining the pool: reply is false when the pool is shutting down.
type addMsg struct {
	b     *batch
	reply chan bool // buffered
}

func (m *addMsg) apply(o *owner) {
	if o.stopping {
		m.reply <- false
		return
	}
	e := &entry{batch: m.b, index: -1}
	o.active[m.b] = e
	heap.Push(&o.waiting, e)
	m.reply <- true
}

// removeMsg is a handler's batch leaving the pool: none of its jobs starts any more, and reply
// gets how many were started.
type removeMsg struct {
	b     *batch
	reply chan int // buffered
}

func (m *removeMsg) apply(o *owner) {
	e := o.active[m.b]
	delete(o.active, m.b)
	e.left = true
	if e.index >= 0 {
		heap.Remove(&o.waiting, e.index)
	}
	m.reply <- e.next
}

// doneMsg is a fetch of e's batch that finished: its worker is free, and the batch may get
// another.
type doneMsg struct{ e *entry }

func (m *doneMsg) apply(o *owner) {
	e := m.e
	o.busy--
	e.running--
	switch {
	case e.index >= 0:
		heap.Fix(&o.waiting, e.index)
	case !e.left && e.next < len(e.urls):
		heap.Push(&o.waiting, e)
	}
}

// stopMsg starts the shutdown: no batch is added and no job started from now on, and every
// batch's fetches are cancelled.
type stopMsg struct{}

func (m *stopMsg) apply(o *owner) {
	o.stopping = true
	for b := range o.active {
		b.cancel(errShuttingDown)
	}
}
