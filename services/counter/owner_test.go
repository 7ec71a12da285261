package counter

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	"github.com/concur-dev/concur/internal/jitter"
)

// startOwner runs an owner on st until the test ends.
func startOwner(t testing.TB, st store, forwarding bool) *owner {
	t.Helper()
	loaded, err := st.load(forwarding)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := newMetrics(nil)
	cfg := Config{DB: Memory, OutboxMax: 1 << 30, RequestIDTTL: time.Hour, RequestIDMax: 1000, MaxNames: 1 << 30}
	o := newOwner(cfg, st, loaded, forwarding, jitter.Jitter{}, slog.New(slog.DiscardHandler), m)
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

func noLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// A watcher that never reads holds one value, the latest, and the owner never waits for it.
func TestWatcherCoalesces(t *testing.T) {
	noLeaks(t)
	o := startOwner(t, memoryStore{}, false)
	w := &watcher{name: "w", ch: make(chan watchValue, 1)}
	m := &watchMsg{reply: newReply(), w: w}
	if err := o.call(context.Background(), m, &m.reply); err != nil {
		t.Fatal(err)
	}
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
	noLeaks(t)
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
	for range 2 {
		_, err := o.testIncrement(t, "x")
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("increment after the disk failed: %v, want UNAVAILABLE", err)
		}
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
	noLeaks(t)
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
