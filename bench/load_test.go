package main

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// A call still running when the window ends is no error: the end of the window does not cut
// it. (gRPC cuts a call at its context's deadline on its own timer, an instant before the
// context reports its end: the fake call does the same.)
func TestClosedLoopLetsTheLastCallsFinish(t *testing.T) {
	const call = 7 * time.Millisecond
	r, err := closedLoop(context.Background(), 3, 20*time.Millisecond, func(ctx context.Context) error {
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < call {
			time.Sleep(time.Until(deadline) - time.Millisecond)
			return errors.New("cut at the deadline")
		}
		time.Sleep(call)
		return nil
	})
	if err != nil || r.ops == 0 {
		t.Errorf("closedLoop = %d operations, %v; want some, and no error", r.ops, err)
	}
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
