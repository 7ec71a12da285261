// Package counter is the talk's counter_manager as a gRPC service (RR 1000, RR 1001, RR 1003):
// named counters owned by one goroutine, durable with group commit, forwarding the talk's
// print job for every increment, in order, to the printer.
//
// Three goroutines do the work, each with its own job:
//   - the owner (owner.go) is the only one that reads or writes counter state, a ledger
//     (ledger.go: a plain value that holds the counters and their rules). Handlers send it
//     messages (messages.go) and wait for its answer. It applies what is queued in one
//     batch, commits the batch as one synced write to pebble's log (the counters, the outbox
//     of print jobs, the request ids, the sequence), and only then answers, so an answered
//     increment is on disk. It is also the only writer of the database.
//   - the forwarder (forward.go) asks the owner for committed print jobs, sends them over one
//     PrintStream, and tells the owner what the printer acknowledged, which the owner drops
//     from the outbox in its next commit.
//   - each IncrementStream call reads its messages in a goroutine of its own, so that the
//     handler can end the call at shutdown even while the client sends nothing.
package counter

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	"github.com/concur-dev/concur/api/errinfo"
	"github.com/concur-dev/concur/api/violation"
	"github.com/concur-dev/concur/internal/dial"
	"github.com/concur-dev/concur/internal/jitter"
	"github.com/concur-dev/concur/internal/recv"
)

// tracerName names the counter's spans' instrumentation.
const tracerName = "github.com/concur-dev/concur/services/counter"

// Memory is the --counter-db value that keeps nothing on disk.
const Memory = ":memory:"

// Config is the counter's configuration; every field has a flag.
type Config struct {
	DB           string        // pebble database folder, or Memory
	OutboxMax    int           // most print jobs waiting for the printer
	RequestIDTTL time.Duration // how long a request id is remembered
	RequestIDMax int           // most request ids remembered
	MaxNames     int           // most counters
	Cluster      ClusterConfig // with etcd endpoints, the counter is a cluster node
}

// RegisterFlags defines the counter's flags on fs, with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.DB, "counter-db", DefaultDB(), "database `folder` for the counters, their outbox of print jobs and the request ids; "+Memory+" keeps nothing")
	fs.IntVar(&c.OutboxMax, "counter-outbox-max", 100_000, "most print jobs waiting for the printer; past it Increment answers UNAVAILABLE rather than lose one")
	fs.DurationVar(&c.RequestIDTTL, "counter-request-id-ttl", 24*time.Hour, "how long a request_id is remembered, so that a retry applies nothing")
	fs.IntVar(&c.RequestIDMax, "counter-request-id-max", 100_000, "most request_ids remembered; the oldest are forgotten first")
	fs.IntVar(&c.MaxNames, "counter-max-names", 100_000, "most counters; past it an increment that would create one answers RESOURCE_EXHAUSTED, while existing counters keep counting")
	c.Cluster.registerFlags(fs)
}

// DefaultDB is the folder counter in concur's folder under the user's state directory
// ($XDG_STATE_HOME, else ~/.local/state), or "" when there is no home directory. It is not
// counter.db, the bbolt file of earlier versions, so that concurd starts on its defaults
// where one is left.
func DefaultDB() string {
	dir := os.Getenv("XDG_STATE_HOME")
	if !filepath.IsAbs(dir) {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "concur", "counter")
}

func (c Config) check() error {
	switch {
	case c.DB == "":
		return errors.New("--counter-db is empty, and there is no home directory to default to: name a folder, or " + Memory + " to keep nothing")
	case c.OutboxMax < 1:
		return fmt.Errorf("--counter-outbox-max %d: must be at least 1", c.OutboxMax)
	case c.RequestIDTTL <= 0:
		return fmt.Errorf("--counter-request-id-ttl %v: must be positive", c.RequestIDTTL)
	case c.RequestIDMax < 1:
		return fmt.Errorf("--counter-request-id-max %d: must be at least 1", c.RequestIDMax)
	case c.MaxNames < 1:
		return fmt.Errorf("--counter-max-names %d: must be at least 1", c.MaxNames)
	}
	return nil
}

