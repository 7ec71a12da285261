package counter

import (
	"go.opentelemetry.io/otel/trace"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
)

// message is anything sent to the owner. The owner runs apply on its own goroutine, in the
// order messages arrive. apply does the message's whole work, a failed or closing counter
// included: it asks the ledger, which refuses what it must (or, for a message that changes
// no counter, such as a Join or a Watch, reads its failed and closed state), and gives the
// answer to o.ready (or o.failStream), which the owner tells once the batch is committed.
//
// Adding a message is adding a type here with its apply, and a handler that sends it.
type message interface {
	apply(o *owner)
}

// incrementMsg is one Increment.
type incrementMsg struct {
	reply
	name, requestID string
	delta           int64
	link            *trace.SpanContext // the call's span, for the print job
	result
}

func (m *incrementMsg) apply(o *owner) {
	o.carried++
	m.result, m.err = o.ledger.increment(m.name, m.requestID, m.delta, m.link)
	o.ready(&m.reply)
}

// streamBatchMsg is one message of an IncrementStream: it is told only when it fails.
type streamBatchMsg struct {
	stream *streamState
	incs   []*counterv1.CounterIncrement
}

func (m *streamBatchMsg) apply(o *owner) {
	o.carried += len(m.incs)
	s := m.stream
	if s.err != nil {
		return // an earlier message failed: the stream applies nothing more
	}
	o.streamed = append(o.streamed, s)
	if err := o.ledger.stream(&s.tally, m.incs); err != nil {
		o.failStream(s, err)
		return
	}
	o.open[s] = true
}

// streamEndMsg asks for the summary of a stream whose client has sent everything.
type streamEndMsg struct {
	reply
	stream *streamState
	// result
	applied  uint64
	counters []*counterv1.CounterValue
}

func (m *streamEndMsg) apply(o *owner) {
	s := m.stream
	delete(o.open, s)
	if s.err != nil && o.ledger.failed == nil {
		m.err = s.err
	} else {
		m.applied, m.counters, m.err = o.ledger.summary(&s.tally)
	}
	o.ready(&m.reply)
}

// streamGoneMsg says that a stream's handler returned.
type streamGoneMsg struct{ stream *streamState }

func (m *streamGoneMsg) apply(o *owner) { delete(o.open, m.stream) }

// getMsg is one Get.
type getMsg struct {
	reply
	name  string
	value int64 // result
}

func (m *getMsg) apply(o *owner) {
	m.value, _, m.err = o.ledger.value(m.name)
	o.ready(&m.reply)
}

// watchMsg starts a Watch: the watcher gets every committed value from now on.
type watchMsg struct {
	reply
	w     *watcher
	first watchValue // result
}

func (m *watchMsg) apply(o *owner) {
	value, seq, err := o.ledger.value(m.w.name)
	switch {
	case err != nil:
		m.err = err
	case o.ledger.closed:
		m.err = errShuttingDown
	default:
		o.watchers[m.w.name] = append(o.watchers[m.w.name], m.w)
		m.first = watchValue{value, seq}
	}
	o.ready(&m.reply)
}

// unwatchMsg ends a Watch.
type unwatchMsg struct{ w *watcher }

func (m *unwatchMsg) apply(o *owner) { o.dropWatcher(m.w) }

// joinMsg is one Join: done is closed once every increment before it is on disk and, with a
// printer, written by the printer (its receipt says so).
type joinMsg struct {
	reply
	committed chan struct{} // closed once target is known and on disk
	target    uint64
	printed   bool
}

func (m *joinMsg) apply(o *owner) {
	if err := o.ledger.failed; err != nil {
		o.fail(&m.reply, err)
		return
	}
	m.target = o.ledger.seq
	o.joined = append(o.joined, m)
}

// pullMsg is the forwarder asking for print jobs.
type pullMsg struct {
	reply
	after uint64 // send jobs with a greater sequence
	max   int
	wait  bool       // park until there are some, instead of answering none
	jobs  []printJob // result
}

func (m *pullMsg) apply(o *owner) { o.puller = m }

// ackMsg is the forwarder saying that the printer acknowledged the print jobs up to through.
type ackMsg struct{ through uint64 }

func (m *ackMsg) apply(o *owner) { o.ledger.ack(m.through) }

// closeMsg starts the shutdown: nothing new is applied from now on.
type closeMsg struct{ reply }

func (m *closeMsg) apply(o *owner) {
	o.close()
	o.ready(&m.reply)
}

// stopMsg ends the owner once its batch is committed; done is closed when the store is.
type stopMsg struct{ reply }

func (m *stopMsg) apply(o *owner) {
	o.close()
	o.stopping = m
}
