package counter

import (
	"testing"
	"time"
)

// The oldest job's time is that of the commit that added it, as acknowledgements take jobs
// off the front of the outbox and commits add them at its end.
func TestOutboxAge(t *testing.T) {
	t0 := time.Unix(1000, 0)
	jobs := func(from, to uint64) []printJob {
		var js []printJob
		for seq := from; seq <= to; seq++ {
			js = append(js, printJob{seq: seq})
		}
		return js
	}
	var a outboxAge
	for i, step := range []struct {
		outbox []printJob
		at     time.Duration // when the owner publishes
		want   time.Duration // the oldest job's time; -1 for an empty outbox
	}{
		{jobs(1, 3), 0, 0},
		{jobs(1, 5), time.Second, 0},     // 4 and 5 committed at 1s
		{jobs(3, 5), 2 * time.Second, 0}, // 3 is still from the first commit
		{jobs(4, 5), 3 * time.Second, time.Second},
		{jobs(5, 6), 4 * time.Second, time.Second}, // 6 committed at 4s
		{jobs(6, 6), 5 * time.Second, 4 * time.Second},
		{nil, 6 * time.Second, -1},
		{jobs(7, 7), 7 * time.Second, 7 * time.Second},
	} {
		a.update(step.outbox, t0.Add(step.at))
		want := t0.Add(step.want).UnixNano()
		if step.want < 0 {
			want = 0
		}
		if got := a.at.Load(); got != want {
			t.Errorf("step %d: the oldest job's time is %v, want %v", i, time.Unix(0, got).Sub(t0), step.want)
		}
	}
}
