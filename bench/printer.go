package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	"github.com/concur-dev/concur/internal/jitter"
	"github.com/concur-dev/concur/services/printer"
)

func init() {
	register("printer stream", printerStream)
	register("printer unary", printerUnary)
	register("printer join", printerJoin)
}

// The talk's print job: the count, then a rule.
func countJob(n int64) []string {
	return []string{"The count is " + strconv.FormatInt(n, 10), "---------------"}
}

// printerServer serves a printer with its default flags, writing to a file in a fresh
// folder and not to stdout, and returns a client for it.
func (e *env) printerServer() (printerv1.PrinterServiceClient, error) {
	dir, err := os.MkdirTemp("", "concur-bench-printer-")
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, func() { os.RemoveAll(dir) })
	var cfg printer.Config
	cfg.RegisterFlags(flag.NewFlagSet("printer", flag.ContinueOnError))
	cfg.File, cfg.Stdout = filepath.Join(dir, "out.txt"), false
	p, err := printer.New(cfg, printer.Deps{Stdout: io.Discard, Jitter: jitter.New(0), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	_, conn, err := e.server(p)
	if err != nil {
		p.Shutdown(context.Background())
		return nil, err
	}
	return printerv1.NewPrinterServiceClient(conn), nil
}

// printerStream measures how fast one PrintStream gets jobs written to a file: a sender keeps
// messages of 100 two-line jobs flowing for the duration, then Join waits for the last to be
// written and flushed to disk; the rate counts from the first job to the end of that Join.
func printerStream(ctx context.Context, e *env) ([]figure, error) {
	client, err := e.printerServer()
	if err != nil {
		return nil, err
	}
	const perMessage = 100
	run := func(d time.Duration) (jobs int64, elapsed time.Duration, err error) {
		stream, err := client.PrintStream(ctx)
		if err != nil {
			return 0, 0, err
		}
		var acked atomic.Int64
		received := make(chan error, 1)
		go func() {
			for {
				resp, err := stream.Recv()
				if err != nil {
					if errors.Is(err, io.EOF) {
						err = nil
					}
					received <- err
					return
				}
				acked.Add(int64(len(resp.GetReceipts())))
			}
		}()
		start := time.Now()
		for n := int64(0); time.Since(start) < d; {
			req := &printerv1.PrintStreamRequest{Jobs: make([]*printerv1.PrintJob, perMessage)}
			for i := range req.Jobs {
				n++
				req.Jobs[i] = &printerv1.PrintJob{Lines: countJob(n)}
			}
			if err := stream.Send(req); err != nil {
				return 0, 0, err
			}
		}
		if err := errors.Join(stream.CloseSend(), <-received); err != nil {
			return 0, 0, err
		}
		if _, err := client.Join(ctx, &printerv1.JoinRequest{}); err != nil {
			return 0, 0, err
		}
		return acked.Load(), time.Since(start), nil
	}
	if _, _, err := run(e.duration / 5); err != nil { // warm-up
		return nil, err
	}
	jobs, elapsed, err := run(e.duration)
	if err != nil {
		return nil, err
	}
	lines := float64(2*jobs) / elapsed.Seconds()
	return []figure{
		{name: "PrintStream to a file, 100 jobs a message", value: rate(float64(jobs)/elapsed.Seconds(), "jobs")},
		{name: "PrintStream to a file, lines written", value: rate(lines, "lines"), target: ">= 300,000 lines/s", met: new(lines >= 300_000)},
	}, nil
}

// printerUnary measures Print at 50 callers against the no-op unary ceiling of the same run.
func printerUnary(ctx context.Context, e *env) ([]figure, error) {
	ceiling, err := e.ceiling(ctx, 50)
	if err != nil {
		return nil, err
	}
	client, err := e.printerServer()
	if err != nil {
		return nil, err
	}
	var n atomic.Int64
	r := closedLoop(ctx, 50, e.duration, func(ctx context.Context) error {
		// Without the window's deadline: a call cut by the end of the window is no error.
		_, err := client.Print(context.WithoutCancel(ctx), &printerv1.PrintRequest{Lines: countJob(n.Add(1))})
		return err
	})
	if r.errors > 0 {
		return nil, fmt.Errorf("%d Prints failed", r.errors)
	}
	ratio := r.perSecond() / ceiling.perSecond()
	return []figure{
		{name: "Print to a file, 50 callers", value: rate(r.perSecond(), "calls"), ratio: fmt.Sprintf("%.2f of no-op", ratio), target: ">= 0.80 of no-op", met: new(ratio >= 0.80)},
		{name: "Print latency p50 / p99", value: latency(r)},
	}, nil
}

// printerJoin measures Join with nothing queued: one caller, back to back.
func printerJoin(ctx context.Context, e *env) ([]figure, error) {
	client, err := e.printerServer()
	if err != nil {
		return nil, err
	}
	if _, err := client.Print(ctx, &printerv1.PrintRequest{Lines: countJob(1)}); err != nil {
		return nil, err
	}
	r := closedLoop(ctx, 1, e.duration, func(ctx context.Context) error {
		_, err := client.Join(context.WithoutCancel(ctx), &printerv1.JoinRequest{})
		return err
	})
	if r.errors > 0 {
		return nil, fmt.Errorf("%d Joins failed", r.errors)
	}
	return []figure{
		{name: "Join on an empty queue p50 / p99", value: latency(r), target: "p50 < 1ms", met: new(r.p50 < time.Millisecond)},
	}, nil
}
