package counter

import (
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
)

// The ledger is tested alone: no owner, no gRPC, no goroutine, no disk. Each case runs a
// batch of requests and checks each answer and what the batch asks the store to write.

// limits are roomy limits that a case narrows.
func limits() Config {
	return Config{DB: Memory, OutboxMax: 1000, RequestIDTTL: time.Hour, RequestIDMax: 1000, MaxNames: 1000}
}

// limited is limits() changed by limit, if any.
func limited(limit func(*Config)) Config {
	cfg := limits()
	if limit != nil {
		limit(&cfg)
	}
	return cfg
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// testLedger is a ledger over an empty store, with a clock that stands still at t0 unless
// the test moves it.
func testLedger(cfg Config, forwarding bool) (*ledger, *time.Time) {
	l := newLedger(cfg, newState(), forwarding)
	now := t0
	l.now = func() time.Time { return now }
	return &l, &now
}

// inc is one Increment and the answer it must get: want when code is OK.
type inc struct {
	name, id string
	delta    int64
	code     codes.Code
	want     result
}

func (c inc) run(t *testing.T, l *ledger) {
	t.Helper()
	got, err := l.increment(c.name, c.id, c.delta, nil)
	if status.Code(err) != c.code {
		t.Fatalf("increment(%q, %q, %d) = %v, want code %v", c.name, c.id, c.delta, err, c.code)
	}
	if err == nil && got != c.want {
		t.Fatalf("increment(%q, %q, %d) = %+v, want %+v", c.name, c.id, c.delta, got, c.want)
	}
}

// committed are the writes a batch asks for, summed up to compare.
type committed struct {
	seq      uint64
	counters map[string]int64 // name -> value
	jobs     []uint64
	printed  []uint64
	requests []string
}

func summarize(w *writes) committed {
	if w == nil {
		return committed{}
	}
	c := committed{seq: w.seq, counters: map[string]int64{}}
	for _, s := range w.counters {
		c.counters[s.name] = s.value
	}
	for _, j := range w.jobs {
		c.jobs = append(c.jobs, j.seq)
	}
	c.printed = w.printed
	for _, r := range w.requests {
		c.requests = append(c.requests, r.id)
	}
	return c
}

func checkWrites(t *testing.T, got *writes, want committed) {
	t.Helper()
	g := summarize(got)
	if g.seq != want.seq || !maps.Equal(g.counters, want.counters) || !slices.Equal(g.jobs, want.jobs) ||
		!slices.Equal(g.printed, want.printed) || !slices.Equal(g.requests, want.requests) {
		t.Fatalf("writes %+v, want %+v", g, want)
	}
}

func TestLedgerIncrement(t *testing.T) {
	cases := []struct {
		name       string
		limit      func(*Config)
		forwarding bool
		batch      []inc
		writes     committed
	}{{
		name:   "a new counter counts from 0, an existing one from its value",
		batch:  []inc{{name: "a", delta: 1, want: result{1, 1, false}}, {name: "a", delta: -3, want: result{-2, 2, false}}, {name: "b", delta: 5, want: result{5, 3, false}}},
		writes: committed{seq: 3, counters: map[string]int64{"a": -2, "b": 5}},
	}, {
		name:   "overflow is OUT_OF_RANGE and changes nothing",
		batch:  []inc{{name: "a", delta: math.MaxInt64, want: result{math.MaxInt64, 1, false}}, {name: "a", delta: 1, code: codes.OutOfRange}},
		writes: committed{seq: 1, counters: map[string]int64{"a": math.MaxInt64}},
	}, {
		name:   "underflow is OUT_OF_RANGE too",
		batch:  []inc{{name: "a", delta: math.MinInt64, want: result{math.MinInt64, 1, false}}, {name: "a", delta: -1, code: codes.OutOfRange}, {name: "a", delta: 1, want: result{math.MinInt64 + 1, 2, false}}},
		writes: committed{seq: 2, counters: map[string]int64{"a": math.MinInt64 + 1}},
	}, {
		name:   "a request_id is remembered with its first answer",
		batch:  []inc{{name: "a", id: "r1", delta: 2, want: result{2, 1, false}}, {name: "a", delta: 1, want: result{3, 2, false}}},
		writes: committed{seq: 2, counters: map[string]int64{"a": 3}, requests: []string{"r1"}},
	}, {
		name: "a retry with the same request_id gets the first answer and applies nothing",
		batch: []inc{{name: "a", id: "r1", delta: 2, want: result{2, 1, false}}, {name: "a", delta: 1, want: result{3, 2, false}},
			{name: "a", id: "r1", delta: 2, want: result{2, 1, true}}},
		writes: committed{seq: 2, counters: map[string]int64{"a": 3}, requests: []string{"r1"}},
	}, {
		name:   "a request_id reused with another delta is INVALID_ARGUMENT",
		batch:  []inc{{name: "a", id: "r1", delta: 2, want: result{2, 1, false}}, {name: "a", id: "r1", delta: 3, code: codes.InvalidArgument}},
		writes: committed{seq: 1, counters: map[string]int64{"a": 2}, requests: []string{"r1"}},
	}, {
		name:   "a request_id reused with another name is INVALID_ARGUMENT",
		batch:  []inc{{name: "a", id: "r1", delta: 2, want: result{2, 1, false}}, {name: "b", id: "r1", delta: 2, code: codes.InvalidArgument}},
		writes: committed{seq: 1, counters: map[string]int64{"a": 2}, requests: []string{"r1"}},
	}, {
		name:   "a refused increment leaves no request_id behind",
		batch:  []inc{{name: "a", delta: math.MaxInt64, want: result{math.MaxInt64, 1, false}}, {name: "a", id: "r1", delta: 1, code: codes.OutOfRange}, {name: "b", id: "r1", delta: 1, want: result{1, 2, false}}},
		writes: committed{seq: 2, counters: map[string]int64{"a": math.MaxInt64, "b": 1}, requests: []string{"r1"}},
	}, {
		name:       "with a printer every increment queues its print job",
		forwarding: true,
		batch:      []inc{{name: "a", delta: 1, want: result{1, 1, false}}, {name: "b", delta: 1, want: result{1, 2, false}}},
		writes:     committed{seq: 2, counters: map[string]int64{"a": 1, "b": 1}, jobs: []uint64{1, 2}},
	}, {
		name:       "a full outbox is UNAVAILABLE",
		limit:      func(c *Config) { c.OutboxMax = 2 },
		forwarding: true,
		batch:      []inc{{name: "a", delta: 1, want: result{1, 1, false}}, {name: "a", delta: 1, want: result{2, 2, false}}, {name: "a", delta: 1, code: codes.Unavailable}},
		writes:     committed{seq: 2, counters: map[string]int64{"a": 2}, jobs: []uint64{1, 2}},
	}, {
		name:   "without a printer there is no outbox to fill",
		limit:  func(c *Config) { c.OutboxMax = 1 },
		batch:  []inc{{name: "a", delta: 1, want: result{1, 1, false}}, {name: "a", delta: 1, want: result{2, 2, false}}},
		writes: committed{seq: 2, counters: map[string]int64{"a": 2}},
	}, {
		name:  "past --counter-max-names a new counter is RESOURCE_EXHAUSTED, existing ones still count",
		limit: func(c *Config) { c.MaxNames = 2 },
		batch: []inc{{name: "a", delta: 1, want: result{1, 1, false}}, {name: "b", delta: 1, want: result{1, 2, false}},
			{name: "c", delta: 1, code: codes.ResourceExhausted}, {name: "a", delta: 1, want: result{2, 3, false}}},
		writes: committed{seq: 3, counters: map[string]int64{"a": 2, "b": 1}},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, _ := testLedger(limited(c.limit), c.forwarding)
			for _, i := range c.batch {
				i.run(t, l)
			}
			checkWrites(t, l.pending(false), c.writes)
		})
	}
}

