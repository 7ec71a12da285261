package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// loadResult is what a closed-loop load measured.
type loadResult struct {
	ops      int64
	elapsed  time.Duration
	p50, p99 time.Duration
}

// perSecond is the rate of successful operations.
func (r loadResult) perSecond() float64 { return float64(r.ops) / r.elapsed.Seconds() }

// overrun is how long a call may outlast the measuring window before it is cut, and fails:
// longer, it is stuck, not merely late.
const overrun = 10 * time.Second

// closedLoop runs callers goroutines that each call op back to back for a warm-up of a fifth
// of d and then for d, and measures the second part: operations and latency percentiles. It
// is the lean load generator: no per-call allocation beyond a latency entry.
//
// The window's end does not cut a call: op's context ends overrun after it, so a call in
// flight at the end finishes, and any error op returns is a real one. A load with errors
// returns one, which says how many calls failed and how the first failed.
func closedLoop(ctx context.Context, callers int, d time.Duration, op func(ctx context.Context) error) (loadResult, error) {
	warm := time.Now().Add(d / 5)
	end := warm.Add(d)
	ctx, cancel := context.WithDeadline(ctx, end.Add(overrun))
	defer cancel()
	type caller struct {
		lat    []time.Duration
		errors int64
		first  error
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
				if err != nil {
					if c.errors++; c.first == nil {
						c.first = err
					}
					continue
				}
				if start.After(warm) {
					c.lat = append(c.lat, time.Since(start))
				}
			}
		})
	}
	wg.Wait()
	var all []time.Duration
	var errors int64
	var first error
	for _, c := range results {
		all = append(all, c.lat...)
		errors += c.errors
		if first == nil {
			first = c.first
		}
	}
	r := loadResult{ops: int64(len(all)), elapsed: d, p50: percentile(all, 0.50), p99: percentile(all, 0.99)}
	if errors > 0 {
		return r, fmt.Errorf("%d calls failed, the first: %w", errors, first)
	}
	return r, nil
}

// percentile returns the p-th percentile of durations (sorting them).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(p*float64(len(d))))]
}
