package counter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	"github.com/concur-dev/concur/api/violation"
	"github.com/concur-dev/concur/internal/jitter"
)

// Printer is the part of the printer's contract the counter uses; the generated
// printerv1.PrinterServiceClient has it. The counter knows the printer only through it.
type Printer interface {
	PrintStream(ctx context.Context, opts ...grpc.CallOption) (grpc.BidiStreamingClient[printerv1.PrintStreamRequest, printerv1.PrintStreamResponse], error)
}

// PrinterDialOptions are for a connection to a remote printer: gRPC's default reconnect
// backoff grows to two minutes, which would leave print jobs waiting long after a restarted
// printer is back.
func PrinterDialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
		MinConnectTimeout: 5 * time.Second,
	})}
}

const (
	// jobsPerMessage is the most print jobs per PrintStreamRequest. A receipt comes once its
	// message is written and fsynced, and the forwarder waits for it before the next message,
	// so a message carries whatever gathered meanwhile: under load, thousands of jobs per
	// flush. 4,096 jobs of the longest name stay near 1 MiB, under gRPC's 4 MiB default, and
	// under the printer's default --printer-max-jobs.
	jobsPerMessage = 4096
	// drainPatience bounds how long a shutting-down forwarder waits for a printer that is
	// away (at most half of the time left to shut down, so that the rest of the server gets
	// its share): the jobs it does not hand over stay in the outbox for the next start.
	drainPatience = 5 * time.Second
	minBackoff    = 50 * time.Millisecond
	maxBackoff    = 2 * time.Second
)

// forwarder is the one goroutine that sends the outbox to the printer, in sequence order,
// over one PrintStream (RR 1001). It never touches the outbox: it asks the owner for the
// committed print jobs after the last one the printer acknowledged, sends them as one
// message, waits for the receipts, and tells the owner, which drops them from the outbox in
// its next commit. After a broken stream it starts again from the first unacknowledged job;
// the printer acknowledges a job it already has without printing it again.
type forwarder struct {
	printer Printer
	owner   *owner
	source  string
	jitter  jitter.Jitter
	log     *slog.Logger
	drain   chan struct{} // closed by Shutdown: send what is left, then stop
	// patience is how long, once draining, to keep trying a printer that is away; Shutdown
	// sets it before it closes drain.
	patience time.Duration
	done     chan struct{} // closed when run returns
	resent   prometheus.Counter
	// The forwarder goroutine's own: the last session failed, the most jobs a message
	// carries (halved while the printer refuses messages as too large), and the last sequence
	// sent.
	broken     bool
	perMessage int
	sent       uint64
}

func (f *forwarder) run(ctx context.Context) {
	defer close(f.done)
	var acked uint64 // the last sequence the printer acknowledged; 0 resends the whole outbox
	wait := minBackoff
	patient := false
	for {
		if f.draining() && !patient {
			// Shutting down: keep trying, waiting for the connection, but not for long.
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, f.patience)
			defer cancel()
			patient = true
		}
		progressed, err := f.session(ctx, &acked)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			if f.draining() {
				f.log.Warn("the printer did not take every print job before shutdown: the rest stay in the outbox", "err", err)
			}
			return
		}
		if f.shrink(err) || progressed {
			wait = minBackoff
		}
		level := slog.LevelDebug // while the printer stays away, say so once
		if !f.broken {
			level, f.broken = slog.LevelWarn, true
		}
		f.log.Log(ctx, level, "printer stream failed; retrying", "err", err, "retry_in", wait.String(), "resend_from", acked+1)
		select {
		case <-time.After(wait/2 + rand.N(wait/2)):
		case <-ctx.Done():
			return
		case <-f.drain:
		}
		wait = min(2*wait, maxBackoff)
	}
}

func (f *forwarder) draining() bool {
	select {
	case <-f.drain:
		return true
	default:
		return false
	}
}

// session sends print jobs over one PrintStream until it breaks (an error) or, once
// draining, until the outbox is empty (nil). It opens the stream once it has jobs to send, so
// that a forwarder drained with nothing left (a shard given up while the printer is away)
// never waits for the printer.
func (f *forwarder) session(ctx context.Context, acked *uint64) (progressed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs, err := f.owner.pull(ctx, *acked, f.perMessage, f.drain)
	if err != nil || len(jobs) == 0 {
		return false, err
	}
	stream, err := f.printer.PrintStream(ctx, grpc.WaitForReady(f.draining()))
	if err != nil {
		return false, fmt.Errorf("open PrintStream: %w", err)
	}
	for {
		if jobs == nil {
			if jobs, err = f.owner.pull(ctx, *acked, f.perMessage, f.drain); err != nil {
				return progressed, err
			}
		}
		if len(jobs) == 0 { // drained
			stream.CloseSend()
			for {
				if _, err := stream.Recv(); err != nil {
					return progressed, nil
				}
			}
		}
		if err := f.print(ctx, stream, jobs); err != nil {
			return progressed, err
		}
		f.jitter.Sleep()
		last := jobs[len(jobs)-1].seq
		if err := f.owner.send(ctx, &ackMsg{through: last}); err != nil {
			return progressed, err
		}
		if f.broken {
			f.log.Info("printer reached again", "resent_from", jobs[0].seq)
			f.broken = false
		}
		*acked, progressed, jobs = last, true, nil
	}
}