// Deps are what the counter is given by whoever assembles it. Each may be left zero: a nil
// Log discards, the zero Jitter is off, a nil Metrics leaves the collectors unregistered, a
// nil Printer runs the counter without forwarding (no outbox), the zero Peers dials the other
// nodes of a cluster in plaintext without a token.
type Deps struct {
	// Log gets the counter's notices, warnings and errors.
	Log *slog.Logger
	// Jitter sleeps between the steps of the owner and the forwarder.
	Jitter jitter.Jitter
	// Printer receives the print jobs.
	Printer Printer
	// Metrics registers the counter's collectors.
	Metrics prometheus.Registerer
	// Peers connects a cluster node to the others, with the credentials their servers ask for.
	Peers dial.Dialer
}

// logger is Log, or a logger that drops everything when there is none.
func (d Deps) logger() *slog.Logger {
	if d.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Log
}

// Service is the counter service. Call Shutdown to release it, even if it never served.
type Service struct {
	counterv1.UnimplementedCounterServiceServer
	owner   *owner
	fwd     *forwarder // nil without a printer
	stopFwd context.CancelFunc
	closing chan struct{} // closed when Shutdown starts

	shutdownOnce sync.Once
	shutdownErr  error // what the first Shutdown returned
}

// New opens the counter's database, loads it, and starts the owner and, with a printer, the
// forwarder.
func New(cfg Config, d Deps) (*Service, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	log := d.logger()
	m, err := newMetrics(d.Metrics, cfg.OutboxMax)
	if err != nil {
		return nil, err
	}
	var st store = memoryStore{}
	if cfg.DB != Memory {
		if st, err = openPebble(cfg.DB); err != nil {
			return nil, err
		}
	}
	return start(cfg, d, st, log, m, batchIncrements)
}

// start loads st and starts the owner, whose batches take at most batch increments, and,
// with a printer, the forwarder. It closes st if the load fails.
func start(cfg Config, d Deps, st store, log *slog.Logger, m *metrics, batch int) (*Service, error) {
	loaded, err := st.load(d.Printer != nil)
	if err != nil {
		st.close()
		return nil, err
	}
	s := &Service{
		owner:   newOwner(cfg, st, loaded, d.Printer != nil, d.Jitter, log, m),
		closing: make(chan struct{}),
		stopFwd: func() {},
	}
	s.owner.batch = batch
	go s.owner.run()
	if d.Printer != nil {
		var ctx context.Context
		ctx, s.stopFwd = context.WithCancel(context.Background())
		s.fwd = &forwarder{printer: d.Printer, owner: s.owner, source: loaded.source, jitter: d.Jitter, log: log, resent: m.resent,
			drain: make(chan struct{}), done: make(chan struct{}), perMessage: jobsPerMessage}
		go s.fwd.run(ctx)
	}
	log.Info("counter ready", "db", cfg.DB, "counters", len(loaded.counters), "sequence", loaded.seq,
		"printer", d.Printer != nil, "outbox", len(loaded.outbox), "source", loaded.source)
	if loaded.waiting > 0 {
		log.Warn("print jobs wait in the outbox but no printer is configured: run the counter with --printer-addr (or beside the printer) to print them",
			"jobs", loaded.waiting)
	}
	if n := len(loaded.counters); n > cfg.MaxNames {
		log.Warn("the database holds more counters than --counter-max-names: they keep counting, but an increment that would create another is refused",
			"counters", n, "max_names", cfg.MaxNames)
	}
	return s, nil
}

// Name is the gRPC service name.
func (s *Service) Name() string { return counterv1.CounterService_ServiceDesc.ServiceName }

// Broken is closed when a commit to the database failed: from then on the counter refuses
// every call until it is restarted, and the server reports it NOT_SERVING (serve.Breakable).
func (s *Service) Broken() <-chan struct{} { return s.owner.broken }

// Register adds the counter's handlers to r.
func (s *Service) Register(r grpc.ServiceRegistrar) { counterv1.RegisterCounterServiceServer(r, s) }

// Shutdown finishes what was accepted: the owner applies and commits what reached it and
// refuses the rest, Watch and IncrementStream calls are ended telling why, the forwarder
// hands the printer what it takes before ctx ends (the rest stays in the outbox for the next
// start), and the database is closed. It returns once the owner has stopped and the database
// is closed, even when ctx ends first. It may be called again: a later call waits for the
// first and returns what it returned.
func (s *Service) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() { s.shutdownErr = s.shutdown(ctx) })
	return s.shutdownErr
}