// The refusal names its reason and limit for programs, as the contract says.
func TestLedgerTooManyCountersSaysWhy(t *testing.T) {
	cfg := limits()
	cfg.MaxNames = 1
	l, _ := testLedger(cfg, false)
	inc{name: "a", delta: 1, want: result{1, 1, false}}.run(t, l)
	_, err := l.increment("b", "", 1, nil)
	reason, meta := errorInfoOf(err)
	if reason != "TOO_MANY_COUNTERS" || meta["max_names"] != "1" || meta["max_names_flag"] != "--counter-max-names" || meta["counters"] != "1" ||
		!strings.Contains(status.Convert(err).Message(), `counter "b" was not created`) {
		t.Fatalf("got %v (%s %v)", err, reason, meta)
	}
}

// msg is one IncrementStream message: its increments as name:delta pairs, and the answer.
type msg struct {
	incs []string // "name" (delta 1) or "name:delta"
	code codes.Code
	text string // in the error's message
}

func (m msg) increments(t *testing.T) []*counterv1.CounterIncrement {
	t.Helper()
	var incs []*counterv1.CounterIncrement
	for _, s := range m.incs {
		name, d, ok := strings.Cut(s, ":")
		inc := &counterv1.CounterIncrement{Name: name}
		if ok {
			v, err := strconv.ParseInt(d, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			inc.Delta = &v
		}
		incs = append(incs, inc)
	}
	return incs
}

func TestLedgerStream(t *testing.T) {
	cases := []struct {
		name       string
		limit      func(*Config)
		forwarding bool
		before     []inc // Increments before the stream
		messages   []msg
		applied    uint64
		touched    map[string]int64 // the summary: name -> value
		order      []string         // the summary's order
		writes     committed
	}{{
		name:     "a message applies whole, increments in order",
		messages: []msg{{incs: []string{"a", "b:2", "a:3", ""}}},
		applied:  4,
		touched:  map[string]int64{"a": 4, "b": 2, "default": 1},
		order:    []string{"a", "b", "default"},
		writes:   committed{seq: 4, counters: map[string]int64{"a": 4, "b": 2, "default": 1}},
	}, {
		name:     "increments to one counter are checked for overflow together",
		before:   []inc{{name: "a", delta: math.MaxInt64 - 1, want: result{math.MaxInt64 - 1, 1, false}}},
		messages: []msg{{incs: []string{"a", "b", "a"}, code: codes.OutOfRange, text: "increments[2] of message 1"}},
		order:    []string{},
		writes:   committed{seq: 1, counters: map[string]int64{"a": math.MaxInt64 - 1}},
	}, {
		name:     "the messages before a refused one stay applied",
		messages: []msg{{incs: []string{"a"}}, {incs: []string{"a:9223372036854775807"}, code: codes.OutOfRange, text: "the 1 increments before it were"}},
		applied:  1,
		touched:  map[string]int64{"a": 1},
		order:    []string{"a"},
		writes:   committed{seq: 1, counters: map[string]int64{"a": 1}},
	}, {
		name:     "a refused message creates no counter",
		messages: []msg{{incs: []string{"new", "x:-9223372036854775808", "x:-1"}, code: codes.OutOfRange}, {incs: []string{"a"}}},
		applied:  1,
		touched:  map[string]int64{"a": 1},
		order:    []string{"a"},
		writes:   committed{seq: 1, counters: map[string]int64{"a": 1}},
	}, {
		name:     "a message that would create counters past --counter-max-names applies nothing",
		limit:    func(c *Config) { c.MaxNames = 2 },
		before:   []inc{{name: "a", delta: 1, want: result{1, 1, false}}},
		messages: []msg{{incs: []string{"a", "b", "c"}, code: codes.ResourceExhausted, text: "would create 2 more"}, {incs: []string{"a", "b"}}},
		applied:  2,
		touched:  map[string]int64{"a": 2, "b": 1},
		order:    []string{"a", "b"},
		writes:   committed{seq: 3, counters: map[string]int64{"a": 2, "b": 1}},
	}, {
		name:       "a message that would fill the outbox applies nothing",
		limit:      func(c *Config) { c.OutboxMax = 3 },
		forwarding: true,
		messages:   []msg{{incs: []string{"a", "a"}}, {incs: []string{"a", "a"}, code: codes.Unavailable, text: "message 2 of this stream was not applied, the 2 increments before it were"}},
		applied:    2,
		touched:    map[string]int64{"a": 2},
		order:      []string{"a"},
		writes:     committed{seq: 2, counters: map[string]int64{"a": 2}, jobs: []uint64{1, 2}},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, _ := testLedger(limited(c.limit), c.forwarding)
			for _, i := range c.before {
				i.run(t, l)
			}
			var s tally
			for i, m := range c.messages {
				err := l.stream(&s, m.increments(t))
				if status.Code(err) != m.code || !strings.Contains(status.Convert(err).Message(), m.text) {
					t.Fatalf("message %d: %v, want code %v saying %q", i+1, err, m.code, m.text)
				}
			}
			applied, values, err := l.summary(&s)
			if err != nil || applied != c.applied {
				t.Fatalf("summary: %d applied, %v; want %d", applied, err, c.applied)
			}
			var order []string
			for _, v := range values {
				order = append(order, v.GetName())
				if v.GetValue() != c.touched[v.GetName()] {
					t.Fatalf("summary: %s = %d, want %d", v.GetName(), v.GetValue(), c.touched[v.GetName()])
				}
			}
			if len(order) != len(c.order) || !slices.Equal(order, c.order) {
				t.Fatalf("summary order %q, want %q", order, c.order)
			}
			checkWrites(t, l.pending(false), c.writes)
			for name := range l.counters {
				if l.counters[name].seq == 0 {
					t.Fatalf("counter %q was made but never incremented", name)
				}
			}
		})
	}
}

