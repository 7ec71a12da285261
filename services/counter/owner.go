package counter

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	"github.com/concur-dev/concur/internal/jitter"
)

const (
	// inboxSize bounds the messages waiting for the owner: a handler that finds it full waits.
	inboxSize = 1024
	// batchIncrements caps the increments one group commit takes, so that a flood of stream
	// messages still gets answered in bounded steps.
	batchIncrements = 1 << 14
)

// owner is the one goroutine that owns every counter (the talk's counter_manager, RR 1000).
// Handlers and the forwarder reach it only through inbox; it answers them by closing the
// done channel of their message after writing the answer into it. It works in batches: it
// takes everything queued, applies it in memory, commits one transaction (group commit),
// and only then answers, tells watchers and hands new print jobs to the forwarder, so that
// nothing leaves the owner before it is on disk.
type owner struct {
	inbox   chan message
	stopped chan struct{} // closed when the owner has exited

	// Everything below belongs to the owner goroutine.
	cfg        Config
	store      store
	jitter     jitter.Jitter
	log        *slog.Logger
	metrics    *metrics
	forwarding bool   // a printer is configured: keep an outbox of print jobs
	seq        uint64 // the last sequence number handed out
	durable    uint64 // the last sequence number on disk
	counters   map[string]*counterState
	names      int        // counters incremented at least once; a name only watched is not one
	outbox     []printJob // committed or in this batch, not yet acknowledged by the printer
	requests   map[string]*requestRecord
	requestLog []*requestRecord      // the same records, oldest first, for pruning
	joins      []*joinMsg            // waiting for the printer, in order of target
	puller     *pullMsg              // the forwarder, waiting for print jobs
	closing    bool                  // shutting down: refuse new increments, watches and stream messages
	unwatched  bool                  // the watches were ended for the shutdown
	open       map[*streamState]bool // streams that sent a message and have not ended
	failed     error                 // a commit failed: memory is ahead of the disk; refuse everything
	stamp      uint64                // numbers stream messages, for counterState.stamp
	streams    uint64                // numbers streams, for counterState.stream

	// The batch in progress.
	batch   []message
	w       writes
	replies []*reply
	failing []*streamState // streams whose failure is told after the commit
	joined  []*joinMsg     // joins registered in this batch
	scratch []*counterState
}

// counterState is one counter. Only the owner touches it.
type counterState struct {
	name     string
	value    int64
	seq      uint64 // the sequence of the last increment applied to it; 0 if none
	watchers []*watcher
	dirty    bool   // changed in the batch in progress
	pending  int64  // its value while a stream message is checked for overflow
	stamp    uint64 // the stream message pending belongs to
	stream   uint64 // the last stream that touched it: a fast path for the stream's summary
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
}

// watcher is one Watch call: a one-slot channel that the owner refills with the latest value
// without ever blocking, and closes when the counter shuts down.
type watcher struct {
	name string
	ch   chan watchValue
}

type watchValue struct {
	value int64
	seq   uint64
}

// message is anything sent to the owner.
type message interface {
	// increments is how many increments the message carries, for the batch cap.
	increments() int
}

// reply is the answer part of a message: the owner sets err (and the message's own result
// fields), then closes done. Nobody reads the result before done is closed.
type reply struct {
	done chan struct{}
	err  error
}

func newReply() reply { return reply{done: make(chan struct{})} }

type (
	incrementMsg struct {
		reply
		name, requestID string
		delta           int64
		// result
		value    int64
		seq      uint64
		replayed bool
	}
	streamBatchMsg struct {
		stream *streamState
		incs   []*counterv1.CounterIncrement
	}
	streamEndMsg struct {
		reply
		stream *streamState
		// result
		applied  uint64
		counters []*counterv1.CounterValue
	}
	getMsg struct {
		reply
		name  string
		value int64 // result
	}
	watchMsg struct {
		reply
		w     *watcher
		first watchValue // result
	}
	unwatchMsg    struct{ w *watcher }
	streamGoneMsg struct{ stream *streamState } // its handler returned
	joinMsg       struct {
		reply
		committed chan struct{} // closed once target is known and on disk
		target    uint64
		printed   bool
	}
	pullMsg struct {
		reply
		after uint64 // send jobs with a greater sequence
		max   int
		wait  bool       // park until there are some, instead of answering none
		jobs  []printJob // result
	}
	ackMsg   struct{ through uint64 }
	closeMsg struct{ reply }
	stopMsg  struct{ reply }
)