func (s *Service) shutdown(ctx context.Context) error {
	close(s.closing)
	var errs []error
	closing := &closeMsg{newReply()}
	if err := s.owner.call(ctx, closing, &closing.reply); err != nil {
		errs = append(errs, fmt.Errorf("stop taking increments: %w", err))
	}
	if s.fwd != nil {
		s.fwd.patience = drainPatience
		if deadline, ok := ctx.Deadline(); ok {
			s.fwd.patience = min(drainPatience, time.Until(deadline)/2)
		}
		close(s.fwd.drain)
		select {
		case <-s.fwd.done:
		case <-ctx.Done():
		}
	}
	s.stopFwd()
	if s.fwd != nil {
		<-s.fwd.done
	}
	stop := &stopMsg{newReply()}
	s.owner.inbox <- stop // the owner runs until it takes this
	<-stop.done
	return errors.Join(append(errs, stop.err)...)
}

// Increment adds to a counter once the owner has applied and committed it.
func (s *Service) Increment(ctx context.Context, req *counterv1.IncrementRequest) (*counterv1.IncrementResponse, error) {
	m := &incrementMsg{reply: newReply(), name: counterv1.NameOrDefault(req.GetName()), requestID: req.GetRequestId(), delta: delta(req.Delta),
		link: linkOf(ctx)}
	if err := s.owner.send(ctx, m); err != nil {
		return nil, callError(err, "the call ended before the counter took the increment: nothing was applied")
	}
	if err := s.owner.wait(ctx, &m.reply); err != nil {
		return nil, callError(err, "the call ended before the counter answered: the increment may have been applied; retry with the same request_id")
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent("committed", trace.WithAttributes(attribute.Int64("concur.counter.sequence", int64(m.seq))))
	}
	return &counterv1.IncrementResponse{Name: m.name, Value: new(m.value), Sequence: new(m.seq), Replayed: m.replayed}, nil
}

// IncrementStream applies each message whole or not at all, in order; the owner batches
// messages from every stream into its commits.
func (s *Service) IncrementStream(stream counterv1.CounterService_IncrementStreamServer) error {
	ctx := stream.Context()
	st := newStreamState()
	st.link = linkOf(ctx) // before the owner sees st
	defer s.owner.tell(&streamGoneMsg{st})
	reqs, ended := recv.Pump(ctx, stream.Recv)
	closing := s.closing
	sent := 0
	for {
		select {
		case req := <-reqs:
			if err := s.owner.send(ctx, &streamBatchMsg{stream: st, incs: req.GetIncrements()}); err != nil {
				return callError(err, "the call ended before the counter took every message")
			}
			sent++
		case err := <-ended:
			if ctx.Err() != nil {
				return callError(ctx.Err(), "the call ended")
			}
			sum, endErr := s.endStream(ctx, st)
			if endErr != nil {
				return endErr
			}
			if errors.Is(err, io.EOF) {
				return stream.SendAndClose(sum)
			}
			// A message failed validation: the messages before it stay applied.
			return withMessage(err, fmt.Sprintf("; the %d increments in the messages before it were applied", sum.GetApplied()))
		case <-st.failed:
			return st.err
		case <-closing:
			if sent == 0 {
				return status.Error(codes.Unavailable, "the counter is shutting down: nothing of this stream was applied; send it when the counter is back")
			}
			closing = nil // the owner ends the stream, telling how much of it was applied
		case <-ctx.Done():
			return callError(ctx.Err(), "the call ended")
		}
	}
}

// endStream waits until every message the stream sent is applied and committed, and returns
// the summary.
func (s *Service) endStream(ctx context.Context, st *streamState) (*counterv1.IncrementStreamResponse, error) {
	m := &streamEndMsg{reply: newReply(), stream: st}
	if err := s.owner.call(ctx, m, &m.reply); err != nil {
		return nil, callError(err, "the call ended before the counter confirmed the stream's increments")
	}
	return &counterv1.IncrementStreamResponse{Applied: new(m.applied), Counters: m.counters}, nil
}

