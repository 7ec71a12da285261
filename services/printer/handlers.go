package printer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	"github.com/concur-dev/concur/api/errinfo"
	"github.com/concur-dev/concur/api/violation"
	"github.com/concur-dev/concur/internal/recv"
)

// Print accepts one job and answers with its sequence number once the owner has taken it:
// a unary caller is not held for a flush (Join waits for that).
func (p *Service) Print(ctx context.Context, req *printerv1.PrintRequest) (*printerv1.PrintResponse, error) {
	job := &printerv1.PrintJob{Lines: req.GetLines(), Source: req.GetSource(), SourceSequence: req.GetSourceSequence()}
	a, err := p.submit(ctx, []*printerv1.PrintJob{job}, false)
	if err != nil {
		return nil, err
	}
	return &printerv1.PrintResponse{Sequence: a.receipts[0].Sequence, Duplicate: a.receipts[0].GetDuplicate()}, nil
}

// PrintStream accepts each request message whole, in the order they arrive, and answers each
// with its receipts once its jobs are written. It goes on accepting while earlier messages
// wait to be written, so a sender that does not wait for receipts keeps the batches full.
// Shutdown ends it with UNAVAILABLE even while it waits for a message, so a goroutine
// receives for it; what was accepted is written and its receipts sent first.
func (p *Service) PrintStream(stream printerv1.PrinterService_PrintStreamServer) error {
	ctx := stream.Context()
	reqs, ended := recv.Pump(ctx, stream.Recv)
	var unwritten []accepted // accepted messages, oldest first, whose receipts wait for the write
	for {
		var written <-chan uint64
		if len(unwritten) > 0 {
			written = unwritten[0].written
		}
		var end error // the stream ends once the receipts of what was accepted are sent
		select {
		case req := <-reqs:
			a, err := p.submit(ctx, req.GetJobs(), true)
			if err != nil {
				end = err
				break
			}
			unwritten = append(unwritten, a)
			continue
		case <-written:
			if err := stream.Send(&printerv1.PrintStreamResponse{Receipts: unwritten[0].receipts}); err != nil {
				return err
			}
			unwritten = unwritten[1:]
			continue
		case err := <-ended: // the client's end, or a message refused before it reached here
			if !errors.Is(err, io.EOF) {
				end = err
			}
		case <-p.stopping:
			end = errShuttingDown
		case <-ctx.Done():
			return contextError(ctx)
		}
		return p.sendReceipts(ctx, stream, unwritten, end)
	}
}

// sendReceipts sends the receipts of the accepted messages as they are written, then ends the
// stream with end.
func (p *Service) sendReceipts(ctx context.Context, stream printerv1.PrinterService_PrintStreamServer, unwritten []accepted, end error) error {
	for _, a := range unwritten {
		select {
		case <-a.written:
		case <-ctx.Done():
			return contextError(ctx)
		}
		if err := stream.Send(&printerv1.PrintStreamResponse{Receipts: a.receipts}); err != nil {
			return err
		}
	}
	return end
}

// Join answers once every job accepted before it is written to every sink and flushed.
func (p *Service) Join(ctx context.Context, _ *printerv1.JoinRequest) (*printerv1.JoinResponse, error) {
	m := &joinMsg{written: make(chan uint64, 1)}
	switch err := p.send(ctx, m); {
	case errors.Is(err, errStopped): // everything accepted was written before the owner ended
		return &printerv1.JoinResponse{Sequence: new(p.final.last)}, nil
	case err != nil:
		return nil, err
	}
	select {
	case last := <-m.written:
		return &printerv1.JoinResponse{Sequence: &last}, nil
	case <-ctx.Done():
		return nil, contextError(ctx)
	}
}

// Tail sends the written jobs from req.from_sequence on, a page at a time, then waits for more
// unless req.history_only. It never holds up the owner: it asks for a page, sends it at the
// client's pace, and asks again.
func (p *Service) Tail(req *printerv1.TailRequest, stream grpc.ServerStreamingServer[printerv1.TailResponse]) error {
	p.metrics.tailReaders.Inc()
	defer p.metrics.tailReaders.Dec()
	ctx := stream.Context()
	next, first, end := req.GetFromSequence(), true, uint64(0)
	for {
		pg, stopped, err := p.read(ctx, next, first)
		if status.Code(err) == codes.ResourceExhausted { // READER_FELL_BEHIND
			p.metrics.readersCutOff.Inc()
		}
		if err != nil {
			return err
		}
		if first {
			next, first, end = pg.from, false, pg.last
		}
		for _, j := range pg.jobs {
			if req.GetHistoryOnly() && j.GetSequence() > end {
				return nil
			}
			if err := stream.Send(j); err != nil {
				return err
			}
			next = j.GetSequence() + 1
		}
		switch {
		case req.GetHistoryOnly() && next > end:
			return nil
		case len(pg.jobs) > 0:
			continue
		case stopped:
			return failure(codes.Unavailable, "SHUTTING_DOWN", map[string]string{"resume_sequence": strconv.FormatUint(next, 10)},
				"the printer is shutting down and everything it wrote was sent: call Tail again from %d once it is back", next)
		}
		select {
		case <-pg.wait:
		case <-p.done:
		case <-ctx.Done():
			return contextError(ctx)
		}
	}
}

// read takes a page of the history from the owner, or from what it left once it has ended
// (stopped is then true).
func (p *Service) read(ctx context.Context, from uint64, first bool) (pg page, stopped bool, err error) {
	m := &readMsg{from: from, first: first, done: make(chan struct{})}
	switch sendErr := p.send(ctx, m); {
	case errors.Is(sendErr, errStopped):
		pg, err = p.final.read(from, first)
		return pg, true, err
	case sendErr != nil:
		return page{}, false, sendErr
	}
	<-m.done // the owner applies a message as soon as it takes it
	return m.pg, false, m.err
}