func (*incrementMsg) increments() int     { return 1 }
func (m *streamBatchMsg) increments() int { return len(m.incs) }
func (*streamEndMsg) increments() int     { return 0 }
func (*getMsg) increments() int           { return 0 }
func (*watchMsg) increments() int         { return 0 }
func (*unwatchMsg) increments() int       { return 0 }
func (*streamGoneMsg) increments() int    { return 0 }
func (*joinMsg) increments() int          { return 0 }
func (*pullMsg) increments() int          { return 0 }
func (*ackMsg) increments() int           { return 0 }
func (*closeMsg) increments() int         { return 0 }
func (*stopMsg) increments() int          { return 0 }

// streamState is one IncrementStream call as the owner sees it.
type streamState struct {
	failed chan struct{} // closed by the owner, after a commit, when a message failed
	err    error         // why; written by the owner before failed is closed

	// The owner's.
	id       uint64
	messages int
	applied  uint64
	touched  []*counterState // in order of first appearance
	seen     map[*counterState]bool
}

func newStreamState() *streamState {
	return &streamState{failed: make(chan struct{}), seen: map[*counterState]bool{}}
}

func newOwner(cfg Config, st store, s *state, forwarding bool, j jitter.Jitter, log *slog.Logger, m *metrics) *owner {
	o := &owner{
		inbox:      make(chan message, inboxSize),
		stopped:    make(chan struct{}),
		cfg:        cfg,
		store:      st,
		jitter:     j,
		log:        log,
		metrics:    m,
		forwarding: forwarding,
		seq:        s.seq,
		durable:    s.seq,
		counters:   s.counters,
		names:      len(s.counters),
		outbox:     s.outbox,
		requests:   make(map[string]*requestRecord, len(s.requests)),
		open:       map[*streamState]bool{},
		requestLog: s.requests,
	}
	for _, r := range s.requests {
		if c := o.counters[r.name]; c != nil {
			r.name = c.name // share the counter's string
		}
		o.requests[r.id] = r
	}
	o.metrics.outbox.Set(float64(len(o.outbox)))
	return o
}

// run is the owner's loop: take a batch, apply it, commit it, answer it.
func (o *owner) run() {
	defer close(o.stopped)
	for {
		o.batch = append(o.batch[:0], <-o.inbox)
		n := o.batch[0].increments()
	drain:
		for n < batchIncrements && len(o.batch) < inboxSize {
			select {
			case m := <-o.inbox:
				o.batch = append(o.batch, m)
				n += m.increments()
			default:
				break drain
			}
		}
		o.jitter.Sleep()
		var stop *stopMsg
		for _, m := range o.batch {
			if s, ok := m.(*stopMsg); ok {
				stop = s
			}
			o.apply(m)
		}
		o.prune(time.Now())
		o.jitter.Sleep()
		wrote := o.commit(stop != nil)
		o.jitter.Sleep()
		o.answer()
		if wrote {
			o.w.reset()
		}
		clear(o.batch)
		if stop != nil {
			o.finish(stop)
			return
		}
	}
}

func (o *owner) apply(m message) {
	if o.failed != nil {
		o.refuse(m)
		return
	}
	switch m := m.(type) {
	case *incrementMsg:
		o.increment(m)
	case *streamBatchMsg:
		o.streamBatch(m)
	case *streamEndMsg:
		o.streamEnd(m)
	case *getMsg:
		if c := o.counters[m.name]; c != nil {
			m.value = c.value
		}
		o.ready(&m.reply)
	case *watchMsg:
		if o.closing {
			m.err = errShuttingDown
		} else {
			c := o.counter(m.w.name)
			c.watchers = append(c.watchers, m.w)
			m.first = watchValue{c.value, c.seq}
		}
		o.ready(&m.reply)
	case *unwatchMsg:
		o.dropWatcher(m.w)
	case *streamGoneMsg:
		delete(o.open, m.stream)
	case *joinMsg:
		m.target = o.seq
		o.joined = append(o.joined, m)
	case *pullMsg:
		o.puller = m
	case *ackMsg:
		o.acknowledged(m.through)
	case *closeMsg:
		o.close()
		o.ready(&m.reply)
	case *stopMsg:
		o.close()
	}
}

