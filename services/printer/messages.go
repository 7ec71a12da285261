package printer

// message is anything sent to the owner. The owner runs apply on its own goroutine, in the
// order messages arrive; apply does the message's whole work and answers through the
// message's own channels, which are buffered or closed, so the owner never waits for a
// handler.
//
// Adding a message is adding a type here with its apply, and a handler that sends it with
// p.send.
//
// Every message but one comes through the inbox. A submission (owner.go) is a message too,
// but it has a channel of its own, the intake, which is the backpressure: the owner receives
// from the intake only while the queue has room and no submission is parked, so a Print waits
// on its send, until its deadline, while the queue is full. The inbox stays open meanwhile,
// which is what lets a handler withdraw the submission it gave up on, and Joins and Tails go
// on.
type message interface {
	apply(o *owner)
}

// apply takes the submission: accepted if it fits in the queue, else parked until it does.
func (s *submission) apply(o *owner) { o.take(s) }

// joinMsg is one Join: written gets the last sequence written once every job accepted before
// it is written.
type joinMsg struct {
	written chan uint64 // buffered
}

func (m *joinMsg) apply(o *owner) { o.join(m.written) }

// readMsg is one trip of a Tail to the history: a page of the written jobs from from on. done
// is closed once pg and err are set.
type readMsg struct {
	from  uint64
	first bool // the Tail's first read: a sequence no longer kept is OUT_OF_RANGE
	done  chan struct{}
	// result
	pg  page
	err error
}

func (m *readMsg) apply(o *owner) {
	if m.pg, m.err = o.hist.read(m.from, m.first); m.err == nil && len(m.pg.jobs) == 0 {
		m.pg.wait = o.woken()
	}
	close(m.done)
}

// withdrawMsg is a handler giving up on a submission that waits for room in the queue: unless
// it was accepted meanwhile, the owner answers it with err.
type withdrawMsg struct {
	s   *submission
	err error
}

func (m *withdrawMsg) apply(o *owner) { o.withdraw(m.s, m.err) }