// print sends jobs as one message and waits for their receipts, in a span of its own.
func (f *forwarder) print(ctx context.Context, stream grpc.BidiStreamingClient[printerv1.PrintStreamRequest, printerv1.PrintStreamResponse], jobs []printJob) (err error) {
	span := traceJobs(ctx, jobs)
	defer func() {
		if err != nil {
			span.SetStatus(otelcodes.Error, err.Error())
		}
		span.End()
	}()
	req := f.request(jobs)
	f.jitter.Sleep()
	if err := stream.Send(req); err != nil {
		if _, rerr := stream.Recv(); rerr != nil && !errors.Is(rerr, io.EOF) {
			err = rerr // the stream's status says more than Send's io.EOF
		}
		return fmt.Errorf("send print jobs %d to %d: %w", jobs[0].seq, jobs[len(jobs)-1].seq, err)
	}
	// The jobs up to f.sent went out before, on a stream that broke before their receipts.
	f.resent.Add(float64(sort.Search(len(jobs), func(i int) bool { return jobs[i].seq > f.sent })))
	f.sent = max(f.sent, jobs[len(jobs)-1].seq)
	resp, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		err = errors.New("the printer ended the stream")
	}
	if err != nil {
		return fmt.Errorf("receipts for print jobs %d to %d: %w", jobs[0].seq, jobs[len(jobs)-1].seq, err)
	}
	return checkReceipts(req, resp)
}

// traceJobs starts the span of one message of print jobs, from its send to its receipts,
// which come once the printer has written them. The PrintStream outlives every call, so the
// span is a root of its own, linked to the span of each call that made one of its jobs (one
// link for a run of jobs of the same call): a trace of an Increment leads to the printing of
// its line.
func traceJobs(ctx context.Context, jobs []printJob) trace.Span {
	first, last := jobs[0].seq, jobs[len(jobs)-1].seq
	_, span := otel.Tracer(tracerName).Start(ctx, "counter.forward", trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.Int("concur.print_jobs", len(jobs)),
			attribute.Int64("concur.counter.sequence.first", int64(first)), attribute.Int64("concur.counter.sequence.last", int64(last))))
	if !span.IsRecording() {
		return span
	}
	var prev *trace.SpanContext
	for _, j := range jobs {
		if j.link != nil && j.link != prev {
			span.AddLink(trace.Link{SpanContext: *j.link, Attributes: []attribute.KeyValue{attribute.Int64("concur.counter.sequence", int64(j.seq))}})
			prev = j.link
		}
	}
	return span
}

func (f *forwarder) request(jobs []printJob) *printerv1.PrintStreamRequest {
	req := &printerv1.PrintStreamRequest{Jobs: make([]*printerv1.PrintJob, len(jobs))}
	for i, j := range jobs {
		req.Jobs[i] = &printerv1.PrintJob{Lines: j.lines(), Source: f.source, SourceSequence: j.seq}
	}
	return req
}

// lines are the talk's print job: `The count is N` and a rule for the talk's counter, one
// line naming the counter for the others.
func (j printJob) lines() []string {
	n := strconv.FormatInt(j.value, 10)
	if j.name == counterv1.DefaultName {
		return []string{"The count is " + n, "---------------"}
	}
	return []string{"The count of " + j.name + " is " + n}
}

func checkReceipts(req *printerv1.PrintStreamRequest, resp *printerv1.PrintStreamResponse) error {
	if len(resp.GetReceipts()) != len(req.GetJobs()) {
		return fmt.Errorf("the printer answered %d print jobs with %d receipts", len(req.GetJobs()), len(resp.GetReceipts()))
	}
	for i, r := range resp.GetReceipts() {
		if j := req.GetJobs()[i]; r.GetSource() != j.GetSource() || r.GetSourceSequence() != j.GetSourceSequence() {
			return fmt.Errorf("the printer's receipt %d is for %s/%d, not for print job %s/%d", i, r.GetSource(), r.GetSourceSequence(), j.GetSource(), j.GetSourceSequence())
		}
	}
	return nil
}

// shrink halves the jobs per message when the printer refused a message as too large (a
// printer run with a smaller --printer-max-jobs or queue names the field jobs), and reports
// whether it did.
func (f *forwarder) shrink(err error) bool {
	if f.perMessage == 1 || status.Code(err) != codes.InvalidArgument || !slices.Contains(violation.Fields(err), "jobs") {
		return false
	}
	f.perMessage /= 2
	f.log.Warn("the printer refused a message of print jobs as too large: sending smaller ones", "jobs_per_message", f.perMessage, "err", err)
	return true
}

// pull asks the owner for up to max committed print jobs after sequence after, waiting for
// some unless drain is closed.
func (o *owner) pull(ctx context.Context, after uint64, max int, drain <-chan struct{}) ([]printJob, error) {
	for {
		m := &pullMsg{reply: newReply(), after: after, max: max}
		select {
		case <-drain:
		default:
			m.wait = true
		}
		if err := o.send(ctx, m); err != nil {
			return nil, err
		}
		var wake <-chan struct{}
		if m.wait {
			wake = drain
		}
		select {
		case <-m.done:
			return m.jobs, m.err
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-o.stopped:
			return nil, errShuttingDown
		case <-wake: // ask again without waiting
		}
	}
}
