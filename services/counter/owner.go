package counter

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/concur-dev/concur/internal/jitter"
)

const (
	// inboxSize bounds the messages waiting for the owner: a handler that finds it full waits.
	inboxSize = 1024
	// batchIncrements caps the increments one group commit takes, so that a flood of stream
	// messages still gets answered in bounded steps.
	batchIncrements = 1 << 14
)

// owner is the one goroutine that owns the counters (the talk's counter_manager, RR 1000).
// Handlers and the forwarder reach it only through inbox, with messages (messages.go). It
// works in batches: it applies every message queued, each to the ledger, commits the
// ledger's writes in one transaction (group commit), and only then answers, tells watchers
// and hands new print jobs to the forwarder, so that nothing leaves the owner before it is
// on disk.
type owner struct {
	inbox   chan message
	stopped chan struct{} // closed when the owner has exited
	broken  chan struct{} // closed when a commit failed: the counter refuses everything until a restart
	batch   int           // the most increments one batch takes

	// Everything below belongs to the owner goroutine.
	ledger    ledger
	store     store
	db        string // --counter-db, for the last words
	jitter    jitter.Jitter
	log       *slog.Logger
	metrics   *metrics
	watchers  map[string][]*watcher
	unwatched bool                  // the watches were ended for the shutdown
	open      map[*streamState]bool // streams that sent a message and have not ended
	joins     []*joinMsg            // waiting for the printer, in order of target
	puller    *pullMsg              // the forwarder, waiting for print jobs
	stopping  *stopMsg              // the last batch: the owner exits after it

	// The batch in progress.
	taken, carried int            // messages, and the increments they carry
	replies        []*reply       // answered once the batch is committed
	failing        []*streamState // streams whose failure is told after the commit
	streamed       []*streamState // streams that sent a message in this batch
	joined         []*joinMsg     // joins registered in this batch
}

// reply is the answer part of a message: the owner sets err (and the message's own result
// fields), then closes done. Nobody reads the result before done is closed.
type reply struct {
	done chan struct{}
	err  error
}

func newReply() reply { return reply{done: make(chan struct{})} }

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

// streamState is one IncrementStream call as the owner sees it.
type streamState struct {
	failed chan struct{} // closed by the owner, after a commit, when a message failed
	err    error         // why; written by the owner before failed is closed
	tally                // the owner's
}

func newStreamState() *streamState { return &streamState{failed: make(chan struct{})} }

func newOwner(cfg Config, st store, s *state, forwarding bool, j jitter.Jitter, log *slog.Logger, m *metrics) *owner {
	o := &owner{
		batch:    batchIncrements,
		inbox:    make(chan message, inboxSize),
		stopped:  make(chan struct{}),
		broken:   make(chan struct{}),
		ledger:   newLedger(cfg, s, forwarding),
		store:    st,
		db:       cfg.DB,
		jitter:   j,
		log:      log,
		metrics:  m,
		watchers: map[string][]*watcher{},
		open:     map[*streamState]bool{},
	}
	o.metrics.measureOutbox(o.ledger.outbox)
	return o
}

// run is the owner's loop: take a batch, apply it, commit it, answer it.
func (o *owner) run() {
	defer close(o.stopped)
	for {
		m := <-o.inbox
		o.jitter.Sleep()
		o.take(m)
	drain:
		for o.carried < o.batch && o.taken < inboxSize {
			select {
			case m := <-o.inbox:
				o.take(m)
			default:
				break drain
			}
		}
		o.ledger.prune()
		o.jitter.Sleep()
		o.commit()
		o.jitter.Sleep()
		o.answer()
		if o.stopping != nil {
			o.finish()
			return
		}
	}
}

func (o *owner) take(m message) {
	o.taken++
	m.apply(o)
}

