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
// printer's. counter-forward measures that pace, end to end, against its own target.
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

// counterUnary measures unary Increment at 50 callers, durable and in memory, each next to
// the no-op unary ceiling of the same server stack, round by round.
func counterUnary(ctx context.Context, e *env) ([]figure, error) {
	var figs []figure
	for _, db := range []string{"durable", counter.Memory} {
		c, _, reg, err := e.counterClient(db, nil)
		if err != nil {
			return nil, err
		}
		req := &counterv1.IncrementRequest{}
		var lat latencies
		var perCommit, commitTime []float64 // durable: each round's group commit
		incs, ceiling, ratio, err := versus(e.rounds, func() (float64, error) {
			n0, incs0, secs0, err := commits(reg)
			if err != nil {
				return 0, err
			}
			r, err := closedLoop(ctx, unaryCallers, e.duration, func(ctx context.Context) error {
				_, err := c.Increment(ctx, req)
				return err
			})
			if err != nil {
				return 0, fmt.Errorf("load of Increment, %s: %w", db, err)
			}
			if db == "durable" {
				n1, incs1, secs1, err := commits(reg)
				if err != nil {
					return 0, err
				}
				n := float64(n1 - n0)
				perCommit, commitTime = append(perCommit, (incs1-incs0)/n), append(commitTime, (secs1-secs0)/n*1e9)
			}
			return lat.rate(r, nil)
		}, func() (float64, error) { return perSecond(e.ceiling(ctx, unaryCallers)) })
		if err != nil {
			return nil, err
		}
		f := rateOf(fmt.Sprintf("Increment, %d callers, %s", unaryCallers, db), incs, "increments")
		f.ratio, f.per = &ratio, " of no-op"
		if db == "durable" {
			f.target, f.met = ">= 0.65 of no-op", new(ratio.median >= 0.65)
		}
		figs = append(append(figs, f), lat.figures("Increment, "+db)...)
		if db == "durable" {
			figs = append(figs,
				figure{name: "durable: increments per commit", value: spreadOf(perCommit), show: fixed(1)},
				figure{name: "durable: time per commit", value: spreadOf(commitTime), show: duration})
		}
		figs = append(figs, rateOf(fmt.Sprintf("no-op unary, %d callers (the yardstick)", unaryCallers), ceiling, "calls"))
	}
	return figs, nil
}

// counterStream measures durable IncrementStream with batched messages next to Redis INCR
// with 50 clients and a pipeline of 16 on the same machine, round by round. Redis is started
// and calibrated once, the counter warmed up once; only the measures alternate.
func counterStream(ctx context.Context, e *env) ([]figure, error) {
	c, _, _, err := e.counterClient("durable", nil)
	if err != nil {
		return nil, err
	}
	msg := &counterv1.IncrementStreamRequest{Increments: make([]*counterv1.CounterIncrement, streamBatch)}
	for i := range msg.Increments {
		msg.Increments[i] = &counterv1.CounterIncrement{Name: "counter"} // delta 1, like INCR counter
	}
	redis, err := startRedis(ctx, redisVolatile, os.TempDir())
	if err != nil {
		return nil, err
	}
	defer redis.stop()
	pipelined := []string{"-c", fmt.Sprint(redisClients), "-P", fmt.Sprint(redisPipeline)}
	calibration, err := redis.incr(ctx, redisCalibrate, pipelined...)
	if err != nil {
		return nil, err
	}
	if _, _, err := streamIncrements(ctx, c, msg, e.duration/5); err != nil { // warm-up
		return nil, err
	}
	ours, yardstick, ratio, err := versus(e.rounds, func() (float64, error) {
		applied, elapsed, err := streamIncrements(ctx, c, msg, e.duration)
		return float64(applied) / elapsed.Seconds(), err
	}, func() (float64, error) {
		return redis.incr(ctx, int(calibration*e.duration.Seconds()), pipelined...)
	})
	if err != nil {
		return nil, err
	}
	f := rateOf(fmt.Sprintf("IncrementStream, durable, %d streams of messages of %s increments", streamCallers, thousands(streamBatch)), ours, "increments")
	f.ratio, f.per, f.target, f.met = &ratio, "x Redis", ">= 2x Redis", new(ratio.median >= 2)
	return []figure{f,
		rateOf(fmt.Sprintf("Redis INCR, redis-benchmark -c %d -P %d (the yardstick)", redisClients, redisPipeline), yardstick, "increments"),
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
// receipts mean that). Each round is a burst on the same counter and printer.
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
	jobs := float64(burst * streamBatch)
	var applied []float64
	printed, err := repeat(e.rounds, func() (float64, error) {
		start := time.Now()
		s, err := c.IncrementStream(ctx)
		if err != nil {
			return 0, err
		}
		for range burst {
			if s.Send(msg) != nil {
				break
			}
		}
		if _, err := s.CloseAndRecv(); err != nil {
			return 0, err
		}
		applied = append(applied, jobs/time.Since(start).Seconds())
		if _, err := c.Join(ctx, &counterv1.JoinRequest{}); err != nil {
			return 0, err
		}
		return jobs / time.Since(start).Seconds(), nil
	})
	if err != nil {
		return nil, err
	}
	f := rateOf("... and their print jobs written by the printer (Join)", printed, "jobs")
	f.target, f.met = ">= 100,000 jobs/s", new(printed.median >= 100_000)
	return []figure{rateOf(fmt.Sprintf("%s increments streamed, durable, applied", thousands(int64(jobs))), spreadOf(applied), "increments"), f}, nil
}
