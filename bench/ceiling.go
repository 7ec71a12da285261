package main

import "context"

func init() {
	register("ceiling", "the no-op unary RPC at 50 callers: the yardstick of the unary figures, shown on its own", func(ctx context.Context, e *env) ([]figure, error) {
		var lat latencies
		calls, err := repeat(e.rounds, func() (float64, error) { return lat.rate(e.ceiling(ctx, 50)) })
		if err != nil {
			return nil, err
		}
		return append([]figure{rateOf("no-op unary, 50 callers", calls, "calls")}, lat.figures("no-op unary")...), nil
	})
}
