package printer

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	"github.com/concur-dev/concur/internal/jitter"
)

// owner holds the printer's state. Only its goroutine (run) touches it; handlers reach it
// with messages (messages.go): submissions through the intake, everything else through the
// inbox.
type owner struct {
	jitter     jitter.Jitter
	metrics    *metrics
	queue      queueLimit // what may wait to be written
	maxSources int

	seq     uint64            // the last sequence number given to a job
	sources map[string]uint64 // the last source_sequence accepted from each source
	queued  uint64            // bytes of the jobs accepted and not yet written
	parked  *submission       // a submission that waits for room in the queue
	next    *batch            // jobs accepted since the writer took the last batch
	writing bool              // the writer holds a batch
	hist    *history          // written jobs; hist.last is the last sequence written
	joins   []joinWaiter      // Joins waiting for a sequence to be written
	wake    chan struct{}     // closed when the next batch is written; nil until a Tail waits
}

// queueLimit bounds the jobs accepted and not yet written, in jobs and in bytes.
type queueLimit struct{ jobs, bytes uint64 }

// submission is one Print, or one message of a PrintStream: jobs accepted together, in order.
// It is a message (its apply is in messages.go) that comes through the intake.
type submission struct {
	jobs    []*printerv1.PrintJob
	bytes   uint64        // what the jobs' lines take in the queue (size)
	durable bool          // the sender waits for the jobs to be written (PrintStream)
	reply   chan accepted // buffered: the owner never waits for a handler
}

type accepted struct {
	receipts []*printerv1.PrintReceipt
	// written, for a durable submission, gets the last sequence written once every job
	// accepted up to and with these is written to every sink (and fsynced): what a
	// PrintStream receipt waits for.
	written <-chan uint64
	err     error
}

// size is what lines take in the queue and in a batch: each line and its newline.
func size(lines []string) uint64 {
	n := uint64(len(lines))
	for _, l := range lines {
		n += uint64(len(l))
	}
	return n
}

type joinWaiter struct {
	after uint64
	reply chan uint64
}

// run serves until stopping is closed and every accepted job is written, then closes the
// writer's input, so that it closes the sinks, and wakes the Tails that wait for more.
func (o *owner) run(intake <-chan *submission, inbox <-chan message, stopping <-chan struct{}, w *writer) {
	stopped := false
	for !stopped || o.writing || len(o.next.jobs) > 0 {
		// The nil-channel trick: while the queue is full, a submission waits for room or the
		// printer is stopping, the owner does not receive jobs, so a Print's send waits,
		// until its deadline.
		var in <-chan *submission
		if !stopped && o.parked == nil && o.fits(1, 1) {
			in = intake
		}
		var hand chan<- *batch
		if !o.writing && len(o.next.jobs) > 0 {
			hand = w.in
		}
		select {
		case s := <-in:
			s.apply(o)
		case m := <-inbox:
			m.apply(o)
		case <-stopping:
			stopped, stopping = true, nil
			if o.parked != nil {
				o.parked.reply <- accepted{err: errShuttingDown}
				o.parked = nil
			}
		case hand <- o.next:
			o.writing, o.next = true, newBatch()
		case b := <-w.out:
			o.written(b)
		}
	}
	close(w.in)
	if o.wake != nil {
		close(o.wake)
	}
}

// fits reports whether jobs taking bytes fit in the queue beside what waits there.
func (o *owner) fits(jobs int, bytes uint64) bool {
	return o.seq-o.hist.last+uint64(jobs) <= o.queue.jobs && o.queued+bytes <= o.queue.bytes
}

// take accepts s if it fits in the queue, else parks it until written batches make room. A
// submission never fits only if it is larger than the queue, which the handlers refuse.
func (o *owner) take(s *submission) {
	if o.fits(len(s.jobs), s.bytes) {
		o.accept(s)
		return
	}
	o.parked = s
}

// withdraw answers s, if it still waits for room, with err: its sender gives up on it.
func (o *owner) withdraw(s *submission, err error) {
	if o.parked == s {
		o.parked = nil
		s.reply <- accepted{err: err}
	}
}

