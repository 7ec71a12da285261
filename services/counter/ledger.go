package counter

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
)

// ledger is the counter's state as a plain value, and its rules: the counters, the outbox of
// print jobs, the request ids remembered, the sequence and the limits. It has no channels and
// starts no goroutines; the owner is its only user.
//
// Each operation answers its caller at once and records in the batch's writes what must
// reach the disk. The owner holds the answers until it has committed those writes (pending,
// then committed): nothing the ledger says leaves the owner before it is on disk.
type ledger struct {
	limits     Config // OutboxMax, RequestIDTTL, RequestIDMax and MaxNames
	forwarding bool   // a printer is configured: keep an outbox of print jobs
	now        func() time.Time

	seq        uint64 // the last sequence number handed out
	durable    uint64 // the last sequence number on disk
	counters   map[string]*counterState
	names      int        // counters incremented at least once
	outbox     []printJob // committed or in this batch, not yet acknowledged by the printer
	requests   map[string]*requestRecord
	requestLog []*requestRecord // the same records, oldest first, for pruning
	closed     bool             // shutting down: nothing new is applied, replays are still answered
	failed     error            // a commit failed: memory is ahead of the disk; refuse everything

	w       writes          // what the batch in progress changed
	stamp   uint64          // numbers stream messages, for counterState.stamp
	streams uint64          // numbers streams, for counterState.stream
	scratch []*counterState // the counters of the stream message being checked
}

// counterState is one counter. Only the ledger touches it.
type counterState struct {
	name    string
	value   int64
	seq     uint64 // the sequence of the last increment applied to it; 0 if none
	dirty   bool   // changed in the batch in progress
	pending int64  // its value while a stream message is checked for overflow
	stamp   uint64 // the stream message pending belongs to
	stream  uint64 // the last stream that touched it: a fast path for the stream's summary
}

// requestRecord is the first answer to an Increment with a request_id.
type requestRecord struct {
	id    string
	name  string
	delta int64
	value int64
	seq   uint64
	at    time.Time
}

// printJob is the talk's print job for one increment, kept in the outbox until the printer
// acknowledges it. Its lines are made when it is sent.
type printJob struct {
	seq   uint64
	name  string
	value int64
	// link is the span of the call that made the job, for the forwarder's span to link to; nil
	// when the call was not traced. It lives in memory only: a job loaded from the database
	// has none.
	link *trace.SpanContext
}

// result is the answer to an increment: the counter's value after it, and its sequence.
type result struct {
	value    int64
	seq      uint64
	replayed bool // a retry of a request_id already applied: nothing was applied again
}

// tally is one IncrementStream call as the ledger counts it.
type tally struct {
	id       uint64 // numbered when its first message is applied
	messages int    // the messages it sent, the one being applied included
	applied  uint64 // the increments applied
	touched  []*counterState
	seen     map[*counterState]bool // the same counters, for the order of first appearance
	link     *trace.SpanContext     // the call's span, for its print jobs (see printJob)
}

// newLedger takes over the state a store loaded.
func newLedger(cfg Config, s *state, forwarding bool) ledger {
	l := ledger{
		limits:     cfg,
		forwarding: forwarding,
		now:        time.Now,
		seq:        s.seq,
		durable:    s.seq,
		counters:   s.counters,
		names:      len(s.counters),
		outbox:     s.outbox,
		requests:   make(map[string]*requestRecord, len(s.requests)),
		requestLog: s.requests,
	}
	for _, r := range s.requests {
		if c := l.counters[r.name]; c != nil {
			r.name = c.name // share the counter's string
		}
		l.requests[r.id] = r
	}
	return l
}

// increment adds delta to the named counter. A request_id already used answers what its
// first use did, and applies nothing; used with another name or delta, it is refused. link
// is the span of the call, for the print job.
func (l *ledger) increment(name, requestID string, delta int64, link *trace.SpanContext) (result, error) {
	if l.failed != nil {
		return result{}, l.failed
	}
	if requestID != "" {
		if r := l.requests[requestID]; r != nil {
			if r.name != name || r.delta != delta {
				return result{}, requestIDReused(r)
			}
			return result{value: r.value, seq: r.seq, replayed: true}, nil
		}
	}
	switch {
	case l.closed:
		return result{}, errShuttingDown
	case l.forwarding && len(l.outbox) >= l.limits.OutboxMax:
		return result{}, errOutboxFull
	case !l.exists(name) && l.names >= l.limits.MaxNames:
		return result{}, l.tooManyCounters("counter %q was not created and nothing was applied; existing counters still count", name)
	}
	c := l.counter(name)
	v, ok := add(c.value, delta)
	if !ok {
		return result{}, status.Errorf(codes.OutOfRange, "adding %d to counter %q (%d) would overflow a signed 64-bit integer; the counter is unchanged", delta, c.name, c.value)
	}
	l.set(c, v, link)
	if requestID != "" {
		r := &requestRecord{id: requestID, name: c.name, delta: delta, value: v, seq: c.seq, at: l.now()}
		l.requests[r.id] = r
		l.requestLog = append(l.requestLog, r)
		l.w.requests = append(l.w.requests, r)
	}
	return result{value: v, seq: c.seq}, nil
}

