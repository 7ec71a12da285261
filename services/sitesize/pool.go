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

// pool shares a fixed number of workers (fetches running at once) among every batch being
// measured. It is an owner goroutine (run): the batches, their progress and the worker count
// are its alone, and handlers and fetches reach it by message.
//
// Fairness: a free worker goes to the batch with the fewest fetches running, the one served
// longest ago on a tie. So a small batch that arrives while a huge one holds every worker gets
// the next free one, and concurrent batches converge on equal shares (each within its own
// limit), where a FIFO semaphore would make it wait for the huge batch to drain.
type pool struct {
	workers int
	fetcher *fetcher
	jitter  jitter.Jitter
	metrics *metrics

	join     chan joining
	leave    chan leaving
	done     chan *entry
	stop     chan struct{} // closed to shut down
	stopOnce sync.Once
	exited   chan struct{} // closed when run returns
}

type joining struct {
	b     *batch
	reply chan bool // false: the pool is shutting down
}

type leaving struct {
	b     *batch
	reply chan int // how many jobs of the batch were started
}

// entry is the pool's record of a batch; only the pool goroutine touches it.
type entry struct {
	*batch
	next    int    // the next job to start
	running int    // jobs started and not yet done
	served  uint64 // when it last got a worker
	index   int    // position in the waiting heap, -1 when not waiting
	left    bool   // its handler has left
}

func newPool(workers int, f *fetcher, j jitter.Jitter, m *metrics) *pool {
	return &pool{
		workers: workers,
		fetcher: f,
		jitter:  j,
		metrics: m,
		join:    make(chan joining),
		leave:   make(chan leaving),
		done:    make(chan *entry),
		stop:    make(chan struct{}),
		exited:  make(chan struct{}),
	}
}

// add hands a batch to the pool; it reports false when the pool is shutting down.
func (p *pool) add(b *batch) bool {
	reply := make(chan bool, 1)
	select {
	case p.join <- joining{b, reply}:
		return <-reply
	case <-p.exited:
		return false
	}
}

// remove takes a batch out of the pool, so that none of its jobs starts any more, and returns
// how many were started: the handler waits for their outcomes. Call it once per added batch.
func (p *pool) remove(b *batch) int {
	reply := make(chan int, 1)
	p.leave <- leaving{b, reply} // run outlives every added batch
	return <-reply
}

// run is the owner loop. It returns once shutdown began and every batch has left and every
// fetch is done.
func (p *pool) run() {
	defer close(p.exited)
	var (
		waiting  waitHeap // batches with a job to start and room under their limit
		active   = map[*batch]*entry{}
		busy     int
		served   uint64
		stopping bool
		stop     = p.stop
	)
	for {
		for !stopping && busy < p.workers && len(waiting) > 0 {
			e := waiting[0]
			job := e.next
			e.next++
			e.running++
			busy++
			served++
			e.served = served
			if e.next == len(e.urls) || e.running == e.limit {
				heap.Pop(&waiting)
			} else {
				heap.Fix(&waiting, 0)
			}
			go p.work(e, job)
		}
		p.metrics.inFlight.Set(float64(busy))
		p.metrics.batches.Set(float64(len(active)))
		if stopping && len(active) == 0 && busy == 0 {
			return
		}
		p.jitter.Sleep()
		select {
		case m := <-p.join:
			if stopping {
				m.reply <- false
				continue
			}
			e := &entry{batch: m.b, index: -1}
			active[m.b] = e
			heap.Push(&waiting, e)
			m.reply <- true
		case e := <-p.done:
			busy--
			e.running--
			switch {
			case e.index >= 0:
				heap.Fix(&waiting, e.index)
			case !e.left && e.next < len(e.urls):
				heap.Push(&waiting, e)
			}
		case m := <-p.leave:
			e := active[m.b]
			delete(active, m.b)
			e.left = true
			if e.index >= 0 {
				heap.Remove(&waiting, e.index)
			}
			m.reply <- e.next
		case <-stop:
			stopping, stop = true, nil
			for b := range active {
				b.cancel(errShuttingDown)
			}
		}
	}
}

// work runs one job on a worker and reports it, to the batch and then to the pool.
func (p *pool) work(e *entry, job int) {
	r := p.fetcher.fetch(e.ctx, e.urls[job], e.timeout, e.maxBytes)
	p.metrics.observe(r)
	p.jitter.Sleep()
	e.results <- outcome{job, r}
	p.done <- e
}

// shutdown cancels every batch's fetches and waits until the pool has stopped.
func (p *pool) shutdown(ctx context.Context) error {
	p.stopOnce.Do(func() { close(p.stop) })
	select {
	case <-p.exited:
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
