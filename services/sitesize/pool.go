package sitesize

import (
	"container/heap"
	"context"
	"errors"
	"sync"
	"time"

	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/internal/jitter"
)

// errShuttingDown is the cause given to every batch's context when the service shuts down.
var errShuttingDown = errors.New("the server is shutting down")

// batch is one request's fetching work, as its handler sees it.
type batch struct {
	ctx      context.Context
	cancel   context.CancelCauseFunc
	urls     []string // distinct, in order of first appearance: job i fetches urls[i]
	limit    int      // fetches of this batch running at once
	timeout  time.Duration
	maxBytes int64
	results  chan outcome // buffered for every job, so a fetch never waits to report
}

// outcome is a finished job.
type outcome struct {
	job    int
	result result
}

// cancelled reports whether the job was stopped by its batch's end rather than finished.
func (o outcome) cancelled() bool {
	return o.result.err.GetCode() == sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_CANCELLED
}

// owner is the pool: it shares a fixed number of workers (fetches running at once) among every
// batch being measured. It is an owner goroutine (run): the batches, their progress and the
// worker count are its alone, and handlers and fetches reach it only through inbox, with
// messages (messages.go) that it applies one at a time.
//
// Fairness: a free worker goes to the batch with the fewest fetches running, the one served
// longest ago on a tie. So a small batch that arrives while a huge one holds every worker gets
// the next free one, and concurrent batches converge on equal shares (each within its own
// limit), where a FIFO semaphore would make it wait for the huge batch to drain.
type owner struct {
	inbox    chan message
	stopOnce sync.Once
	exited   chan struct{} // closed when run returns

	// Set by newPool; the fetches read them too.
	workers int
	fetcher *fetcher
	jitter  jitter.Jitter
	metrics *metrics

	// Everything below belongs to the owner goroutine.
	waiting  waitHeap          // batches with a job to start and room under their limit
	active   map[*batch]*entry // every batch added and not yet removed
	busy     int               // fetches running
	served   uint64            // workers handed out so far; an entry's served is when it got one
	stopping bool              // shutdown began: no batch is added, no job started
}

// entry is the pool's record of a batch; only the owner goroutine touches it.
type entry struct {
	*batch
	next    int    // the next job to start
	running int    // jobs started and not yet done
	served  uint64 // when it last got a worker
	index   int    // position in the waiting heap, -1 when not waiting
	left    bool   // its handler has left
}

func newPool(workers int, f *fetcher, j jitter.Jitter, m *metrics) *owner {
	return &owner{
		inbox:   make(chan message),
		exited:  make(chan struct{}),
		workers: workers,
		fetcher: f,
		jitter:  j,
		metrics: m,
		active:  map[*batch]*entry{},
	}
}

// add hands a batch to the pool; it reports false when the pool is shutting down.
func (o *owner) add(b *batch) bool {
	m := &addMsg{b: b, reply: make(chan bool, 1)}
	select {
	case o.inbox <- m:
		return <-m.reply
	case <-o.exited:
		return false
	}
}

// remove takes a batch out of the pool, so that none of its jobs starts any more, and returns
// how many were started: the handler waits for their outcomes. Call it once per added batch.
func (o *owner) remove(b *batch) int {
	m := &removeMsg{b: b, reply: make(chan int, 1)}
	o.inbox <- m // run outlives every added batch
	return <-m.reply
}

// run is the owner loop: start what the free workers can, then apply the next message. It
// returns once shutdown began and every batch has left and every fetch is done.
func (o *owner) run() {
	defer close(o.exited)
	for {
		o.start()
		o.metrics.inFlight.Set(float64(o.busy))
		o.metrics.batches.Set(float64(len(o.active)))
		if o.stopping && len(o.active) == 0 && o.busy == 0 {
			return
		}
		o.jitter.Sleep()
		m := <-o.inbox
		m.apply(o)
	}
}

// start hands each free worker a job of the batch first in the waiting heap, until the workers
// or the waiting batches run out.
func (o *owner) start() {
	for !o.stopping && o.busy < o.workers && len(o.waiting) > 0 {
		e := o.waiting[0]
		job := e.next
		e.next++
		e.running++
		o.busy++
		o.served++
		e.served = o.served
		if e.next == len(e.urls) || e.running == e.limit {
			heap.Pop(&o.waiting)
		} else {
			heap.Fix(&o.waiting, 0)
		}
		go o.work(e, job)
	}
}

// work runs one job on a worker and reports it, to the batch and then to the pool.
func (o *owner) work(e *entry, job int) {
	r := o.fetcher.fetch(e.ctx, e.urls[job], e.timeout, e.maxBytes)
	o.metrics.observe(r)
	o.jitter.Sleep()
	e.results <- outcome{job, r}
	o.inbox <- &doneMsg{e} // run waits for every fetch
}

// shutdown cancels every batch's fetches and waits until the pool has stopped.
func (o *owner) shutdown(ctx context.Context) error {
	o.stopOnce.Do(func() { o.inbox <- &stopMsg{} }) // run goes on until it takes this
	select {
	case <-o.exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitHeap orders waiting batches: fewest fetches running first, then served longest ago.
type waitHeap []*entry

func (h waitHeap) Len() int { return len(h) }
func (h waitHeap) Less(i, j int) bool {
	if h[i].running != h[j].running {
		return h[i].running < h[j].running
	}
	return h[i].served < h[j].served
}
func (h waitHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *waitHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *waitHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*h = old[:len(old)-1]
	return e
}
