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
	register("printer stream", "one PrintStream of 100-job messages to a file, until Join says all is written", printerStream)
	register("printer unary", "unary Print to a file at 50 callers, against the no-op unary ceiling", printerUnary)
	register("printer join", "Join with nothing queued, one caller back to back: its latency", printerJoin)
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
	var jobs []float64
	lines, err := repeat(e.rounds, func() (float64, error) {
		n, elapsed, err := run(e.duration)
		jobs = append(jobs, float64(n)/elapsed.Seconds())
		return float64(2*n) / elapsed.Seconds(), err
	})
	if err != nil {
		return nil, err
	}
	f := rateOf("PrintStream to a file, lines written", lines, "lines")
	f.target, f.met = ">= 300,000 lines/s", new(lines.median >= 300_000)
	return []figure{rateOf("PrintStream to a file, 100 jobs a message", spreadOf(jobs), "jobs"), f}, nil
}

// printerUnary measures Print at 50 callers next to the no-op unary ceiling, round by round.
func printerUnary(ctx context.Context, e *env) ([]figure, error) {
	client, err := e.printerServer()
	if err != nil {
		return nil, err
	}
	var n atomic.Int64
	var lat latencies
	calls, ceiling, ratio, err := versus(e.rounds, func() (float64, error) {
		r, err := closedLoop(ctx, 50, e.duration, func(ctx context.Context) error {
			_, err := client.Print(ctx, &printerv1.PrintRequest{Lines: countJob(n.Add(1))})
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("load of Print: %w", err)
		}
		return lat.rate(r, nil)
	}, func() (float64, error) { return perSecond(e.ceiling(ctx, 50)) })
	if err != nil {
		return nil, err
	}
	f := rateOf("Print to a file, 50 callers", calls, "calls")
	f.ratio, f.per, f.target, f.met = &ratio, " of no-op", ">= 0.80 of no-op", new(ratio.median >= 0.80)
	return append(append([]figure{f}, lat.figures("Print")...), rateOf("no-op unary, 50 callers (the yardstick)", ceiling, "calls")), nil
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
	var lat latencies
	joins, err := repeat(e.rounds, func() (float64, error) {
		r, err := closedLoop(ctx, 1, e.duration, func(ctx context.Context) error {
			_, err := client.Join(ctx, &printerv1.JoinRequest{})
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("load of Join: %w", err)
		}
		return lat.rate(r, nil)
	})
	if err != nil {
		return nil, err
	}
	figs := lat.figures("Join on an empty queue")
	figs[0].target, figs[0].met = "< 1ms", new(spreadOf(lat.p50).median < float64(time.Millisecond))
	return append([]figure{rateOf("Join on an empty queue, 1 caller", joins, "joins")}, figs...), nil
}