// stream applies one IncrementStream message of the stream t whole or not at all: it checks
// every increment for overflow first, counting increments to the same counter together, and
// the counters it would create against --counter-max-names.
func (l *ledger) stream(t *tally, incs []*counterv1.CounterIncrement) error {
	if l.failed != nil {
		return l.failed
	}
	t.messages++
	switch {
	case l.closed:
		return status.Errorf(codes.Unavailable, "the counter is shutting down: message %d of this stream was not applied; the %d increments before it were", t.messages, t.applied)
	case l.forwarding && len(l.outbox)+len(incs) > l.limits.OutboxMax:
		return status.Errorf(codes.Unavailable, "%s: message %d of this stream was not applied, the %d increments before it were",
			outboxIsFull, t.messages, t.applied)
	}
	l.stamp++
	cs := l.scratch[:0]
	fresh := 0 // counters the message would create
	for i, inc := range incs {
		name := counterv1.NameOrDefault(inc.GetName())
		c, existed := l.counters[name]
		if !existed {
			c = &counterState{name: name}
			l.counters[name] = c
		}
		if c.stamp != l.stamp {
			c.stamp, c.pending = l.stamp, c.value
			if c.seq == 0 {
				fresh++
			}
		}
		v, ok := add(c.pending, delta(inc.Delta))
		if !ok {
			err := status.Errorf(codes.OutOfRange,
				"increments[%d] of message %d would overflow counter %q: the message was not applied, the %d increments before it were",
				i, t.messages, name, t.applied)
			l.discard(append(cs, c))
			return err
		}
		c.pending = v
		cs = append(cs, c)
	}
	if fresh > 0 && l.names+fresh > l.limits.MaxNames {
		err := l.tooManyCounters("message %d of this stream would create %d more and was not applied, the %d increments before it were",
			t.messages, fresh, t.applied)
		l.discard(cs)
		return err
	}
	if t.id == 0 {
		l.streams++
		t.id = l.streams
		t.seen = map[*counterState]bool{}
	}
	for i, c := range cs {
		l.set(c, c.value+delta(incs[i].Delta), t.link)
		if c.stream != t.id {
			c.stream = t.id
			if !t.seen[c] {
				t.seen[c] = true
				t.touched = append(t.touched, c)
			}
		}
	}
	t.applied += uint64(len(cs))
	clear(cs)
	l.scratch = cs[:0]
	return nil
}

// summary is what a stream applied: how many increments, and the values now of the counters
// it touched, in order of first appearance.
func (l *ledger) summary(t *tally) (uint64, []*counterv1.CounterValue, error) {
	if l.failed != nil {
		return 0, nil, l.failed
	}
	values := make([]*counterv1.CounterValue, len(t.touched))
	for i, c := range t.touched {
		values[i] = &counterv1.CounterValue{Name: c.name, Value: new(c.value)}
	}
	return t.applied, values, nil
}

// value is the named counter's value and the sequence of its last increment (0 and 0 for
// a counter never incremented).
func (l *ledger) value(name string) (int64, uint64, error) {
	if l.failed != nil {
		return 0, 0, l.failed
	}
	if c := l.counters[name]; c != nil {
		return c.value, c.seq, nil
	}
	return 0, 0, nil
}

// ack drops from the outbox the print jobs the printer acknowledged, up to through.
func (l *ledger) ack(through uint64) {
	if l.failed != nil {
		return
	}
	n := 0
	for n < len(l.outbox) && l.outbox[n].seq <= through {
		l.w.printed = append(l.w.printed, l.outbox[n].seq)
		n++
	}
	l.outbox = l.outbox[n:]
}

// jobsAfter returns up to max committed print jobs after sequence after; none once a commit
// failed, since nothing after the failure may go out.
func (l *ledger) jobsAfter(after uint64, max int) []printJob {
	if l.failed != nil {
		return nil
	}
	i := sort.Search(len(l.outbox), func(i int) bool { return l.outbox[i].seq > after })
	return slices.Clone(l.outbox[i:min(len(l.outbox), i+max)])
}

// printedThrough reports whether the printer acknowledged every print job up to seq.
func (l *ledger) printedThrough(seq uint64) bool {
	return len(l.outbox) == 0 || l.outbox[0].seq > seq
}