// close starts the shutdown: from now on nothing new is applied, and the open streams are
// ended, telling each how much of it was applied.
func (o *owner) close() {
	if o.closing {
		return
	}
	o.closing = true
	for s := range o.open {
		o.failStream(s, status.Errorf(codes.Unavailable, "the counter is shutting down: the %d increments this stream sent so far were applied; send the rest when it is back", s.applied))
	}
}

// refuse answers a message after a failed commit, when memory can no longer be trusted.
func (o *owner) refuse(m message) {
	switch m := m.(type) {
	case *incrementMsg:
		o.fail(&m.reply, o.failed)
	case *streamBatchMsg:
		o.failStream(m.stream, o.failed)
	case *streamEndMsg:
		o.fail(&m.reply, o.failed)
	case *getMsg:
		o.fail(&m.reply, o.failed)
	case *watchMsg:
		o.fail(&m.reply, o.failed)
	case *unwatchMsg:
		o.dropWatcher(m.w)
	case *streamGoneMsg:
		delete(o.open, m.stream)
	case *joinMsg:
		o.fail(&m.reply, o.failed)
	case *pullMsg:
		if !m.wait {
			o.ready(&m.reply) // none: nothing after the failure may go out
		}
	case *closeMsg:
		o.ready(&m.reply)
	case *stopMsg, *ackMsg:
	}
}

func (o *owner) ready(r *reply) { o.replies = append(o.replies, r) }

func (o *owner) fail(r *reply, err error) {
	r.err = err
	o.ready(r)
}

func (o *owner) failStream(s *streamState, err error) {
	if s.err == nil {
		s.err = err
		o.failing = append(o.failing, s)
		delete(o.open, s)
	}
}

// exists reports whether the named counter was ever incremented: a name only watched, or
// only in a message being checked, is not a counter yet.
func (o *owner) exists(name string) bool {
	c := o.counters[name]
	return c != nil && c.seq != 0
}

// counter returns the named counter, making it (at 0) if it does not exist.
func (o *owner) counter(name string) *counterState {
	c := o.counters[name]
	if c == nil {
		c = &counterState{name: name}
		o.counters[name] = c
	}
	return c
}

// set gives c its new value and the next sequence number and, with a printer, queues the
// talk's print job in the same step (RR 1001), so that print jobs leave in count order.
func (o *owner) set(c *counterState, value int64) {
	if c.seq == 0 {
		o.names++
	}
	o.seq++
	c.value, c.seq = value, o.seq
	if !c.dirty {
		c.dirty = true
		o.w.counters = append(o.w.counters, c)
	}
	if o.forwarding {
		j := printJob{seq: o.seq, name: c.name, value: value}
		o.outbox = append(o.outbox, j)
		o.w.jobs = append(o.w.jobs, j)
	}
}

func (o *owner) increment(m *incrementMsg) {
	defer o.ready(&m.reply)
	if m.requestID != "" {
		if r := o.requests[m.requestID]; r != nil {
			if r.name != m.name || r.delta != m.delta {
				m.err = requestIDReused(r)
				return
			}
			m.value, m.seq, m.replayed = r.value, r.seq, true
			return
		}
	}
	switch {
	case o.closing:
		m.err = errShuttingDown
		return
	case o.forwarding && len(o.outbox) >= o.cfg.OutboxMax:
		m.err = o.outboxFull(1)
		return
	case !o.exists(m.name) && o.names >= o.cfg.MaxNames:
		m.err = o.tooManyCounters("counter %q was not created and nothing was applied", m.name)
		return
	}
	c := o.counter(m.name)
	v, ok := add(c.value, m.delta)
	if !ok {
		m.err = status.Errorf(codes.OutOfRange, "adding %d to counter %q (%d) would overflow a signed 64-bit integer; the counter is unchanged", m.delta, c.name, c.value)
		return
	}
	o.set(c, v)
	m.value, m.seq = v, c.seq
	if m.requestID != "" {
		r := &requestRecord{id: m.requestID, name: c.name, delta: m.delta, value: v, seq: c.seq, at: time.Now()}
		o.requests[r.id] = r
		o.requestLog = append(o.requestLog, r)
		o.w.requests = append(o.w.requests, r)
	}
}

