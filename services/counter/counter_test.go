package counter_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	"github.com/concur-dev/concur/api/violation"
	"github.com/concur-dev/concur/internal/jitter"
	"github.com/concur-dev/concur/services/counter"
)

func TestIncrementGetAndDefaults(t *testing.T) {
	noLeaks(t)
	c := startCounter(t, config(t), counter.Deps{}).client
	ctx := t.Context()

	r, err := c.Increment(ctx, &counterv1.IncrementRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetName() != "default" || r.GetValue() != 1 || r.GetSequence() != 1 || r.GetReplayed() {
		t.Fatalf("the talk's increment = %v, want default 1 at sequence 1", r)
	}
	r, err = c.Increment(ctx, &counterv1.IncrementRequest{Name: "hits", Delta: new(int64(-7))})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetName() != "hits" || r.GetValue() != -7 || r.GetSequence() != 2 {
		t.Fatalf("Increment hits by -7 = %v, want -7 at sequence 2", r)
	}
	for name, want := range map[string]int64{"": 1, "default": 1, "hits": -7, "never": 0} {
		g, err := c.Get(ctx, &counterv1.GetRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if g.GetValue() != want || g.GetName() != counterv1.NameOrDefault(name) {
			t.Errorf("Get(%q) = %v, want %d", name, g, want)
		}
	}
	j, err := c.Join(ctx, &counterv1.JoinRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if j.GetSequence() != 2 || j.GetPrinted() {
		t.Fatalf("Join without a printer = %v, want sequence 2, printed false", j)
	}
}

func TestBadInput(t *testing.T) {
	noLeaks(t)
	c := startCounter(t, config(t), counter.Deps{}).client
	ctx := t.Context()
	if _, err := c.Increment(ctx, &counterv1.IncrementRequest{Name: "big", Delta: new(int64(math.MaxInt64 - 1))}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Increment(ctx, &counterv1.IncrementRequest{Name: "x", Delta: new(int64(2)), RequestId: "r1"}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		req   *counterv1.IncrementRequest
		code  codes.Code
		field string
	}{
		{"over-long name", &counterv1.IncrementRequest{Name: strings.Repeat("n", 201)}, codes.InvalidArgument, "name"},
		{"control character", &counterv1.IncrementRequest{Name: "a\x1b[31m"}, codes.InvalidArgument, "name"},
		{"zero delta", &counterv1.IncrementRequest{Delta: new(int64(0))}, codes.InvalidArgument, "delta"},
		{"bad request_id", &counterv1.IncrementRequest{RequestId: "id\n"}, codes.InvalidArgument, "request_id"},
		{"request_id reused with another delta", &counterv1.IncrementRequest{Name: "x", Delta: new(int64(3)), RequestId: "r1"}, codes.InvalidArgument, "request_id"},
		{"request_id reused with another name", &counterv1.IncrementRequest{Name: "y", Delta: new(int64(2)), RequestId: "r1"}, codes.InvalidArgument, "request_id"},
		{"overflow", &counterv1.IncrementRequest{Name: "big", Delta: new(int64(2))}, codes.OutOfRange, ""},
		{"underflow", &counterv1.IncrementRequest{Name: "small", Delta: new(int64(math.MinInt64))}, codes.OK, ""},
		{"underflow past the minimum", &counterv1.IncrementRequest{Name: "small", Delta: new(int64(-1))}, codes.OutOfRange, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Increment(ctx, tt.req)
			wantCode(t, err, tt.code)
			if got := violation.Fields(err); tt.field != "" && !slices.Equal(got, []string{tt.field}) {
				t.Fatalf("fields %v, want [%s]: %v", got, tt.field, err)
			}
		})
	}
	for name, want := range map[string]int64{"big": math.MaxInt64 - 1, "x": 2, "y": 0, "small": math.MinInt64} {
		if g, _ := c.Get(ctx, &counterv1.GetRequest{Name: name}); g.GetValue() != want {
			t.Errorf("after refused increments, %s = %d, want %d", name, g.GetValue(), want)
		}
	}
	_, err := c.Get(ctx, &counterv1.GetRequest{Name: "\x00"})
	wantCode(t, err, codes.InvalidArgument)
	w, err := c.Watch(ctx, &counterv1.WatchRequest{Name: strings.Repeat("w", 300)})
	if err == nil {
		_, err = w.Recv()
	}
	wantCode(t, err, codes.InvalidArgument)
}

// sendStream sends batches on one IncrementStream and returns its summary or error.
func sendStream(ctx context.Context, c counterv1.CounterServiceClient, batches ...[]*counterv1.CounterIncrement) (*counterv1.IncrementStreamResponse, error) {
	s, err := c.IncrementStream(ctx)
	if err != nil {
		return nil, err
	}
	for _, b := range batches {
		if err := s.Send(&counterv1.IncrementStreamRequest{Increments: b}); err != nil {
			break // the status comes with CloseAndRecv
		}
	}
	return s.CloseAndRecv()
}

func inc(name string, delta ...int64) *counterv1.CounterIncrement {
	i := &counterv1.CounterIncrement{Name: name}
	if len(delta) > 0 {
		i.Delta = new(delta[0])
	}
	return i
}

func TestIncrementStream(t *testing.T) {
	noLeaks(t)
	c := startCounter(t, config(t), counter.Deps{}).client
	ctx := t.Context()

	sum, err := sendStream(ctx, c,
		[]*counterv1.CounterIncrement{inc("b"), inc(""), inc("b", 10)},
		[]*counterv1.CounterIncrement{inc("a", -1), inc("default")})
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(sum.GetApplied(), sum.GetCounters())
	want := fmt.Sprint(uint64(5), []*counterv1.CounterValue{{Name: "b", Value: new(int64(11))}, {Name: "default", Value: new(int64(2))}, {Name: "a", Value: new(int64(-1))}})
	if got != want {
		t.Fatalf("summary %s, want %s", got, want)
	}
	if sum, err = sendStream(ctx, c); err != nil || sum.GetApplied() != 0 || len(sum.GetCounters()) != 0 {
		t.Fatalf("an empty stream = %v, %v; want 0 applied", sum, err)
	}

	// A message that would overflow is not applied at all, even its increments before the
	// overflowing one; the messages before it stay applied, the ones after are not.
	_, err = sendStream(ctx, c,
		[]*counterv1.CounterIncrement{inc("o", math.MaxInt64-5)},
		[]*counterv1.CounterIncrement{inc("p", 100), inc("o", 3), inc("o", 3)},
		[]*counterv1.CounterIncrement{inc("q")})
	wantCode(t, err, codes.OutOfRange)
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "increments[2] of message 2") || !strings.Contains(msg, "the 1 increments before it were") {
		t.Fatalf("overflow message does not say where: %q", msg)
	}
	// A message failing validation: the same, with INVALID_ARGUMENT naming the field.
	_, err = sendStream(ctx, c,
		[]*counterv1.CounterIncrement{inc("r")},
		[]*counterv1.CounterIncrement{inc("s"), inc("r", 0)},
		[]*counterv1.CounterIncrement{inc("t")})
	wantCode(t, err, codes.InvalidArgument)
	if f := violation.Fields(err); !slices.Equal(f, []string{"increments[1].delta"}) {
		t.Fatalf("fields %v: %v", f, err)
	}
	_, err = sendStream(ctx, c, []*counterv1.CounterIncrement{inc("u")}, nil)
	wantCode(t, err, codes.InvalidArgument)
	for name, want := range map[string]int64{"o": math.MaxInt64 - 5, "p": 0, "q": 0, "r": 1, "s": 0, "t": 0, "u": 1} {
		if g, _ := c.Get(ctx, &counterv1.GetRequest{Name: name}); g.GetValue() != want {
			t.Errorf("%s = %d, want %d", name, g.GetValue(), want)
		}
	}
}

// The proof of the owner: 50 workers each add 1,000 times, unary and streamed, jitter off
// and on. The counter is exact, every sequence number is handed out once, and the printer
// receives the talk's print jobs in count order, each once.
func TestManyWorkersAreExact(t *testing.T) {
	for _, j := range []time.Duration{0, 200 * time.Microsecond} {
		t.Run(fmt.Sprintf("jitter=%v", j), func(t *testing.T) {
			noLeaks(t)
			p := startPrinterDouble(t)
			c := startCounter(t, config(t), counter.Deps{Printer: printerClient(t, p.addr), Jitter: jitter.New(j)}).client
			const workers, each = 50, 1000
			seqs := make([][]uint64, workers)
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					if w%2 == 1 { // odd workers stream theirs: 10 streams of 2 messages of 50
						half := slices.Repeat([]*counterv1.CounterIncrement{inc("")}, each/20)
						for range 10 {
							if sum, err := sendStream(t.Context(), c, half, half); err != nil || sum.GetApplied() != each/10 {
								t.Errorf("IncrementStream = %v, %v", sum, err)
								return
							}
						}
						return
					}
					for range each {
						r, err := c.Increment(t.Context(), &counterv1.IncrementRequest{})
						if err != nil {
							t.Error(err)
							return
						}
						seqs[w] = append(seqs[w], r.GetSequence())
					}
				})
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			g, err := c.Get(t.Context(), &counterv1.GetRequest{})
			if err != nil || g.GetValue() != workers*each {
				t.Fatalf("Get = %v, %v; want %d", g, err, workers*each)
			}
			all := slices.Concat(seqs...)
			slices.Sort(all)
			if len(slices.Compact(all)) != len(all) {
				t.Fatal("a sequence number was handed out twice")
			}
			jr, err := c.Join(t.Context(), &counterv1.JoinRequest{})
			if err != nil || jr.GetSequence() != workers*each || !jr.GetPrinted() {
				t.Fatalf("Join = %v, %v; want sequence %d printed", jr, err, workers*each)
			}
			checkTalkOutput(t, p.lines(), 1, workers*each)
		})
	}
}