// CheckLimits adds a violation for each limit of this printer that req breaks: what one
// PrintStream message may hold, and what its queue can take at once, and each job's lines. The
// server runs it with each request's Validate, before a handler sees the request.
func (p *Service) CheckLimits(req any, l *violation.List) {
	switch r := req.(type) {
	case *printerv1.PrintRequest:
		p.checkJob(l, "", r.GetLines())
	case *printerv1.PrintStreamRequest:
		jobs, bytes := r.GetJobs(), uint64(0)
		for _, j := range jobs {
			bytes += size(j.GetLines())
		}
		switch c := p.limits; {
		case len(jobs) > c.MaxJobs:
			l.Addf("jobs", "holds %d jobs; this printer takes at most %d jobs per message (--printer-max-jobs): split the message", len(jobs), c.MaxJobs)
		case len(jobs) > c.Queue || bytes > uint64(c.QueueBytes):
			l.Addf("jobs", "holds %d jobs of %d bytes; this printer's queue holds at most %d jobs and %d bytes (--printer-queue, --printer-queue-bytes): split it", len(jobs), bytes, c.Queue, c.QueueBytes)
		}
		for i, j := range jobs {
			p.checkJob(l, fmt.Sprintf("jobs[%d].", i), j.GetLines())
		}
	}
}

// checkJob adds a violation for each limit the job's lines break.
func (p *Service) checkJob(l *violation.List, prefix string, lines []string) {
	if len(lines) > p.limits.MaxLines {
		l.Addf(prefix+"lines", "holds %d lines; this printer takes at most %d lines per job (--printer-max-lines): split the job", len(lines), p.limits.MaxLines)
	}
	for i, line := range lines {
		if len(line) > p.limits.MaxLineBytes {
			l.Addf(fmt.Sprintf("%slines[%d]", prefix, i), "is %d bytes long; this printer takes at most %d bytes per line (--printer-max-line-bytes)", len(line), p.limits.MaxLineBytes)
		}
	}
}

// submit hands jobs to the owner, waiting for room in the queue, and returns what the owner
// answered, with a channel for the write when durable. With a deadline it gives up a little
// before it (see patience), so that the caller hears RESOURCE_EXHAUSTED rather than its own
// DEADLINE_EXCEEDED. Jobs are accepted whole or not at all: a submission given up while it
// waits for room is withdrawn.
func (p *Service) submit(ctx context.Context, jobs []*printerv1.PrintJob, durable bool) (accepted, error) {
	s := &submission{jobs: jobs, durable: durable, reply: make(chan accepted, 1)}
	for _, j := range jobs {
		s.bytes += size(j.GetLines())
	}
	var giveUp <-chan time.Time
	if deadline, ok := ctx.Deadline(); ok {
		t := time.NewTimer(patience(time.Until(deadline)))
		defer t.Stop()
		giveUp = t.C
	}
	var refusal error
	select {
	case p.intake <- s:
		select {
		case a := <-s.reply:
			return a, a.err
		case <-p.stopping:
			refusal = errShuttingDown
		case <-giveUp:
			refusal = p.queueFull()
		case <-ctx.Done():
			refusal = contextError(ctx)
		}
	case <-p.stopping:
		return accepted{}, errShuttingDown
	case <-giveUp:
		return accepted{}, p.queueFull()
	case <-ctx.Done():
		return accepted{}, contextError(ctx)
	}
	// The owner holds s, waiting for room: take it back, unless it was accepted meanwhile. An
	// owner that has ended answered it already.
	_ = p.send(context.Background(), &withdrawMsg{s: s, err: refusal})
	a := <-s.reply
	return a, a.err
}

// patience is how long to wait for room when the caller's deadline is d away: all but a
// fifth of it, and at most 250ms less, which leaves the answer time to reach the caller
// even from a loaded server.
func patience(d time.Duration) time.Duration {
	return d - min(d/5, 250*time.Millisecond)
}

var errShuttingDown = failure(codes.Unavailable, "SHUTTING_DOWN", nil,
	"the printer is shutting down: the jobs were not accepted; send them again once it is back")

// queueFull refuses jobs that found no room in the queue before their deadline.
func (p *Service) queueFull() error {
	meta := map[string]string{
		"max_jobs": strconv.Itoa(p.limits.Queue), "max_jobs_flag": "--printer-queue",
		"max_bytes": strconv.Itoa(p.limits.QueueBytes), "max_bytes_flag": "--printer-queue-bytes",
	}
	return failure(codes.ResourceExhausted, "QUEUE_FULL", meta,
		"the print queue stayed full until the deadline: the jobs were not accepted; retry later or with a longer deadline")
}

func tooManySources(max int) error {
	return failure(codes.ResourceExhausted, "TOO_MANY_SOURCES", map[string]string{"max_sources": strconv.Itoa(max), "max_sources_flag": "--printer-max-sources"},
		"the printer knows as many sources as it may: the jobs were not accepted; send them without a source, or from a known one")
}

// failure is a status error with a google.rpc.ErrorInfo detail of this service.
func failure(code codes.Code, reason string, meta map[string]string, format string, args ...any) error {
	return errinfo.New(printerv1.PrinterService_ServiceDesc.ServiceName, code, reason, meta, format, args...)
}

// contextError is the status for a call whose context ended: CANCELLED or DEADLINE_EXCEEDED.
func contextError(ctx context.Context) error {
	return status.FromContextError(ctx.Err()).Err()
}
