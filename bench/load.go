package main

import (
	"context"
	"slices"
	"sync"
	"time"
)

// loadResult is what a closed-loop load measured.
type loadResult struct {
	ops      int64
	errors   int64
	elapsed  time.Duration
	p50, p99 time.Duration
}

// perSecond is the rate of successful operations.
func (r loadResult) perSecond() float64 { return float64(r.ops) / r.elapsed.Seconds() }

// closedLoop runs callers goroutines that each call op back to back for a warm-up of a fifth
// of d and then for d, and measures the second part: operations, errors and latency
// percentiles. It is the lean load generator: no per-call allocation beyond a latency entry.
func closedLoop(ctx context.Context, callers int, d time.Duration, op func(ctx context.Context) error) loadResult {
	warm := time.Now().Add(d / 5)
	end := warm.Add(d)
	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	type caller struct {
		lat    []time.Duration
		errors int64
	}
	results := make([]caller, callers)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			c := &results[i]
			c.lat = make([]time.Duration, 0, 1<<16)
			for {
				start := time.Now()
				if start.After(end) {
					return
				}
				err := op(ctx)
				if start.Before(warm) {
					continue
				}
				if err != nil {
					if ctx.Err() == nil {
						c.errors++
					}
					continue
				}
				c.lat = append(c.lat, time.Since(start))
			}
		})
	}
	wg.Wait()
	var all []time.Duration
	var r loadResult
	for _, c := range results {
		all = append(all, c.lat...)
		r.errors += c.errors
	}
	r.ops, r.elapsed = int64(len(all)), d
	r.p50, r.p99 = percentile(all, 0.50), percentile(all, 0.99)
	return r
}

// percentile returns the p-th percentile of durations (sorting them).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(p*float64(len(d))))]
}