// A closed ledger applies nothing new, but still answers retries and reads; a failed one
// refuses everything, with the same error.
func TestLedgerRefusals(t *testing.T) {
	cases := []struct {
		name   string
		end    func(l *ledger) error // closes or fails the ledger; returns the failure, if any
		replay codes.Code
		read   codes.Code
	}{
		{"closed", func(l *ledger) error { l.close(); return nil }, codes.OK, codes.OK},
		{"failed", func(l *ledger) error { return l.fail(errFull, restartIt) }, codes.Unavailable, codes.Unavailable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, _ := testLedger(limits(), true)
			inc{name: "a", id: "r1", delta: 1, want: result{1, 1, false}}.run(t, l)
			var s tally
			if err := l.stream(&s, []*counterv1.CounterIncrement{{Name: "a"}}); err != nil {
				t.Fatal(err)
			}
			if l.pending(false) == nil {
				t.Fatal("nothing pending")
			}
			l.committed()
			failed := c.end(l)

			inc{name: "a", delta: 1, code: codes.Unavailable}.run(t, l)
			inc{name: "b", delta: 1, code: codes.Unavailable}.run(t, l)
			inc{name: "a", id: "r1", delta: 1, code: c.replay, want: result{1, 1, true}}.run(t, l)
			err := l.stream(&s, []*counterv1.CounterIncrement{{Name: "a"}})
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("stream message: %v", err)
			}
			if v, _, err := l.value("a"); status.Code(err) != c.read || err == nil && v != 2 {
				t.Fatalf("value = %d, %v", v, err)
			}
			if _, _, err := l.summary(&s); status.Code(err) != c.read {
				t.Fatalf("summary: %v", err)
			}
			if failed != nil {
				if !strings.Contains(failed.Error(), "nothing after sequence 2 is known to be stored; restart the counter") {
					t.Fatalf("failure %v does not say what is on disk", failed)
				}
				if jobs := l.jobsAfter(0, 10); len(jobs) != 0 {
					t.Fatalf("after a failure print jobs %v still go out", jobs)
				}
				l.ack(2)
				if l.pending(true) != nil {
					t.Fatal("a failed ledger asks for a commit")
				}
			}
			if l.seq != 2 {
				t.Fatalf("sequence %d, want 2: something was applied", l.seq)
			}
		})
	}
}