// prune forgets request ids past their age or past the most the counter keeps.
func (l *ledger) prune() {
	cutoff := l.now().Add(-l.limits.RequestIDTTL)
	n := 0
	for n < len(l.requestLog) {
		r := l.requestLog[n]
		if len(l.requestLog)-n <= l.limits.RequestIDMax && !r.at.Before(cutoff) {
			break
		}
		delete(l.requests, r.id)
		l.w.forgotten = append(l.w.forgotten, r.id)
		n++
	}
	clear(l.requestLog[:n])
	l.requestLog = l.requestLog[n:]
}

// close makes the ledger apply nothing new; it still answers replays and reads.
func (l *ledger) close() { l.closed = true }

// pending returns the batch's writes for the store to commit, or nil when they need no
// commit now. Dropping acknowledged print jobs and pruning request ids are only cleanup: they
// wait for a commit that something else needs (or the last one), rather than cost a disk sync
// of their own. Lost in a crash, they only make the counter resend jobs the printer
// acknowledges as duplicates, and forget ids a little later.
func (l *ledger) pending(last bool) *writes {
	if l.failed != nil || len(l.w.counters) == 0 && len(l.w.requests) == 0 && !(last && !l.w.empty()) {
		return nil
	}
	l.w.seq = l.seq
	return &l.w
}

// committed records that the pending writes are on disk and starts the next batch's; it
// returns how many increments the commit made durable.
func (l *ledger) committed() uint64 {
	n := l.seq - l.durable
	l.durable = l.seq
	for _, c := range l.w.counters {
		c.dirty = false
	}
	l.w.reset()
	return n
}

// fail records that the pending writes could not be committed: memory is ahead of the disk,
// so from now on the ledger refuses everything with the error it returns, which says then
// (how the counter comes back).
func (l *ledger) fail(err error, then string) error {
	l.failed = status.Errorf(codes.Unavailable, "the counter stopped: writing to its database failed, nothing after sequence %d is known to be stored; %s: %v", l.durable, then, err)
	return l.failed
}

// exists reports whether the named counter was ever incremented: a name only in a message
// being checked is not a counter yet.
func (l *ledger) exists(name string) bool {
	c := l.counters[name]
	return c != nil && c.seq != 0
}

// counter returns the named counter, making it (at 0) if it does not exist.
func (l *ledger) counter(name string) *counterState {
	c := l.counters[name]
	if c == nil {
		c = &counterState{name: name}
		l.counters[name] = c
	}
	return c
}

// set gives c its new value and the next sequence number and, with a printer, queues the
// talk's print job in the same step (RR 1001), so that print jobs leave in count order.
func (l *ledger) set(c *counterState, value int64, link *trace.SpanContext) {
	if c.seq == 0 {
		l.names++
	}
	l.seq++
	c.value, c.seq = value, l.seq
	if !c.dirty {
		c.dirty = true
		l.w.counters = append(l.w.counters, c)
	}
	if l.forwarding {
		j := printJob{seq: l.seq, name: c.name, value: value, link: link}
		l.outbox = append(l.outbox, j)
		l.w.jobs = append(l.w.jobs, j)
	}
}

// discard forgets the counters in cs that a refused message made, and empties the scratch.
func (l *ledger) discard(cs []*counterState) {
	for _, c := range cs {
		if c.seq == 0 {
			delete(l.counters, c.name) // made by this message only
		}
	}
	clear(cs)
	l.scratch = cs[:0]
}

// outboxIsFull says why an increment is refused when the outbox holds --counter-outbox-max
// print jobs.
const outboxIsFull = "the printer is away and the outbox of print jobs is full"

var errOutboxFull = status.Error(codes.Unavailable, outboxIsFull+": nothing was applied; retry once the printer is back")

// tooManyCounters refuses an increment that would create a counter past --counter-max-names;
// what, formatted with args, says which increment and what became of it.
func (l *ledger) tooManyCounters(what string, args ...any) error {
	meta := map[string]string{"max_names": strconv.Itoa(l.limits.MaxNames), "max_names_flag": "--counter-max-names", "counters": strconv.Itoa(l.names)}
	return failure(codes.ResourceExhausted, "TOO_MANY_COUNTERS", meta, "the counter limit is reached: %s", fmt.Sprintf(what, args...))
}

func requestIDReused(r *requestRecord) error {
	return fieldError("request_id", fmt.Sprintf("was first used with name %q and delta %d; a request_id may be reused only for a retry of the same increment", r.name, r.delta))
}

var errShuttingDown = status.Error(codes.Unavailable, "the counter is shutting down: nothing was applied; retry when it is back")

// add returns a+b and whether it fits in an int64.
func add(a, b int64) (int64, bool) {
	c := a + b
	return c, (c > a) == (b > 0)
}

// delta is an increment's delta: 1 when left out, as in the talk.
func delta(d *int64) int64 {
	if d == nil {
		return 1
	}
	return *d
}
