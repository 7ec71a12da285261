package main

import "context"

func init() {
	register("ceiling", "the no-op unary RPC at 50 callers: the yardstick of the unary figures, shown on its own", func(ctx context.Context, e *env) ([]figure, error) {
		r, err := e.ceiling(ctx, 50)
		if err != nil {
			return nil, err
		}
		return []figure{
			{name: "no-op unary, 50 callers", value: rate(r.perSecond(), "calls")},
			{name: "no-op unary latency p50 / p99", value: latency(r)},
		}, nil
	})
}
