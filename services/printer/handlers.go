package printer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	"github.com/concur-dev/concur/api/violation"
	"github.com/concur-dev/concur/internal/serve"
)

// Print accepts one job and answers with its sequence number once the owner has taken it.
func (p *Printer) Print(ctx context.Context, req *printerv1.PrintRequest) (*printerv1.PrintResponse, error) {
	var l violation.List
	p.checkLimits(&l, "", req.GetLines())
	if err := l.Err(); err != nil {
		return nil, err
	}
	job := &printerv1.PrintJob{Lines: req.GetLines(), Source: req.GetSource(), SourceSequence: req.GetSourceSequence()}
	receipts, err := p.submit(ctx, []*printerv1.PrintJob{job})
	if err != nil {
		return nil, err
	}
	return &printerv1.PrintResponse{Sequence: receipts[0].Sequence, Duplicate: receipts[0].GetDuplicate()}, nil
}

// PrintStream accepts each request message whole, in the order they arrive, and answers each
// with its receipts. Shutdown ends it with UNAVAILABLE even while it waits for a message, so a
// goroutine receives for it.
func (p *Printer) PrintStream(stream printerv1.PrinterService_PrintStreamServer) error {
	ctx := stream.Context()
	reqs, ended := serve.Receive(ctx, stream.Recv)
	for {
		var req *printerv1.PrintStreamRequest
		select {
		case req = <-reqs:
		case err := <-ended:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-p.stopping:
			return errShuttingDown
		case <-ctx.Done():
			return contextError(ctx)
		}
		var l violation.List
		for i, j := range req.GetJobs() {
			p.checkLimits(&l, fmt.Sprintf("jobs[%d].", i), j.GetLines())
		}
		if err := l.Err(); err != nil {
			return err
		}
		receipts, err := p.submit(ctx, req.GetJobs())
		if err != nil {
			return err
		}
		if err := stream.Send(&printerv1.PrintStreamResponse{Receipts: receipts}); err != nil {
			return err
		}
	}
}

// Join answers once every job accepted before it is written to every sink and flushed.
func (p *Printer) Join(ctx context.Context, _ *printerv1.JoinRequest) (*printerv1.JoinResponse, error) {
	reply := make(chan uint64, 1)
	switch err := p.call(ctx, func(o *owner) { o.join(reply) }); {
	case errors.Is(err, errStopped): // everything accepted was written before the owner ended
		return &printerv1.JoinResponse{Sequence: new(p.final.last)}, nil
	case err != nil:
		return nil, err
	}
	select {
	case last := <-reply:
		return &printerv1.JoinResponse{Sequence: &last}, nil
	case <-ctx.Done():
		return nil, contextError(ctx)
	}
}

// Tail sends the written jobs from req.from_sequence on, a page at a time, then waits for more
// unless req.history_only. It never holds up the owner: it asks for a page, sends it at the
// client's pace, and asks again.
func (p *Printer) Tail(req *printerv1.TailRequest, stream grpc.ServerStreamingServer[printerv1.TailResponse]) error {
	ctx := stream.Context()
	next, first, end := req.GetFromSequence(), true, uint64(0)
	for {
		pg, stopped, err := p.read(ctx, next, first)
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
				"the printer is shutting down and everything it wrote has been sent; call Tail again from %d once it is back", next)
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
func (p *Printer) read(ctx context.Context, from uint64, first bool) (pg page, stopped bool, err error) {
	taken := make(chan struct{})
	switch callErr := p.call(ctx, func(o *owner) {
		if pg, err = o.hist.read(from, first); err == nil && len(pg.jobs) == 0 {
			pg.wait = o.woken()
		}
		close(taken)
	}); {
	case errors.Is(callErr, errStopped):
		pg, err = p.final.read(from, first)
		return pg, true, err
	case callErr != nil:
		return page{}, false, callErr
	}
	<-taken // the owner runs a call as soon as it takes it
	return pg, false, err
}

// checkLimits adds a violation for each limit the job's lines break.
func (p *Printer) checkLimits(l *violation.List, prefix string, lines []string) {
	if len(lines) > p.maxLines {
		l.Addf(prefix+"lines", "holds %d lines; this printer takes at most %d lines per job (--printer-max-lines): split the job", len(lines), p.maxLines)
	}
	for i, line := range lines {
		if len(line) > p.maxLineBytes {
			l.Addf(fmt.Sprintf("%slines[%d]", prefix, i), "is %d bytes long; this printer takes at most %d bytes per line (--printer-max-line-bytes)", len(line), p.maxLineBytes)
		}
	}
}

// submit hands jobs to the owner, waiting for room in the queue, and returns their receipts.
// With a deadline it gives up a little before it (see patience), so that the caller hears
// RESOURCE_EXHAUSTED rather than its own DEADLINE_EXCEEDED.
func (p *Printer) submit(ctx context.Context, jobs []*printerv1.PrintJob) ([]*printerv1.PrintReceipt, error) {
	s := &submission{jobs: jobs, reply: make(chan accepted, 1)}
	var giveUp <-chan time.Time
	if deadline, ok := ctx.Deadline(); ok {
		t := time.NewTimer(patience(time.Until(deadline)))
		defer t.Stop()
		giveUp = t.C
	}
	select {
	case p.intake <- s:
		a := <-s.reply // the owner answers as soon as it takes a submission
		return a.receipts, a.err
	case <-p.stopping:
		return nil, errShuttingDown
	case <-giveUp:
		return nil, failure(codes.ResourceExhausted, "QUEUE_FULL", nil,
			"the print queue stayed full until the deadline (--printer-queue jobs wait to be written): the job was not accepted and will not be printed; send it again later or with a longer deadline")
	case <-ctx.Done():
		return nil, contextError(ctx)
	}
}

// patience is how long to wait for room when the caller's deadline is d away: all but a
// fifth of it, and at most 250ms less, which leaves the answer time to reach the caller
// even from a loaded server.
func patience(d time.Duration) time.Duration {
	return d - min(d/5, 250*time.Millisecond)
}

var errShuttingDown = failure(codes.Unavailable, "SHUTTING_DOWN", nil,
	"the printer is shutting down: the job was not accepted and will not be printed; send it again once the printer is back")

func tooManySources(max int) error {
	return failure(codes.ResourceExhausted, "TOO_MANY_SOURCES", map[string]string{"max_sources": strconv.Itoa(max)},
		"the printer already remembers %d sources (--printer-max-sources), the most it may: the message was not accepted; send jobs without a source, or from a source it knows", max)
}

// failure is a status error with a google.rpc.ErrorInfo detail, so that a program can read
// the reason and the numbers without parsing the message.
func failure(code codes.Code, reason string, meta map[string]string, format string, args ...any) error {
	st := status.Newf(code, format, args...)
	detailed, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: printerv1.PrinterService_ServiceDesc.ServiceName, Metadata: meta})
	if err != nil {
		return st.Err() // unreachable: ErrorInfo always marshals
	}
	return detailed.Err()
}

// contextError is the status for a call whose context ended: CANCELLED or DEADLINE_EXCEEDED.
func contextError(ctx context.Context) error {
	return status.FromContextError(ctx.Err()).Err()
}