// streamBatch applies one IncrementStream message whole or not at all: it checks every
// increment for overflow first, counting increments to the same counter together, and the
// counters it would create against --counter-max-names.
func (o *owner) streamBatch(m *streamBatchMsg) {
	s := m.stream
	if s.err != nil {
		return // an earlier message failed: the stream applies nothing more
	}
	s.messages++
	switch {
	case o.closing:
		o.failStream(s, status.Errorf(codes.Unavailable, "the counter is shutting down: message %d of this stream was not applied; the %d increments before it were", s.messages, s.applied))
		return
	case o.forwarding && len(o.outbox)+len(m.incs) > o.cfg.OutboxMax:
		o.failStream(s, status.Errorf(codes.Unavailable, "%s; message %d of this stream was not applied, the %d increments before it were",
			status.Convert(o.outboxFull(len(m.incs))).Message(), s.messages, s.applied))
		return
	}
	o.stamp++
	cs := o.scratch[:0]
	fresh := 0 // counters the message would create
	for i, inc := range m.incs {
		name := counterv1.NameOrDefault(inc.GetName())
		c, existed := o.counters[name]
		if !existed {
			c = &counterState{name: name}
			o.counters[name] = c
		}
		if c.stamp != o.stamp {
			c.stamp, c.pending = o.stamp, c.value
			if c.seq == 0 {
				fresh++
			}
		}
		v, ok := add(c.pending, delta(inc.Delta))
		if !ok {
			o.failStream(s, status.Errorf(codes.OutOfRange,
				"increments[%d] of message %d: adding %d to counter %q (%d) would overflow a signed 64-bit integer; the message was not applied, the %d increments before it were",
				i, s.messages, delta(inc.Delta), name, c.pending, s.applied))
			o.discard(append(cs, c))
			return
		}
		c.pending = v
		cs = append(cs, c)
	}
	if fresh > 0 && o.names+fresh > o.cfg.MaxNames {
		o.failStream(s, o.tooManyCounters("message %d of this stream would create %d more, so it was not applied (the %d increments before it were)",
			s.messages, fresh, s.applied))
		o.discard(cs)
		return
	}
	if s.id == 0 {
		o.streams++
		s.id = o.streams
		o.open[s] = true
	}
	for i, c := range cs {
		o.set(c, c.value+delta(m.incs[i].Delta))
		if c.stream != s.id {
			c.stream = s.id
			if !s.seen[c] {
				s.seen[c] = true
				s.touched = append(s.touched, c)
			}
		}
	}
	s.applied += uint64(len(cs))
	clear(cs)
	o.scratch = cs[:0]
}

// discard forgets the counters in cs that a refused message made, and empties the scratch.
func (o *owner) discard(cs []*counterState) {
	for _, c := range cs {
		if c.seq == 0 && len(c.watchers) == 0 {
			delete(o.counters, c.name) // made by this message only
		}
	}
	clear(cs)
	o.scratch = cs[:0]
}

func (o *owner) streamEnd(m *streamEndMsg) {
	s := m.stream
	defer o.ready(&m.reply)
	delete(o.open, s)
	if s.err != nil {
		m.err = s.err
		return
	}
	m.applied = s.applied
	m.counters = make([]*counterv1.CounterValue, len(s.touched))
	for i, c := range s.touched {
		m.counters[i] = &counterv1.CounterValue{Name: c.name, Value: new(c.value)}
	}
}