var errFull = status.Error(codes.Internal, "no space left on device")

// Cleanup (acknowledged print jobs, pruned ids) waits for a commit that something else needs,
// or the last one.
func TestLedgerPending(t *testing.T) {
	cases := []struct {
		name   string
		batch  func(l *ledger)
		last   bool
		writes committed
		commit bool
	}{
		{"an empty batch needs no commit", func(*ledger) {}, false, committed{}, false},
		{"nor does an empty last one", func(*ledger) {}, true, committed{}, false},
		{"an acknowledgement waits", func(l *ledger) { l.ack(1) }, false, committed{}, false},
		{"unless the batch is the last", func(l *ledger) { l.ack(1) }, true, committed{seq: 2, printed: []uint64{1}}, true},
		{"an increment takes the acknowledgement along", func(l *ledger) {
			l.ack(2)
			inc{name: "b", delta: 1, want: result{1, 3, false}}.run(t, l)
		}, false, committed{seq: 3, counters: map[string]int64{"b": 1}, jobs: []uint64{3}, printed: []uint64{1, 2}}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, _ := testLedger(limits(), true)
			inc{name: "a", delta: 1, want: result{1, 1, false}}.run(t, l)
			inc{name: "a", delta: 1, want: result{2, 2, false}}.run(t, l)
			if n := l.committed(); n != 2 {
				t.Fatalf("committed %d increments, want 2", n)
			}
			c.batch(l)
			w := l.pending(c.last)
			if (w != nil) != c.commit {
				t.Fatalf("pending = %v, want a commit: %v", w, c.commit)
			}
			checkWrites(t, w, c.writes)
		})
	}
}