// commit writes what the batch changed in one transaction, and tells the watchers.
func (o *owner) commit() {
	w := o.ledger.pending(o.stopping != nil)
	if w == nil {
		return
	}
	start := time.Now()
	err := o.store.commit(w)
	o.metrics.commitSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		then := o.store.afterFailure()
		failed := o.ledger.fail(err, then)
		o.log.Error("counter database failed: "+then, "err", err)
		select {
		case <-o.broken:
		default:
			close(o.broken)
		}
		// Nothing of this batch is on disk: every answer becomes the failure.
		for _, r := range o.replies {
			r.err = failed
		}
		for _, s := range o.failing { // not told yet: what they say about earlier messages is untrue now
			s.err = failed
		}
		for _, s := range o.streamed {
			o.failStream(s, failed)
		}
		for _, j := range o.joined {
			o.fail(&j.reply, failed)
		}
		clear(o.joined)
		o.joined = o.joined[:0]
		return
	}
	if len(o.watchers) > 0 {
		for _, c := range w.counters {
			for _, wt := range o.watchers[c.name] {
				wt.push(watchValue{c.value, c.seq})
			}
		}
	}
	o.metrics.increments.Add(float64(o.ledger.committed()))
}

// answer runs after the commit: what the batch did is on disk, so it may be told. The metrics
// go first, so that whoever hears an answer finds them up to date.
func (o *owner) answer() {
	o.metrics.measureOutbox(o.ledger.outbox)
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
	if o.ledger.closed && !o.unwatched {
		o.endWatches()
	}
	clear(o.replies)
	clear(o.failing)
	clear(o.streamed)
	clear(o.joined)
	o.replies, o.failing, o.streamed, o.joined = o.replies[:0], o.failing[:0], o.streamed[:0], o.joined[:0]
	o.taken, o.carried = 0, 0
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

// close starts the shutdown: from now on nothing new is applied, and the open streams are
// ended, telling each how much of it was applied. After a failed commit it does nothing:
// everything is refused already.
func (o *owner) close() {
	if o.ledger.closed || o.ledger.failed != nil {
		return
	}
	o.ledger.close()
	for s := range o.open {
		o.failStream(s, status.Errorf(codes.Unavailable, "the counter is shutting down: the %d increments this stream sent so far were applied; send the rest when it is back", s.applied))
	}
}

func (o *owner) dropWatcher(w *watcher) {
	ws := o.watchers[w.name]
	if i := slices.Index(ws, w); i >= 0 {
		ws = slices.Delete(ws, i, i+1)
	}
	if len(ws) == 0 {
		delete(o.watchers, w.name)
	} else {
		o.watchers[w.name] = ws
	}
}

func (o *owner) endWatches() {
	o.unwatched = true
	for _, ws := range o.watchers {
		for _, w := range ws {
			close(w.ch)
		}
	}
	clear(o.watchers)
}

// resolveJoins answers the joins whose increments the printer has acknowledged (all of
// them, at once, when there is no printer).
func (o *owner) resolveJoins() {
	n := 0
	for n < len(o.joins) && (!o.ledger.forwarding || o.ledger.printedThrough(o.joins[n].target)) {
		j := o.joins[n]
		j.printed = o.ledger.forwarding
		close(j.done)
		n++
	}
	clear(o.joins[:n])
	o.joins = o.joins[n:]
}

// feedForwarder hands the waiting forwarder the committed print jobs after its position.
func (o *owner) feedForwarder() {
	p := o.puller
	if p == nil {
		return
	}
	p.jobs = o.ledger.jobsAfter(p.after, p.max)
	if len(p.jobs) == 0 && p.wait {
		return
	}
	o.puller = nil
	close(p.done)
}

// finish answers what still waits and closes the store; the owner then exits.
func (o *owner) finish() {
	for _, j := range o.joins {
		j.err = status.Errorf(codes.Unavailable, "the counter shut down before the printer took the print jobs up to sequence %d: they wait in the outbox for its next start", j.target)
		close(j.done)
	}
	o.joins = nil
	if p := o.puller; p != nil {
		close(p.done)
	}
	if outbox := o.ledger.outbox; len(outbox) > 0 {
		if o.db == Memory {
			o.log.Warn("the printer did not take every print job before shutdown, and --counter-db=:memory: keeps nothing: they are lost", "jobs", len(outbox), "first", outbox[0].seq)
		} else {
			o.log.Info("print jobs wait in the outbox for the next start", "jobs", len(outbox), "first", outbox[0].seq)
		}
	}
	o.stopping.err = o.store.close()
	close(o.stopping.done)
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