// checkTalkOutput checks that lines are the talk's print jobs for the counts from to last.
func checkTalkOutput(t *testing.T, lines []string, from, last int) {
	t.Helper()
	var want []string
	for n := from; n <= last; n++ {
		want = append(want, "The count is "+strconv.Itoa(n), "---------------")
	}
	if !slices.Equal(lines, want) {
		for i := range min(len(lines), len(want)) {
			if lines[i] != want[i] {
				t.Fatalf("printed %d lines, want %d; line %d is %q, want %q", len(lines), len(want), i, lines[i], want[i])
			}
		}
		t.Fatalf("printed %d lines, want %d", len(lines), len(want))
	}
}

func TestRequestIDs(t *testing.T) {
	noLeaks(t)
	cfg := config(t)
	cfg.RequestIDMax = 3
	s := startCounter(t, cfg, counter.Deps{})
	ctx := t.Context()
	incr := func(c counterv1.CounterServiceClient, id string) *counterv1.IncrementResponse {
		t.Helper()
		r, err := c.Increment(ctx, &counterv1.IncrementRequest{Name: "n", Delta: new(int64(5)), RequestId: id})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	first := incr(s.client, "a")
	if again := incr(s.client, "a"); again.GetValue() != first.GetValue() || again.GetSequence() != first.GetSequence() || !again.GetReplayed() {
		t.Fatalf("retry = %v, want the first answer %v replayed", again, first)
	}
	// Ids survive a restart.
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	s = startCounter(t, cfg, counter.Deps{})
	if again := incr(s.client, "a"); !again.GetReplayed() || again.GetSequence() != 1 {
		t.Fatalf("retry after restart = %v, want replayed sequence 1", again)
	}
	// Pruned by count: with b, c, d after it, a is forgotten and applies again.
	for _, id := range []string{"b", "c", "d"} {
		incr(s.client, id)
	}
	if r := incr(s.client, "a"); r.GetReplayed() || r.GetValue() != 25 {
		t.Fatalf("a after 3 newer ids = %v, want applied again (25)", r)
	}
	if r := incr(s.client, "d"); !r.GetReplayed() {
		t.Fatalf("d, among the 3 newest, = %v, want replayed", r)
	}
	// Pruning by age, on a fake clock: TestLedgerPrune, TestLedgerPruneWaitsForACommit and,
	// across a restart, TestRequestIDTTLAcrossRestart.
}

func TestDurableAcrossRestart(t *testing.T) {
	noLeaks(t)
	cfg := config(t)
	s := startCounter(t, cfg, counter.Deps{})
	for range 3 {
		if _, err := s.client.Increment(t.Context(), &counterv1.IncrementRequest{Name: "kept"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	s = startCounter(t, cfg, counter.Deps{})
	r, err := s.client.Increment(t.Context(), &counterv1.IncrementRequest{Name: "kept"})
	if err != nil || r.GetValue() != 4 || r.GetSequence() != 4 {
		t.Fatalf("after restart Increment = %v, %v; want 4 at sequence 4", r, err)
	}

	cfg.DB = counter.Memory
	s = startCounter(t, cfg, counter.Deps{})
	s.client.Increment(t.Context(), &counterv1.IncrementRequest{Name: "gone"})
	s.stop()
	s = startCounter(t, cfg, counter.Deps{})
	if g, _ := s.client.Get(t.Context(), &counterv1.GetRequest{Name: "gone"}); g.GetValue() != 0 {
		t.Fatalf(":memory: kept %v across a restart", g)
	}
}

// What one client can make the counter hold is bounded: past --counter-max-names an increment
// that would create a counter is refused whole, with nothing applied, while the existing
// counters keep counting; Get and Watch create none, and the bound holds across restarts.
func TestMaxNames(t *testing.T) {
	noLeaks(t)
	cfg := config(t)
	cfg.MaxNames = 3
	s := startCounter(t, cfg, counter.Deps{})
	ctx := t.Context()
	incr := func(name, id string) (*counterv1.IncrementResponse, error) {
		return s.client.Increment(ctx, &counterv1.IncrementRequest{Name: name, RequestId: id})
	}
	refused := func(err error, says ...string) {
		t.Helper()
		wantCode(t, err, codes.ResourceExhausted)
		if reason, meta := errorInfo(err); reason != "TOO_MANY_COUNTERS" || meta["max_names"] != strconv.Itoa(cfg.MaxNames) || meta["max_names_flag"] != "--counter-max-names" {
			t.Fatalf("ErrorInfo %s %v, want TOO_MANY_COUNTERS with max_names %d: %v", reason, meta, cfg.MaxNames, err)
		}
		msg := status.Convert(err).Message()
		for _, want := range append(says, "the counter limit is reached") {
			if !strings.Contains(msg, want) {
				t.Fatalf("message %q does not say %q", msg, want)
			}
		}
	}
	values := func(want map[string]int64) {
		t.Helper()
		for name, v := range want {
			if g, err := s.client.Get(ctx, &counterv1.GetRequest{Name: name}); err != nil || g.GetValue() != v {
				t.Fatalf("Get(%s) = %v, %v; want %d", name, g, err, v)
			}
		}
	}

	for _, name := range []string{"a", "b"} {
		if _, err := incr(name, "first-"+name); err != nil {
			t.Fatal(err)
		}
	}
	// Reading or watching a name that does not exist takes none of the slots.
	values(map[string]int64{"ghost": 0})
	wctx, unwatch := context.WithCancel(ctx)
	defer unwatch()
	w, err := s.client.Watch(wctx, &counterv1.WatchRequest{Name: "phantom"})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := w.Recv(); err != nil || v.GetValue() != 0 {
		t.Fatalf("watch of a new name = %v, %v; want 0", v, err)
	}
	// One slot is left: a stream message creating two counters is refused whole, the messages
	// before it stay applied, and a message creating one fits.
	_, err = sendStream(ctx, s.client,
		[]*counterv1.CounterIncrement{inc("a")},
		[]*counterv1.CounterIncrement{inc("c"), inc("a"), inc("d"), inc("c")})
	refused(err, "message 2 of this stream would create 2 more", "the 1 increments before it were")
	values(map[string]int64{"a": 2, "b": 1, "c": 0, "d": 0})
	if sum, err := sendStream(ctx, s.client, []*counterv1.CounterIncrement{inc("c"), inc("a"), inc("c")}); err != nil || sum.GetApplied() != 3 {
		t.Fatalf("a message creating the third counter = %v, %v; want 3 applied", sum, err)
	}

	// At the limit: new names are refused, the watched one too; existing counters, a retry
	// and a stream of existing names still work.
	_, err = incr("phantom", "")
	refused(err, `counter "phantom" was not created and nothing was applied`, "existing counters still count")
	_, err = incr("d", "first-d")
	refused(err, `counter "d"`)
	_, err = sendStream(ctx, s.client, []*counterv1.CounterIncrement{inc("a"), inc("d")})
	refused(err, "message 1 of this stream would create 1 more")
	if r, err := incr("a", "first-a"); err != nil || !r.GetReplayed() || r.GetValue() != 1 {
		t.Fatalf("retry of the first increment of a = %v, %v; want 1 replayed", r, err)
	}
	if r, err := incr("b", ""); err != nil || r.GetValue() != 2 {
		t.Fatalf("Increment(b) at the limit = %v, %v; want 2", r, err)
	}
	if sum, err := sendStream(ctx, s.client, []*counterv1.CounterIncrement{inc("a"), inc("b")}); err != nil || sum.GetApplied() != 2 {
		t.Fatalf("a stream of existing counters at the limit = %v, %v", sum, err)
	}
	values(map[string]int64{"a": 4, "b": 3, "c": 2, "d": 0, "phantom": 0})
	// Nothing refused was applied: a, b, a, c, a, c, b, a, b.
	if j, err := s.client.Join(ctx, &counterv1.JoinRequest{}); err != nil || j.GetSequence() != 9 {
		t.Fatalf("Join = %v, %v; want sequence 9", j, err)
	}
	unwatch()
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}

	// The counters on disk count toward the limit after a restart.
	s = startCounter(t, cfg, counter.Deps{})
	_, err = incr("d", "")
	refused(err, `counter "d"`)
	if r, err := incr("c", ""); err != nil || r.GetValue() != 3 {
		t.Fatalf("Increment(c) after a restart = %v, %v; want 3", r, err)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}

	// A database holding more counters than a lowered limit: the counter starts, warns, and
	// refuses only new names.
	cfg.MaxNames = 2
	var logs bytes.Buffer
	s = startCounter(t, cfg, counter.Deps{Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if l := logs.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "counters=3 max_names=2") {
		t.Fatalf("start with 3 counters and --counter-max-names=2 logged %q, want a warning", l)
	}
	_, err = incr("d", "")
	refused(err, `counter "d"`)
	if _, meta := errorInfo(err); meta["counters"] != "3" || meta["max_names"] != "2" {
		t.Fatalf("ErrorInfo metadata %v over a lowered limit, want counters 3, max_names 2", meta)
	}
	for name, want := range map[string]int64{"a": 5, "b": 4, "c": 4} {
		if r, err := incr(name, ""); err != nil || r.GetValue() != want {
			t.Fatalf("Increment(%s) over a lowered limit = %v, %v; want %d", name, r, err, want)
		}
	}
	values(map[string]int64{"d": 0})
}

func TestDatabaseInUse(t *testing.T) {
	noLeaks(t)
	cfg := config(t)
	startCounter(t, cfg, counter.Deps{})
	_, err := counter.New(cfg, counter.Deps{})
	if err == nil || !strings.Contains(err.Error(), "another process holds it") {
		t.Fatalf("a second counter on the same --counter-db: %v", err)
	}
}

func TestWatch(t *testing.T) {
	noLeaks(t)
	s := startCounter(t, config(t), counter.Deps{})
	ctx := t.Context()
	s.client.Increment(ctx, &counterv1.IncrementRequest{Name: "w", Delta: new(int64(10))})
	w, err := s.client.Watch(ctx, &counterv1.WatchRequest{Name: "w"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := w.Recv()
	if err != nil || first.GetValue() != 10 || first.GetSequence() != 1 {
		t.Fatalf("first watch value = %v, %v; want 10 at sequence 1", first, err)
	}
	// A watcher that does not read does not stop the counter.
	for i := range 300 {
		if _, err := s.client.Increment(ctx, &counterv1.IncrementRequest{Name: "w"}); err != nil {
			t.Fatalf("increment %d: %v", i, err)
		}
	}
	// It then sees values in order, ending with the latest.
	var last int64 = 10
	for last != 310 {
		v, err := w.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if v.GetValue() <= last || v.GetSequence() != uint64(v.GetValue()-9) {
			t.Fatalf("watch value %v after %d", v, last)
		}
		last = v.GetValue()
	}
	// Shutdown ends the watch, saying why.
	go s.stop()
	_, err = w.Recv()
	wantCode(t, err, codes.Unavailable)
}

func TestShutdownEndsOpenCalls(t *testing.T) {
	noLeaks(t)
	cfg := config(t)
	s := startCounter(t, cfg, counter.Deps{})
	ctx := t.Context()
	stream, err := s.client.IncrementStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&counterv1.IncrementStreamRequest{Increments: []*counterv1.CounterIncrement{inc("s"), inc("s")}}); err != nil {
		t.Fatal(err)
	}
	// Wait until the owner has it.
	for {
		if g, _ := s.client.Get(ctx, &counterv1.GetRequest{Name: "s"}); g.GetValue() == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	// The stream stays open and idle; shutdown must still end it, not wait for the timeout.
	if err := s.stop(); err != nil {
		t.Fatalf("shutdown with an idle IncrementStream: %v", err)
	}
	_, err = stream.CloseAndRecv()
	wantCode(t, err, codes.Unavailable)
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "the 2 increments this stream sent so far were applied") {
		t.Fatalf("shutdown message: %q", msg)
	}
	s = startCounter(t, cfg, counter.Deps{})
	if g, _ := s.client.Get(ctx, &counterv1.GetRequest{Name: "s"}); g.GetValue() != 2 {
		t.Fatalf("after restart s = %d, want 2", g.GetValue())
	}
}

// A printer that goes away and comes back loses nothing and prints nothing twice; meanwhile
// the counter serves increments up to its outbox bound, and Join tells the truth.
func TestPrinterDownAndBack(t *testing.T) {
	noLeaks(t)
	p := startPrinterDouble(t)
	cfg := config(t)
	cfg.OutboxMax = 300
	c := startCounter(t, cfg, counter.Deps{Printer: printerClient(t, p.addr), Jitter: jitter.New(100 * time.Microsecond)}).client
	ctx := t.Context()
	increment := func() error {
		_, err := c.Increment(ctx, &counterv1.IncrementRequest{})
		return err
	}
	for range 100 {
		if err := increment(); err != nil {
			t.Fatal(err)
		}
	}
	p.stop()
	for range 200 {
		if err := increment(); err != nil {
			t.Fatal(err)
		}
	}
	// Between 200 and 300 jobs wait (the first 100 may or may not have been acknowledged);
	// the outbox fills up and then refuses, leaving the counter unchanged.
	var refused error
	for range 300 {
		if refused = increment(); refused != nil {
			break
		}
	}
	wantCode(t, refused, codes.Unavailable)
	g, _ := c.Get(ctx, &counterv1.GetRequest{})
	applied := g.GetValue()
	if applied < 300 || applied > 400 {
		t.Fatalf("applied %d increments with the printer down and an outbox of 300", applied)
	}
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err := c.Join(short, &counterv1.JoinRequest{})
	wantCode(t, err, codes.DeadlineExceeded)
	if msg := status.Convert(err).Message(); !strings.Contains(msg, fmt.Sprintf("up to sequence %d are applied and on disk", applied)) {
		t.Fatalf("Join's deadline message: %q", msg)
	}

	p.restart(t)
	j, err := c.Join(ctx, &counterv1.JoinRequest{})
	if err != nil || j.GetSequence() != uint64(applied) || !j.GetPrinted() {
		t.Fatalf("Join after the printer is back = %v, %v; want %d printed", j, err, applied)
	}
	if err := increment(); err != nil {
		t.Fatalf("Increment after the outbox drained: %v", err)
	}
	if _, err := c.Join(ctx, &counterv1.JoinRequest{}); err != nil {
		t.Fatal(err)
	}
	checkTalkOutput(t, p.lines(), 1, int(applied)+1)
}

// Stopping and restarting the printer while increments go on: every job arrives once, in order.
func TestPrinterRestartsUnderLoad(t *testing.T) {
	noLeaks(t)
	p := startPrinterDouble(t)
	c := startCounter(t, config(t), counter.Deps{Printer: printerClient(t, p.addr), Jitter: jitter.New(50 * time.Microsecond)}).client
	// The workers stop between calls, never by cancelling one: a cancelled call may still
	// be applied, after the Join below.
	var stopping atomic.Bool
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; !stopping.Load(); i++ {
				var err error
				if w == 0 && i%20 == 0 {
					_, err = sendStream(t.Context(), c, slices.Repeat([]*counterv1.CounterIncrement{inc("")}, 50))
				} else {
					_, err = c.Increment(t.Context(), &counterv1.IncrementRequest{})
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	waitFor := func(jobs int) {
		for len(p.accepted()) < jobs {
			time.Sleep(time.Millisecond)
		}
	}
	waitFor(200)
	for round := range 3 {
		p.stop()
		time.Sleep(50 * time.Millisecond) // increments go on meanwhile
		p.restart(t)
		waitFor(200 * (round + 2))
	}
	stopping.Store(true)
	wg.Wait()
	j, err := c.Join(t.Context(), &counterv1.JoinRequest{})
	if err != nil || !j.GetPrinted() {
		t.Fatalf("Join = %v, %v", j, err)
	}
	checkTalkOutput(t, p.lines(), 1, int(j.GetSequence()))
	for i, job := range p.accepted() {
		if job.GetSourceSequence() != uint64(i+1) {
			t.Fatalf("job %d carries source_sequence %d", i, job.GetSourceSequence())
		}
	}
}

// With the printer down at shutdown, the jobs stay in the outbox and are printed, once, by
// the next start.
func TestOutboxOutlivesShutdown(t *testing.T) {
	noLeaks(t)
	p := startPrinterDouble(t)
	cfg := config(t)
	s := startCounter(t, cfg, counter.Deps{Printer: printerClient(t, p.addr)})
	ctx := t.Context()
	for range 5 {
		s.client.Increment(ctx, &counterv1.IncrementRequest{})
	}
	if _, err := s.client.Join(ctx, &counterv1.JoinRequest{}); err != nil {
		t.Fatal(err)
	}
	p.stop()
	for range 5 {
		s.client.Increment(ctx, &counterv1.IncrementRequest{})
	}
	if err := s.stop(); err != nil {
		t.Fatalf("shutdown with the printer down: %v", err)
	}
	p.restart(t)
	s = startCounter(t, cfg, counter.Deps{Printer: printerClient(t, p.addr)})
	j, err := s.client.Join(ctx, &counterv1.JoinRequest{})
	if err != nil || j.GetSequence() != 10 || !j.GetPrinted() {
		t.Fatalf("Join after restart = %v, %v; want 10 printed", j, err)
	}
	checkTalkOutput(t, p.lines(), 1, 10)

	// Without a printer, the counter keeps what waits and does not add to it.
	p.stop()
	s.client.Increment(ctx, &counterv1.IncrementRequest{})
	s.stop()
	s = startCounter(t, cfg, counter.Deps{})
	s.client.Increment(ctx, &counterv1.IncrementRequest{})
	s.stop()
	p.restart(t)
	s = startCounter(t, cfg, counter.Deps{Printer: printerClient(t, p.addr)})
	if j, err := s.client.Join(ctx, &counterv1.JoinRequest{}); err != nil || j.GetSequence() != 12 {
		t.Fatalf("Join = %v, %v", j, err)
	}
	checkTalkOutput(t, p.lines(), 1, 11) // 12 was applied with no printer: it has no print job
}

func TestNamedPrintJobs(t *testing.T) {
	noLeaks(t)
	p := startPrinterDouble(t)
	c := startCounter(t, config(t), counter.Deps{Printer: printerClient(t, p.addr)}).client
	ctx := t.Context()
	c.Increment(ctx, &counterv1.IncrementRequest{Name: "apples", Delta: new(int64(3))})
	c.Increment(ctx, &counterv1.IncrementRequest{})
	sendStream(ctx, c, []*counterv1.CounterIncrement{inc("pears", -2), inc("apples")})
	if _, err := c.Join(ctx, &counterv1.JoinRequest{}); err != nil {
		t.Fatal(err)
	}
	want := []string{"The count of apples is 3", "The count is 1", "---------------", "The count of pears is -2", "The count of apples is 4"}
	if got := p.lines(); !slices.Equal(got, want) {
		t.Fatalf("printed %q, want %q", got, want)
	}
	source := p.accepted()[0].GetSource()
	if !strings.HasPrefix(source, "counter-") {
		t.Fatalf("source %q", source)
	}
}

// Only an applied increment is printed, once: a replayed retry, a refused request_id, an
// overflow and a bad delta print nothing, and a stream's increments print in order.
func TestPrintsOnlyWhatWasApplied(t *testing.T) {
	noLeaks(t)
	p := startPrinterDouble(t)
	c := startCounter(t, config(t), counter.Deps{Printer: printerClient(t, p.addr)}).client
	ctx := t.Context()
	c.Increment(ctx, &counterv1.IncrementRequest{})
	apples := &counterv1.IncrementRequest{Name: "apples", Delta: new(int64(5)), RequestId: "order-1042"}
	c.Increment(ctx, apples)
	if r, err := c.Increment(ctx, apples); err != nil || !r.GetReplayed() {
		t.Fatalf("retry: %v, %v", r, err)
	}
	if _, err := c.Increment(ctx, &counterv1.IncrementRequest{Name: "apples", Delta: new(int64(7)), RequestId: "order-1042"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("request_id reused for another delta: %v", err)
	}
	sendStream(ctx, c, []*counterv1.CounterIncrement{inc("apples"), inc("pears", 2)}, []*counterv1.CounterIncrement{inc(""), inc(""), inc("apples", -3)})
	c.Increment(ctx, &counterv1.IncrementRequest{Name: "big", Delta: new(int64(math.MaxInt64))})
	if _, err := c.Increment(ctx, &counterv1.IncrementRequest{Name: "big"}); status.Code(err) != codes.OutOfRange {
		t.Fatalf("overflow: %v", err)
	}
	if _, err := c.Increment(ctx, &counterv1.IncrementRequest{Delta: new(int64(0))}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("delta 0: %v", err)
	}
	if _, err := c.Join(ctx, &counterv1.JoinRequest{}); err != nil {
		t.Fatal(err)
	}
	want := []string{"The count is 1", "---------------", "The count of apples is 5", "The count of apples is 6",
		"The count of pears is 2", "The count is 2", "---------------", "The count is 3", "---------------",
		"The count of apples is 3", "The count of big is 9223372036854775807"}
	if got := p.lines(); !slices.Equal(got, want) {
		t.Fatalf("printed %q, want %q", got, want)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, mutate := range []func(*counter.Config){
		func(c *counter.Config) { c.DB = "" },
		func(c *counter.Config) { c.OutboxMax = 0 },
		func(c *counter.Config) { c.RequestIDTTL = 0 },
		func(c *counter.Config) { c.RequestIDMax = 0 },
		func(c *counter.Config) { c.MaxNames = 0 },
	} {
		cfg := config(t)
		mutate(&cfg)
		if _, err := counter.New(cfg, counter.Deps{}); err == nil {
			t.Errorf("counter.New(%+v) = nil error", cfg)
		}
	}
	if _, err := counter.New(counter.Config{DB: t.TempDir(), OutboxMax: 1, RequestIDTTL: 1, RequestIDMax: 1, MaxNames: 1}, counter.Deps{}); err == nil {
		t.Error("counter.New with a folder as --counter-db: no error")
	}
	// The flag reaches the check, which names it.
	var cfg counter.Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	cfg.DB = counter.Memory
	if err := fs.Parse([]string{"--counter-max-names=0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := counter.New(cfg, counter.Deps{}); err == nil || !strings.Contains(err.Error(), "--counter-max-names 0: must be at least 1") {
		t.Errorf("counter.New with --counter-max-names=0: %v", err)
	}
}

// Shutdown hands the printer what waits in the outbox: jobs queued while the printer was away
// are printed by the time the counter has shut down.
func TestShutdownHandsOverTheOutbox(t *testing.T) {
	noLeaks(t)
	p := startPrinterDouble(t)
	p.stop()
	s := startCounter(t, config(t), counter.Deps{Printer: printerClient(t, p.addr)})
	for range 50 {
		if _, err := s.client.Increment(t.Context(), &counterv1.IncrementRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	p.restart(t)
	if err := s.stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	checkTalkOutput(t, p.lines(), 1, 50)
}