// accept takes a submission whole: it numbers each job that is not a duplicate and appends
// it to the next batch, then answers with a receipt per job and, if the sender waits for
// the write, a channel that says when they are written.
func (o *owner) accept(s *submission) {
	o.jitter.Sleep()
	if o.tooManySources(s.jobs) {
		s.reply <- accepted{err: tooManySources(o.maxSources)}
		return
	}
	receipts := make([]*printerv1.PrintReceipt, len(s.jobs))
	before := uint64(len(o.next.bytes))
	for i, j := range s.jobs {
		r := &printerv1.PrintReceipt{Source: j.GetSource(), SourceSequence: j.GetSourceSequence()}
		receipts[i] = r
		if r.Source != "" {
			if r.SourceSequence <= o.sources[r.Source] {
				r.Duplicate = true
				o.metrics.duplicates.Inc()
				continue
			}
			o.sources[r.Source] = r.SourceSequence
			o.next.sources[r.Source] = r.SourceSequence
		}
		o.seq++
		seq := o.seq
		r.Sequence = &seq
		o.next.add(&printerv1.TailResponse{Sequence: &seq, Lines: j.GetLines()})
	}
	o.queued += uint64(len(o.next.bytes)) - before
	o.measureQueue()
	a := accepted{receipts: receipts}
	if s.durable {
		// A duplicate's first copy may still wait to be written: the receipts wait for
		// every job accepted so far.
		written := make(chan uint64, 1)
		o.join(written)
		a.written = written
	}
	s.reply <- a
}

// tooManySources reports whether accepting jobs would make the printer remember more sources
// than it may.
func (o *owner) tooManySources(jobs []*printerv1.PrintJob) bool {
	if len(o.sources)+len(jobs) <= o.maxSources {
		return false
	}
	fresh := map[string]bool{}
	for _, j := range jobs {
		if _, known := o.sources[j.GetSource()]; j.GetSource() != "" && !known {
			fresh[j.GetSource()] = true
		}
	}
	return len(o.sources)+len(fresh) > o.maxSources
}

// written takes back a batch the writer has written to every sink: its jobs join the
// history, and the Joins and Tails waiting for them are answered.
func (o *owner) written(b *batch) {
	o.writing = false
	o.queued -= uint64(len(b.bytes))
	at := timestamppb.Now()
	for _, j := range b.jobs {
		j.WrittenAt = at
		o.hist.add(j)
	}
	o.measureQueue()
	waiting := o.joins[:0]
	for _, j := range o.joins {
		if j.after <= o.hist.last {
			j.reply <- o.hist.last
		} else {
			waiting = append(waiting, j)
		}
	}
	clear(o.joins[len(waiting):])
	o.joins = waiting
	if o.wake != nil {
		close(o.wake)
		o.wake = nil
	}
	if s := o.parked; s != nil && o.fits(len(s.jobs), s.bytes) {
		o.parked = nil
		o.accept(s)
	}
}

// measureQueue publishes the queue's depth.
func (o *owner) measureQueue() {
	o.metrics.queueJobs.Set(float64(o.seq - o.hist.last))
	o.metrics.queueBytes.Set(float64(o.queued))
}

// join answers reply once every job accepted so far is written, with the last sequence
// written.
func (o *owner) join(reply chan uint64) {
	if o.hist.last >= o.seq {
		reply <- o.hist.last
		return
	}
	o.joins = append(o.joins, joinWaiter{after: o.seq, reply: reply})
}

// woken returns a channel closed when the next batch is written.
func (o *owner) woken() <-chan struct{} {
	if o.wake == nil {
		o.wake = make(chan struct{})
	}
	return o.wake
}

// batch is a run of accepted jobs that the writer takes in one go.
type batch struct {
	bytes   []byte                    // the jobs' lines, each ended by a newline
	ends    []int                     // where each job ends in bytes
	jobs    []*printerv1.TailResponse // the jobs, in sequence order
	sources map[string]uint64         // the last source_sequence of each source in the batch
}

func newBatch() *batch { return &batch{sources: map[string]uint64{}} }

func (b *batch) add(j *printerv1.TailResponse) {
	for _, line := range j.Lines {
		b.bytes = append(append(b.bytes, line...), '\n')
	}
	b.ends = append(b.ends, len(b.bytes))
	b.jobs = append(b.jobs, j)
}

// last is the sequence of the batch's last job.
func (b *batch) last() uint64 { return b.jobs[len(b.jobs)-1].GetSequence() }
