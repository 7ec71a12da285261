package main

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// A call still running when the window ends is no error: the end of the window does not cut
// it. (gRPC cuts a call at its context's deadline on its own timer, an instant before the
// context reports its end: the fake call does the same.) On synctest's clock the calls take
// exactly their time: each caller starts calls at 0, 7, 14 and 21ms; the window is 4 to 24ms,
// so the calls from 7ms on count, the last of them ending after the window.
func TestClosedLoopLetsTheLastCallsFinish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const call = 7 * time.Millisecond
		r, err := closedLoop(context.Background(), 3, 20*time.Millisecond, func(ctx context.Context) error {
			if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < call {
				time.Sleep(time.Until(deadline) - time.Millisecond)
				return errors.New("cut at the deadline")
			}
			time.Sleep(call)
			return nil
		})
		if err != nil || r.ops != 3*3 || r.p50 != call || r.p99 != call {
			t.Errorf("closedLoop = %d operations, p50 %v, p99 %v, %v; want 9 of %v, and no error", r.ops, r.p50, r.p99, err, call)
		}
	})
}

func TestClosedLoopReportsErrors(t *testing.T) {
	boom := errors.New("boom")
	var n int
	_, err := closedLoop(context.Background(), 1, 10*time.Millisecond, func(context.Context) error {
		if n++; n%2 == 0 {
			return fmt.Errorf("call %d: %w", n, boom)
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Errorf("closedLoop returned %v, want an error wrapping %v", err, boom)
	}
}
