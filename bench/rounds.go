package main

import (
	"slices"
	"time"
)

// The machines the bench runs on are shared and noisy: a figure measured now and its
// yardstick measured a minute later compare two different machines. So every figure is
// measured in rounds, each next to its yardstick, and the table shows the median and the
// range over the rounds; a target is judged on the median.

// spread is a figure over the rounds: its median and its range.
type spread struct {
	median, min, max float64
	n                int // rounds
}

// spreadOf returns the median (of the middle two, for an even number) and the range of xs.
func spreadOf(xs []float64) spread {
	if len(xs) == 0 {
		return spread{}
	}
	s := slices.Sorted(slices.Values(xs))
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + m) / 2
	}
	return spread{median: m, min: s[0], max: s[len(s)-1], n: len(s)}
}

// versus measures a figure next to its yardstick, rounds times, alternating: figure,
// yardstick, figure, yardstick... so that each round's ratio compares two moments of the
// machine as close as can be. It returns the spreads of the figure, of the yardstick, and of
// their ratio round by round, and stops at the first error.
func versus(rounds int, figure, yardstick func() (float64, error)) (fig, yard, ratio spread, err error) {
	var fs, ys, rs []float64
	for range rounds {
		f, err := figure()
		if err != nil {
			return fig, yard, ratio, err
		}
		y, err := yardstick()
		if err != nil {
			return fig, yard, ratio, err
		}
		fs, ys, rs = append(fs, f), append(ys, y), append(rs, f/y)
	}
	return spreadOf(fs), spreadOf(ys), spreadOf(rs), nil
}

// repeat measures a figure that has no yardstick, rounds times.
func repeat(rounds int, figure func() (float64, error)) (spread, error) {
	var fs []float64
	for range rounds {
		f, err := figure()
		if err != nil {
			return spread{}, err
		}
		fs = append(fs, f)
	}
	return spreadOf(fs), nil
}

// perSecond is a load's rate of successful calls, for versus and repeat.
func perSecond(r loadResult, err error) (float64, error) { return r.perSecond(), err }

// secondsOf is a duration in seconds, for versus and repeat.
func secondsOf(d time.Duration, err error) (float64, error) { return d.Seconds(), err }

// latencies keeps the p50 and p99 of the loads of a figure's rounds, to show beside it.
type latencies struct{ p50, p99 []float64 }

// rate records r's latencies and returns its rate.
func (l *latencies) rate(r loadResult, err error) (float64, error) {
	l.p50, l.p99 = append(l.p50, float64(r.p50)), append(l.p99, float64(r.p99))
	return perSecond(r, err)
}

// figures are the rows of the latencies of what: "what, latency p50" and p99.
func (l *latencies) figures(what string) []figure {
	return []figure{
		{name: what + ", latency p50", value: spreadOf(l.p50), show: duration},
		{name: what + ", latency p99", value: spreadOf(l.p99), show: duration},
	}
}
