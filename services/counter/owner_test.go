package counter

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	"github.com/concur-dev/concur/internal/jitter"
	"github.com/concur-dev/concur/internal/testkit"
)

// startOwner runs an owner on st until the test ends.
func startOwner(t testing.TB, st store, forwarding bool) *owner {
	t.Helper()
	cfg := Config{DB: Memory, OutboxMax: 1 << 30, RequestIDTTL: time.Hour, RequestIDMax: 1000, MaxNames: 1 << 30}
	return startOwnerWith(t, cfg, st, forwarding)
}

// startOwnerWith runs an owner of cfg on st until it is stopped or the test ends.
func startOwnerWith(t testing.TB, cfg Config, st store, forwarding bool) *owner {
	t.Helper()
	loaded, err := st.load(forwarding)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := newMetrics(nil, cfg.OutboxMax)
	o := newOwner(cfg, st, loaded, forwarding, jitter.Jitter{}, testkit.Quiet(), m)
	go o.run()
	t.Cleanup(func() {
		select {
		case o.inbox <- &stopMsg{newReply()}:
			<-o.stopped
		case <-o.stopped:
		}
	})
	return o
}

func (o *owner) testIncrement(t testing.TB, name string) (*incrementMsg, error) {
	t.Helper()
	m := &incrementMsg{reply: newReply(), name: name, delta: 1}
	err := o.call(context.Background(), m, &m.reply)
	return m, err
}

// testWatch starts a watch of name whose channel holds one value, as Watch's does.
func (o *owner) testWatch(t *testing.T, name string) *watcher {
	t.Helper()
	w := &watcher{name: name, ch: make(chan watchValue, 1)}
	m := &watchMsg{reply: newReply(), w: w}
	if err := o.call(context.Background(), m, &m.reply); err != nil {
		t.Fatal(err)
	}
	return w
}

// A watcher that never reads holds one value, the latest, and the owner never waits for it.
func TestWatcherCoalesces(t *testing.T) {
	testkit.NoLeaks(t)
	o := startOwner(t, memoryStore{}, false)
	w := o.testWatch(t, "w")
	for range 1000 {
		if _, err := o.testIncrement(t, "w"); err != nil {
			t.Fatal(err)
		}
	}
	if v := <-w.ch; v.value != 1000 || v.seq != 1000 {
		t.Fatalf("the watcher holds %+v, want the latest, 1000", v)
	}
	select {
	case v := <-w.ch:
		t.Fatalf("a second value %+v is waiting: updates did not coalesce", v)
	default:
	}
}

// failingStore fails every commit from the nth on, as a full disk would.
type failingStore struct {
	store
	n int
}

func (f *failingStore) commit(w *writes) error {
	if f.n--; f.n <= 0 {
		return errors.New("no space left on device")
	}
	return f.store.commit(w)
}

// After a failed commit nothing is claimed: the batch's callers and everyone after are told
// UNAVAILABLE, and what was committed before stays.
func TestFailedCommitStopsTheCounter(t *testing.T) {
	testkit.NoLeaks(t)
	path := filepath.Join(t.TempDir(), "c.db")
	st, err := openPebble(path)
	if err != nil {
		t.Fatal(err)
	}
	o := startOwner(t, &failingStore{store: st, n: 3}, false)
	for i := range 2 {
		if _, err := o.testIncrement(t, "x"); err != nil {
			t.Fatalf("increment %d: %v", i, err)
		}
	}
	select {
	case <-o.broken:
		t.Fatal("the owner says it is broken before any commit failed")
	default:
	}
	for range 2 {
		_, err := o.testIncrement(t, "x")
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("increment after the disk failed: %v, want UNAVAILABLE", err)
		}
	}
	select {
	case <-o.broken: // the server turns the counter NOT_SERVING
	default:
		t.Fatal("a commit failed, and the owner does not say it is broken")
	}
	g := &getMsg{reply: newReply(), name: "x"}
	if err := o.call(context.Background(), g, &g.reply); status.Code(err) != codes.Unavailable {
		t.Fatalf("Get after the disk failed: %v", err)
	}
	s := newStreamState()
	o.inbox <- &streamBatchMsg{stream: s, incs: []*counterv1.CounterIncrement{{}}}
	<-s.failed
	if status.Code(s.err) != codes.Unavailable {
		t.Fatalf("stream after the disk failed: %v", s.err)
	}

	stop := &stopMsg{newReply()}
	o.inbox <- stop
	<-stop.done
	if st, err = openPebble(path); err != nil {
		t.Fatal(err)
	}
	defer st.close()
	loaded, err := st.load(false)
	if err != nil {
		t.Fatal(err)
	}
	if c := loaded.counters["x"]; c == nil || c.value != 2 || loaded.seq != 2 {
		t.Fatalf("on disk: %+v at sequence %d, want x = 2 at 2", c, loaded.seq)
	}
}