func (o *owner) dropWatcher(w *watcher) {
	c := o.counters[w.name]
	if c == nil {
		return
	}
	if i := slices.Index(c.watchers, w); i >= 0 {
		c.watchers = slices.Delete(c.watchers, i, i+1)
	}
	if len(c.watchers) == 0 && c.seq == 0 {
		delete(o.counters, c.name) // made by the watch only
	}
}

// acknowledged drops from the outbox the print jobs the printer has acknowledged.
func (o *owner) acknowledged(through uint64) {
	n := 0
	for n < len(o.outbox) && o.outbox[n].seq <= through {
		o.w.printed = append(o.w.printed, o.outbox[n].seq)
		n++
	}
	o.outbox = o.outbox[n:]
}

// printedThrough reports whether the printer acknowledged every print job up to seq.
func (o *owner) printedThrough(seq uint64) bool {
	return len(o.outbox) == 0 || o.outbox[0].seq > seq
}

// prune forgets request ids past their age or past the most the counter keeps.
func (o *owner) prune(now time.Time) {
	cutoff := now.Add(-o.cfg.RequestIDTTL)
	n := 0
	for n < len(o.requestLog) {
		r := o.requestLog[n]
		if len(o.requestLog)-n <= o.cfg.RequestIDMax && !r.at.Before(cutoff) {
			break
		}
		delete(o.requests, r.id)
		o.w.forgotten = append(o.w.forgotten, r.id)
		n++
	}
	clear(o.requestLog[:n])
	o.requestLog = o.requestLog[n:]
}

// commit writes the batch in one transaction. Dropping acknowledged print jobs and pruning
// request ids are only cleanup: they wait for a commit that something else needs (or the
// last one), rather than cost a disk sync of their own. Lost in a crash, they only make the
// counter resend jobs the printer acknowledges as duplicates, and forget ids a little later.
func (o *owner) commit(last bool) (wrote bool) {
	if o.failed != nil || len(o.w.counters) == 0 && len(o.w.requests) == 0 && !(last && !o.w.empty()) {
		return false
	}
	o.w.seq = o.seq
	start := time.Now()
	err := o.store.commit(&o.w)
	o.metrics.commitSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		o.failed = status.Errorf(codes.Unavailable, "the counter could not write to its database and stopped taking requests; restart it (nothing after sequence %d is on disk): %v", o.durable, err)
		o.log.Error("counter database failed: restart the counter", "err", err)
		// Nothing of this batch is on disk: every answer becomes the failure.
		for _, r := range o.replies {
			r.err = o.failed
		}
		for _, s := range o.failing { // not told yet: what they say about earlier messages is untrue now
			s.err = o.failed
		}
		for _, m := range o.batch {
			if b, ok := m.(*streamBatchMsg); ok {
				o.failStream(b.stream, o.failed)
			}
		}
		for _, j := range o.joined {
			o.fail(&j.reply, o.failed)
		}
		o.joined = o.joined[:0]
		return false
	}
	o.metrics.increments.Add(float64(o.seq - o.durable))
	o.durable = o.seq
	return true
}

// answer runs after the commit: what the batch did is on disk, so it may be told.
func (o *owner) answer() {
	if o.failed == nil {
		for _, c := range o.w.counters {
			c.dirty = false
			for _, w := range c.watchers {
				w.push(watchValue{c.value, c.seq})
			}
		}
	}
	for _, r := range o.replies {
		close(r.done)
	}
	for _, s := range o.failing {
		close(s.failed)
	}
	for _, j := range o.joined {
		close(j.committed)
	}
	o.joins = append(o.joins, o.joined...)
	o.resolveJoins()
	o.feedForwarder()
	if o.closing && !o.unwatched {
		o.endWatches()
	}
	o.metrics.outbox.Set(float64(len(o.outbox)))
	clear(o.replies)
	clear(o.failing)
	clear(o.joined)
	o.replies, o.failing, o.joined = o.replies[:0], o.failing[:0], o.joined[:0]
}