// The outbox keeps print jobs in sequence order until the printer acknowledges them.
func TestLedgerOutbox(t *testing.T) {
	l, _ := testLedger(limits(), true)
	for i := range 5 {
		inc{name: "a", delta: 1, want: result{int64(i + 1), uint64(i + 1), false}}.run(t, l)
	}
	cases := []struct {
		name       string
		after      uint64
		max        int
		want       []uint64
		through    uint64 // then acknowledged
		printed    uint64 // printedThrough it
		notPrinted uint64
	}{
		{"from the start", 0, 2, []uint64{1, 2}, 2, 2, 3},
		{"after a position", 2, 10, []uint64{3, 4, 5}, 4, 4, 5},
		{"what is left", 0, 10, []uint64{5}, 5, 5, 0},
		{"nothing", 0, 10, nil, 5, 6, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []uint64
			for _, j := range l.jobsAfter(c.after, c.max) {
				got = append(got, j.seq)
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("jobsAfter(%d, %d) = %v, want %v", c.after, c.max, got, c.want)
			}
			l.ack(c.through)
			if !l.printedThrough(c.printed) || c.notPrinted != 0 && l.printedThrough(c.notPrinted) {
				t.Fatalf("after ack(%d): printed through %d: %v, through %d: %v", c.through,
					c.printed, l.printedThrough(c.printed), c.notPrinted, l.printedThrough(c.notPrinted))
			}
		})
	}
}

// Request ids are forgotten past --counter-request-id-ttl or past --counter-request-id-max,
// oldest first; a forgotten id may be used again.
func TestLedgerPrune(t *testing.T) {
	cases := []struct {
		name      string
		max       int
		later     time.Duration // the clock moves this far after the first two ids
		forgotten []string
	}{
		{"young and few: kept", 10, time.Minute, nil},
		{"past the age: forgotten", 10, 2 * time.Hour, []string{"r1", "r2"}},
		{"past the most kept: the oldest go", 2, time.Minute, []string{"r1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := limits()
			cfg.RequestIDMax = c.max
			l, now := testLedger(cfg, false)
			inc{name: "a", id: "r1", delta: 1, want: result{1, 1, false}}.run(t, l)
			inc{name: "a", id: "r2", delta: 1, want: result{2, 2, false}}.run(t, l)
			*now = now.Add(c.later)
			inc{name: "a", id: "r3", delta: 1, want: result{3, 3, false}}.run(t, l)
			l.prune()
			if !slices.Equal(l.w.forgotten, c.forgotten) {
				t.Fatalf("forgotten %q, want %q", l.w.forgotten, c.forgotten)
			}
			if len(c.forgotten) > 0 {
				inc{name: "b", id: c.forgotten[0], delta: 7, want: result{7, 4, false}}.run(t, l)
			}
		})
	}
}

// An id past its age is forgotten by a batch with nothing else to write (a Get, say) without
// a commit of its own: at once in memory, so that it applies again, and on disk with the next
// commit, which carries the forgetting along with the id remembered again.
func TestLedgerPruneWaitsForACommit(t *testing.T) {
	cfg := limits()
	cfg.RequestIDTTL = time.Minute
	l, now := testLedger(cfg, false)
	inc{name: "a", id: "e", delta: 1, want: result{1, 1, false}}.run(t, l)
	l.prune()
	checkWrites(t, l.pending(false), committed{seq: 1, counters: map[string]int64{"a": 1}, requests: []string{"e"}})
	l.committed()

	*now = now.Add(time.Minute) // at its age exactly: kept
	l.prune()
	inc{name: "a", id: "e", delta: 1, want: result{1, 1, true}}.run(t, l)
	*now = now.Add(time.Nanosecond)
	l.prune()
	if w := l.pending(false); w != nil || !slices.Equal(l.w.forgotten, []string{"e"}) {
		t.Fatalf("a batch that only forgets e: pending %+v, forgotten %q; want no commit, e forgotten", w, l.w.forgotten)
	}
	inc{name: "a", id: "e", delta: 1, want: result{2, 2, false}}.run(t, l)
	l.prune()
	w := l.pending(false)
	checkWrites(t, w, committed{seq: 2, counters: map[string]int64{"a": 2}, requests: []string{"e"}})
	if !slices.Equal(w.forgotten, []string{"e"}) {
		t.Fatalf("the next commit forgets %q, want e", w.forgotten)
	}
}

// errorInfoOf returns the reason and metadata of err's google.rpc.ErrorInfo, if it has one.
func errorInfoOf(err error) (string, map[string]string) {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason(), info.GetMetadata()
		}
	}
	return "", nil
}