// BenchmarkOwner measures the owner loop alone, without gRPC: ns per applied increment,
// sent one per message from parallel callers (unary) or 1,000 per message (stream), in
// memory and with a batch commit to pebble.
func BenchmarkOwner(b *testing.B) {
	stores := map[string]func(b *testing.B) store{
		"memory": func(*testing.B) store { return memoryStore{} },
		"pebble": func(b *testing.B) store {
			st, err := openPebble(filepath.Join(b.TempDir(), "c.db"))
			if err != nil {
				b.Fatal(err)
			}
			return st
		},
	}
	for _, name := range []string{"memory", "pebble"} {
		b.Run(name+"/unary", func(b *testing.B) {
			o := startOwner(b, stores[name](b), false)
			b.SetParallelism(25) // 50 callers on 2 CPUs, as in the gRPC bench
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					m := &incrementMsg{reply: newReply(), name: "default", delta: 1}
					if err := o.call(context.Background(), m, &m.reply); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
		b.Run(name+"/stream", func(b *testing.B) {
			o := startOwner(b, stores[name](b), false)
			incs := make([]*counterv1.CounterIncrement, 1000)
			for i := range incs {
				incs[i] = &counterv1.CounterIncrement{}
			}
			s := newStreamState()
			for range b.N / len(incs) {
				o.inbox <- &streamBatchMsg{stream: s, incs: incs}
			}
			end := &streamEndMsg{reply: newReply(), stream: s}
			if err := o.call(context.Background(), end, &end.reply); err != nil || end.applied != uint64(b.N/len(incs)*len(incs)) {
				b.Fatalf("applied %d, %v", end.applied, err)
			}
		})
	}
}

// A stream whose caller went away is forgotten, so that abandoned calls do not pile up.
func TestGoneStreamIsForgotten(t *testing.T) {
	testkit.NoLeaks(t)
	o := startOwner(t, memoryStore{}, false)
	s := newStreamState()
	o.inbox <- &streamBatchMsg{stream: s, incs: []*counterv1.CounterIncrement{{}}}
	o.tell(&streamGoneMsg{s})
	g := &getMsg{reply: newReply(), name: "default"}
	if err := o.call(context.Background(), g, &g.reply); err != nil || g.value != 1 {
		t.Fatalf("Get = %d, %v", g.value, err)
	}
	if len(o.open) != 0 { // read after the owner answered, with nothing else in flight
		t.Fatalf("%d streams still open", len(o.open))
	}
}

// gatedStore holds each commit until the test lets it through, and counts them.
type gatedStore struct {
	memoryStore
	entered chan struct{} // a commit started
	gate    chan struct{}
	commits chan int // the number of counters in each commit
}

func (g *gatedStore) commit(w *writes) error {
	g.entered <- struct{}{}
	<-g.gate
	g.commits <- len(w.counters)
	return nil
}

// What queues while a commit runs goes out in the next one (group commit), and nobody is
// answered before the commit of their increment.
func TestGroupCommit(t *testing.T) {
	// synctest.Wait shows that nothing happens, where a sleep would only wait a while to see.
	synctest.Test(t, func(t *testing.T) {
		st := &gatedStore{entered: make(chan struct{}), gate: make(chan struct{}), commits: make(chan int, 10)}
		o := startOwner(t, st, false)
		first := &incrementMsg{reply: newReply(), name: "first", delta: 1}
		if err := o.send(context.Background(), first); err != nil {
			t.Fatal(err)
		}
		<-st.entered // the owner holds the first increment's commit
		var queued []*incrementMsg
		for i := range 10 {
			m := &incrementMsg{reply: newReply(), name: strconv.Itoa(i), delta: 1}
			if err := o.send(context.Background(), m); err != nil {
				t.Fatal(err)
			}
			queued = append(queued, m)
		}
		synctest.Wait() // every goroutine of the test is blocked: the owner, in the first commit
		select {
		case <-first.done:
			t.Fatal("an increment was answered before its commit")
		default:
		}
		st.gate <- struct{}{}
		if n := <-st.commits; n != 1 {
			t.Fatalf("the first commit wrote %d counters, want 1", n)
		}
		if err := o.wait(context.Background(), &first.reply); err != nil || first.value != 1 {
			t.Fatalf("first: %d, %v", first.value, err)
		}
		<-st.entered
		st.gate <- struct{}{}
		if n := <-st.commits; n != len(queued) {
			t.Fatalf("the second commit wrote %d counters, want the %d queued meanwhile", n, len(queued))
		}
		for _, m := range queued {
			if err := o.wait(context.Background(), &m.reply); err != nil || m.value != 1 {
				t.Fatalf("%s: %d, %v", m.name, m.value, err)
			}
		}
	})
}

// A Watch whose caller went away is forgotten.
func TestGoneWatcherIsForgotten(t *testing.T) {
	testkit.NoLeaks(t)
	o := startOwner(t, memoryStore{}, false)
	w := o.testWatch(t, "w")
	o.tell(&unwatchMsg{w})
	if _, err := o.testIncrement(t, "w"); err != nil {
		t.Fatal(err)
	}
	if len(o.watchers) != 0 || len(w.ch) != 0 { // read after the owner answered, with nothing else in flight
		t.Fatalf("%d names still watched, %d values sent to the gone watcher", len(o.watchers), len(w.ch))
	}
}

// A request id past its time-to-live is forgotten by a batch that has nothing else to write,
// and applies again; used again, it is remembered again, across a restart too: the commit
// forgets the old id on disk before it writes the new one. synctest's clock lets the
// time-to-live pass without waiting for it; the owner's ledger reads time.Now.
func TestRequestIDTTLAcrossRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "c.db")
		cfg := Config{DB: path, OutboxMax: 1000, RequestIDTTL: time.Minute, RequestIDMax: 1000, MaxNames: 1000}
		start := func() *owner {
			t.Helper()
			st, err := openPebble(path)
			if err != nil {
				t.Fatal(err)
			}
			return startOwnerWith(t, cfg, st, false)
		}
		stop := func(o *owner) {
			m := &stopMsg{newReply()}
			o.inbox <- m
			<-o.stopped
		}
		increment := func(o *owner) result {
			t.Helper()
			m := &incrementMsg{reply: newReply(), name: "a", requestID: "e", delta: 1}
			if err := o.call(t.Context(), m, &m.reply); err != nil {
				t.Fatal(err)
			}
			return m.result
		}

		o := start()
		if r := increment(o); r != (result{1, 1, false}) {
			t.Fatalf("first increment = %+v", r)
		}
		if r := increment(o); r != (result{1, 1, true}) {
			t.Fatalf("retry within the time-to-live = %+v, want the first answer replayed", r)
		}
		time.Sleep(2 * time.Minute)
		g := &getMsg{reply: newReply(), name: "a"}
		if err := o.call(t.Context(), g, &g.reply); err != nil { // a batch that only reads forgets e
			t.Fatal(err)
		}
		again := increment(o)
		if again != (result{2, 2, false}) {
			t.Fatalf("e after its time-to-live = %+v, want applied again", again)
		}
		stop(o)

		cfg.RequestIDTTL = time.Hour
		o = start()
		if r := increment(o); r != (result{again.value, again.seq, true}) {
			t.Fatalf("e after a restart = %+v, want %+v replayed", r, again)
		}
		stop(o)
	})
}
