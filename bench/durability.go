package main

import (
	"context"
	"fmt"
	"os"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	"github.com/concur-dev/concur/services/counter"
)

func init() {
	register("counter-durability", "what durability costs the counter's unary Increment, next to what it costs Redis (needs redis-server)", counterDurability)
}

// counterDurability compares the cost of durability: the durable counter's unary Increment
// over the in-memory counter's, against Redis with an append-only file synced on every write
// (appendfsync always) over Redis keeping nothing, all at 50 callers (Redis: 50 clients, no
// pipeline) and all four measured in each round, one after the other. The target: the
// counter keeps at least 0.8 of what Redis keeps of its speed.
func counterDurability(ctx context.Context, e *env) ([]figure, error) {
	durable, _, _, err := e.counterClient("durable", nil)
	if err != nil {
		return nil, err
	}
	memory, _, _, err := e.counterClient(counter.Memory, nil)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "concur-bench-redis-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	fsynced, err := startRedis(ctx, redisFsync, dir)
	if err != nil {
		return nil, err
	}
	defer fsynced.stop()
	volatile, err := startRedis(ctx, redisVolatile, dir)
	if err != nil {
		return nil, err
	}
	defer volatile.stop()
	clients := []string{"-c", fmt.Sprint(unaryCallers)}
	increment := func(c counterv1.CounterServiceClient) func() (float64, error) {
		return func() (float64, error) {
			return perSecond(closedLoop(ctx, unaryCallers, e.duration, func(ctx context.Context) error {
				_, err := c.Increment(ctx, &counterv1.IncrementRequest{})
				return err
			}))
		}
	}
	// redis-benchmark runs a number of requests, not a time: each Redis is calibrated once
	// so that a round of it lasts about as long as the counter's.
	incr := func(r *redisServer) (func() (float64, error), error) {
		rate, err := r.incr(ctx, 20_000, clients...)
		if err != nil {
			return nil, err
		}
		return func() (float64, error) { return r.incr(ctx, int(rate*e.duration.Seconds()), clients...) }, nil
	}
	redisFsynced, err := incr(fsynced)
	if err != nil {
		return nil, err
	}
	redisVolatileIncr, err := incr(volatile)
	if err != nil {
		return nil, err
	}
	measures := []func() (float64, error){increment(durable), increment(memory), redisFsynced, redisVolatileIncr}
	rates := make([][]float64, len(measures))
	var ours, theirs, ratio []float64
	for range e.rounds {
		round := make([]float64, len(measures))
		for i, m := range measures {
			if round[i], err = m(); err != nil {
				return nil, err
			}
			rates[i] = append(rates[i], round[i])
		}
		kept, redisKept := round[0]/round[1], round[2]/round[3]
		ours, theirs, ratio = append(ours, kept), append(theirs, redisKept), append(ratio, kept/redisKept)
	}
	r := spreadOf(ratio)
	kept := figure{name: "counter: durable / :memory: Increment", value: spreadOf(ours), show: fixed(2),
		ratio: &r, per: "x Redis's", target: ">= 0.80x Redis's", met: new(r.median >= 0.8)}
	return []figure{
		kept,
		{name: "Redis: appendfsync always / no persistence INCR (the yardstick)", value: spreadOf(theirs), show: fixed(2)},
		rateOf(fmt.Sprintf("Increment, %d callers, durable", unaryCallers), spreadOf(rates[0]), "increments"),
		rateOf(fmt.Sprintf("Increment, %d callers, :memory:", unaryCallers), spreadOf(rates[1]), "increments"),
		rateOf(fmt.Sprintf("Redis INCR, %d clients, appendfsync always", unaryCallers), spreadOf(rates[2]), "increments"),
		rateOf(fmt.Sprintf("Redis INCR, %d clients, no persistence", unaryCallers), spreadOf(rates[3]), "increments"),
	}, nil
}
