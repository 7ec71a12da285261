package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	"github.com/concur-dev/concur/services/counter"
)

// counter-unary and counter-stream run the counter without a printer: their figures are the
// counter's own (the owner, group commit, the disk), and Redis INCR, the yardstick, prints
// nothing either; with a printer, every increment is a print job and the pace is the
// printer's. counter-forward measures that pace, end to end, without a target.
func init() {
	register("counter-unary", "unary Increment at 50 callers, durable and in memory, against the no-op unary ceiling", counterUnary)
	register("counter-stream", "durable IncrementStream in batches against Redis INCR pipelined (needs redis-server)", counterStream)
	register("counter-forward", "a burst of increments forwarded to a printer, until Join says every job is written", counterForward)
}

const (
	streamCallers  = 4    // concurrent IncrementStream calls
	streamBatch    = 1000 // increments per IncrementStreamRequest
	unaryCallers   = 50
	redisClients   = 50
	redisPipeline  = 16
	redisCalibrate = 200_000 // requests of redis-benchmark's warm-up, which also sizes the measured run
)

// counterClient starts a counter on db (a file in a fresh folder unless counter.Memory),
// forwarding to printer if not nil, on the bench's server, and returns a client, the
// counter's configuration and its metrics.
func (e *env) counterClient(db string, printer counter.Printer) (counterv1.CounterServiceClient, counter.Config, *prometheus.Registry, error) {
	var cfg counter.Config
	cfg.RegisterFlags(flag.NewFlagSet("bench", flag.ContinueOnError))
	cfg.DB = db
	if db != counter.Memory {
		dir, err := os.MkdirTemp("", "concur-bench-")
		if err != nil {
			return nil, cfg, nil, err
		}
		e.closers = append(e.closers, func() { os.RemoveAll(dir) })
		cfg.DB = filepath.Join(dir, "counter.db")
	}
	reg := prometheus.NewRegistry()
	svc, err := counter.New(cfg, counter.Deps{Printer: printer, Metrics: reg})
	if err != nil {
		return nil, cfg, nil, err
	}
	_, conn, err := e.server(svc)
	if err != nil {
		svc.Shutdown(context.Background())
		return nil, cfg, nil, err
	}
	return counterv1.NewCounterServiceClient(conn), cfg, reg, nil
}

// commits reads from the counter's metrics how many commits it made, how many increments
// they carried and how long they took in all, so that a figure can show the group commit.
func commits(reg *prometheus.Registry) (n uint64, increments, seconds float64, err error) {
	families, err := reg.Gather()
	if err != nil {
		return 0, 0, 0, err
	}
	for _, f := range families {
		switch m := f.GetMetric()[0]; f.GetName() {
		case "concur_counter_commit_seconds":
			n, seconds = m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
		case "concur_counter_increments_total":
			increments = m.GetCounter().GetValue()
		}
	}
	return n, increments, seconds, nil
}