// Get reads a counter through the owner.
func (s *Service) Get(ctx context.Context, req *counterv1.GetRequest) (*counterv1.GetResponse, error) {
	m := &getMsg{reply: newReply(), name: counterv1.NameOrDefault(req.GetName())}
	if err := s.owner.call(ctx, m, &m.reply); err != nil {
		return nil, callError(err, "the call ended before the counter answered")
	}
	return &counterv1.GetResponse{Name: m.name, Value: new(m.value)}, nil
}

// Join waits until every increment accepted before it is applied, on disk and, with a
// printer, written by the printer (its receipt says so).
func (s *Service) Join(ctx context.Context, _ *counterv1.JoinRequest) (*counterv1.JoinResponse, error) {
	m := &joinMsg{reply: newReply(), committed: make(chan struct{})}
	if err := s.owner.send(ctx, m); err != nil {
		return nil, callError(err, "the call ended before the Join reached the counter")
	}
	wctx, cancel := answerBeforeDeadline(ctx)
	defer cancel()
	if err := s.owner.wait(wctx, &m.reply); err != nil {
		if wctx.Err() == nil {
			return nil, err
		}
		select {
		case <-m.committed:
			return nil, callError(err, fmt.Sprintf("the increments up to sequence %d are applied and on disk, but not all their print jobs are printed yet: Join again later", m.target))
		default:
			return nil, callError(err, "the call ended before the counter committed the increments accepted before the Join")
		}
	}
	return &counterv1.JoinResponse{Sequence: new(m.target), Printed: m.printed}, nil
}

// Watch sends the counter's value, then every new value; values a slow watcher missed are
// replaced by the latest.
func (s *Service) Watch(req *counterv1.WatchRequest, stream counterv1.CounterService_WatchServer) error {
	ctx := stream.Context()
	w := &watcher{name: counterv1.NameOrDefault(req.GetName()), ch: make(chan watchValue, 1)}
	defer s.owner.tell(&unwatchMsg{w})
	m := &watchMsg{reply: newReply(), w: w}
	if err := s.owner.call(ctx, m, &m.reply); err != nil {
		return callError(err, "the call ended before the counter answered")
	}
	v, ok := m.first, true
	for {
		if !ok {
			return status.Error(codes.Unavailable, "the counter is shutting down; watch again when it is back")
		}
		if err := stream.Send(&counterv1.WatchResponse{Name: w.name, Value: new(v.value), Sequence: new(v.seq)}); err != nil {
			return err
		}
		select {
		case v, ok = <-w.ch:
		case <-ctx.Done():
			return callError(ctx.Err(), "the watch was ended by its caller")
		}
	}
}

// Shards answers an embedded counter's map: one shard, with no owner, since the server called
// serves every counter.
func (s *Service) Shards(context.Context, *counterv1.ShardsRequest) (*counterv1.ShardsResponse, error) {
	return &counterv1.ShardsResponse{Shards: new(uint32(1)), Owners: []string{""}}, nil
}

// linkOf is the span of ctx's call, for its print jobs to link to; nil when the call is not
// traced or its span not sampled.
func linkOf(ctx context.Context) *trace.SpanContext {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() && sc.IsSampled() {
		return &sc
	}
	return nil
}

// answerBeforeDeadline returns a context that ends a little before ctx's deadline, so that
// the server's DEADLINE_EXCEEDED, with its message saying what is done, reaches the caller
// before the caller's own deadline ends the call with a bare one.
func answerBeforeDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return ctx, func() {}
	}
	return context.WithDeadline(ctx, deadline.Add(-min(time.Until(deadline)/10, 100*time.Millisecond)))
}

// callError turns the end of a call's context into its gRPC status with a message that says
// what happened to the request; other errors are already statuses.
func callError(err error, what string) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.Error(status.FromContextError(err).Code(), what)
	}
	return err
}

// withMessage adds to a status error's message, keeping its code and details.
func withMessage(err error, more string) error {
	p := status.Convert(err).Proto()
	p.Message += more
	return status.FromProto(p).Err()
}

// failure is a status error with a google.rpc.ErrorInfo detail of this service.
func failure(code codes.Code, reason string, meta map[string]string, format string, args ...any) error {
	return errinfo.New(counterv1.CounterService_ServiceDesc.ServiceName, code, reason, meta, format, args...)
}

func fieldError(field, description string) error {
	var l violation.List
	l.Add(field, description)
	return l.Err()
}