// resolveJoins answers the joins whose increments the printer has acknowledged (all of
// them, at once, when there is no printer).
func (o *owner) resolveJoins() {
	n := 0
	for n < len(o.joins) && (!o.forwarding || o.printedThrough(o.joins[n].target)) {
		j := o.joins[n]
		j.printed = o.forwarding
		close(j.done)
		n++
	}
	clear(o.joins[:n])
	o.joins = o.joins[n:]
}

// feedForwarder hands the waiting forwarder the committed print jobs after its position.
func (o *owner) feedForwarder() {
	p := o.puller
	if p == nil || o.failed != nil && p.wait {
		return
	}
	if o.failed == nil {
		i := sort.Search(len(o.outbox), func(i int) bool { return o.outbox[i].seq > p.after })
		p.jobs = slices.Clone(o.outbox[i:min(len(o.outbox), i+p.max)])
	}
	if len(p.jobs) == 0 && p.wait {
		return
	}
	o.puller = nil
	close(p.done)
}

func (o *owner) endWatches() {
	o.unwatched = true
	for _, c := range o.counters {
		for _, w := range c.watchers {
			close(w.ch)
		}
		c.watchers = nil
	}
}

// finish answers what still waits and closes the store; the owner then exits.
func (o *owner) finish(stop *stopMsg) {
	for _, j := range o.joins {
		j.err = status.Errorf(codes.Unavailable, "the counter shut down before the printer acknowledged the print jobs up to sequence %d; they wait in the outbox for the next start", j.target)
		close(j.done)
	}
	o.joins = nil
	if p := o.puller; p != nil {
		close(p.done)
	}
	if n := len(o.outbox); n > 0 {
		if o.cfg.DB == Memory {
			o.log.Warn("the printer did not take every print job before shutdown, and --counter-db=:memory: keeps nothing: they are lost", "jobs", n, "first", o.outbox[0].seq)
		} else {
			o.log.Info("print jobs wait in the outbox for the next start", "jobs", n, "first", o.outbox[0].seq)
		}
	}
	stop.err = o.store.close()
	close(stop.done)
}

func (w *watcher) push(v watchValue) {
	select {
	case <-w.ch: // drop the value the watcher has not taken: it gets the latest
	default:
	}
	select {
	case w.ch <- v: // the owner is the only sender, so the slot is free
	default:
	}
}

func (o *owner) outboxFull(n int) error {
	return status.Errorf(codes.Unavailable, "the outbox holds %d print jobs the printer has not taken, and %d more would pass --counter-outbox-max %d; nothing was applied: retry once the printer is back",
		len(o.outbox), n, o.cfg.OutboxMax)
}

// tooManyCounters refuses an increment that would create a counter past --counter-max-names;
// what, formatted with args, says which increment and what became of it.
func (o *owner) tooManyCounters(what string, args ...any) error {
	return failure(codes.ResourceExhausted, "TOO_MANY_COUNTERS", map[string]string{"max_names": strconv.Itoa(o.cfg.MaxNames)},
		"%d counters exist and --counter-max-names allows %d: %s; existing counters still take increments, and the server's operator can raise the limit",
		o.names, o.cfg.MaxNames, fmt.Sprintf(what, args...))
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

// Talking to the owner.

// send puts m in the owner's inbox, waiting for room until ctx ends or the owner stops.
func (o *owner) send(ctx context.Context, m message) error {
	select {
	case o.inbox <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-o.stopped:
		return errShuttingDown
	}
}

// wait waits for the owner's answer in r.
func (o *owner) wait(ctx context.Context, r *reply) error {
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	case <-o.stopped:
		select {
		case <-r.done: // the answer came before the stop
			return r.err
		default:
			return errShuttingDown
		}
	}
}

// tell sends m, which needs no answer, unless the owner has stopped.
func (o *owner) tell(m message) {
	select {
	case o.inbox <- m:
	case <-o.stopped:
	}
}

func (o *owner) call(ctx context.Context, m message, r *reply) error {
	if err := o.send(ctx, m); err != nil {
		return err
	}
	return o.wait(ctx, r)
}