// counterUnary measures unary Increment at 50 callers, durable and in memory, against the
// no-op unary ceiling of the same server stack.
func counterUnary(ctx context.Context, e *env) ([]figure, error) {
	ceiling, err := e.ceiling(ctx, unaryCallers)
	if err != nil {
		return nil, err
	}
	var figs []figure
	for _, db := range []string{"durable", counter.Memory} {
		c, _, reg, err := e.counterClient(db, nil)
		if err != nil {
			return nil, err
		}
		req := &counterv1.IncrementRequest{}
		r, err := closedLoop(ctx, unaryCallers, e.duration, func(ctx context.Context) error {
			_, err := c.Increment(ctx, req)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("load of Increment, %s: %w", db, err)
		}
		ratio := r.perSecond() / ceiling.perSecond()
		f := figure{name: fmt.Sprintf("Increment, %d callers, %s", unaryCallers, db), value: rate(r.perSecond(), "increments"),
			ratio: fmt.Sprintf("%.2f of no-op", ratio)}
		if db == "durable" {
			f.target, f.met = ">= 0.80 of no-op", new(ratio >= 0.8)
		}
		figs = append(figs, f, figure{name: fmt.Sprintf("Increment latency p50 / p99, %s", db), value: latency(r)})
		if db == "durable" {
			n, incs, secs, err := commits(reg)
			if err != nil {
				return nil, err
			}
			figs = append(figs, figure{name: "durable: group commit",
				value: fmt.Sprintf("%.1f increments per commit, %v per commit", incs/float64(n), time.Duration(secs/float64(n)*1e9).Round(time.Microsecond))})
		}
	}
	return append(figs, figure{name: fmt.Sprintf("no-op unary, %d callers (the ceiling)", unaryCallers), value: rate(ceiling.perSecond(), "calls")}), nil
}

// counterStream measures durable IncrementStream with batched messages beside Redis INCR
// with 50 clients and a pipeline of 16 on the same machine, in the same run.
func counterStream(ctx context.Context, e *env) ([]figure, error) {
	c, _, _, err := e.counterClient("durable", nil)
	if err != nil {
		return nil, err
	}
	msg := &counterv1.IncrementStreamRequest{Increments: make([]*counterv1.CounterIncrement, streamBatch)}
	for i := range msg.Increments {
		msg.Increments[i] = &counterv1.CounterIncrement{Name: "counter"} // delta 1, like INCR counter
	}
	if _, _, err := streamIncrements(ctx, c, msg, e.duration/5); err != nil { // warm-up
		return nil, err
	}
	applied, elapsed, err := streamIncrements(ctx, c, msg, e.duration)
	if err != nil {
		return nil, err
	}
	ours := float64(applied) / elapsed.Seconds()

	redis, err := startRedis(ctx)
	if err != nil {
		return nil, err
	}
	defer redis.stop()
	pipelined := []string{"-c", fmt.Sprint(redisClients), "-P", fmt.Sprint(redisPipeline)}
	calibration, err := redis.incr(ctx, redisCalibrate, pipelined...)
	if err != nil {
		return nil, err
	}
	yardstick, err := redis.incr(ctx, int(calibration*e.duration.Seconds()), pipelined...)
	if err != nil {
		return nil, err
	}
	ratio := ours / yardstick
	return []figure{
		{name: fmt.Sprintf("IncrementStream, durable, %d streams of messages of %s increments", streamCallers, thousands(streamBatch)),
			value: rate(ours, "increments"), ratio: fmt.Sprintf("%.2fx Redis", ratio), target: ">= 2x Redis", met: new(ratio >= 2)},
		{name: fmt.Sprintf("Redis INCR, redis-benchmark -c %d -P %d (the yardstick)", redisClients, redisPipeline), value: rate(yardstick, "increments")},
	}, nil
}

// streamIncrements sends msg over streamCallers IncrementStream calls, back to back, for d,
// and returns how many increments the counter confirmed and the time until it confirmed the
// last.
func streamIncrements(ctx context.Context, c counterv1.CounterServiceClient, msg *counterv1.IncrementStreamRequest, d time.Duration) (uint64, time.Duration, error) {
	start := time.Now()
	end := start.Add(d)
	var applied atomic.Uint64
	errs := make([]error, streamCallers)
	var wg sync.WaitGroup
	for i := range streamCallers {
		wg.Go(func() {
			s, err := c.IncrementStream(ctx)
			if err != nil {
				errs[i] = err
				return
			}
			for time.Now().Before(end) {
				if s.Send(msg) != nil {
					break // CloseAndRecv has the status
				}
			}
			sum, err := s.CloseAndRecv()
			errs[i] = err
			applied.Add(sum.GetApplied())
		})
	}
	wg.Wait()
	if err := slices.IndexFunc(errs, func(err error) bool { return err != nil }); err >= 0 {
		return 0, 0, fmt.Errorf("IncrementStream: %w", errs[err])
	}
	return applied.Load(), time.Since(start), nil
}

// counterForward measures the counter forwarding to a printer in the same server (the
// printer's file sink, no stdout): a burst of increments that the outbox can hold, streamed,
// then Join, which answers once the printer has written and fsynced every print job (its
// receipts mean that).
func counterForward(ctx context.Context, e *env) ([]figure, error) {
	p, err := e.printerServer()
	if err != nil {
		return nil, err
	}
	c, cfg, _, err := e.counterClient("durable", p)
	if err != nil {
		return nil, err
	}
	msg := &counterv1.IncrementStreamRequest{Increments: make([]*counterv1.CounterIncrement, streamBatch)}
	for i := range msg.Increments {
		msg.Increments[i] = &counterv1.CounterIncrement{}
	}
	burst := cfg.OutboxMax / streamBatch * 9 / 10
	start := time.Now()
	s, err := c.IncrementStream(ctx)
	if err != nil {
		return nil, err
	}
	for range burst {
		if s.Send(msg) != nil {
			break
		}
	}
	if _, err := s.CloseAndRecv(); err != nil {
		return nil, err
	}
	applied := time.Since(start)
	if _, err := c.Join(ctx, &counterv1.JoinRequest{}); err != nil {
		return nil, err
	}
	printed := time.Since(start)
	jobs := float64(burst * streamBatch)
	return []figure{
		{name: fmt.Sprintf("%s increments streamed, durable, applied", thousands(int64(jobs))), value: rate(jobs/applied.Seconds(), "increments")},
		{name: "... and their print jobs written by the printer (Join)", value: rate(jobs/printed.Seconds(), "jobs"), target: ">= 100,000 jobs/s", met: new(jobs/printed.Seconds() >= 100_000)},
	}, nil
}
