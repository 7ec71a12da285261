package recv_test

import (
	"context"
	"io"
	"slices"
	"testing"

	"github.com/concur-dev/concur/internal/recv"
	"github.com/concur-dev/concur/internal/testkit"
)

// Pump hands the messages on in order, then the error that ended the stream.
func TestPumpInOrderThenEnd(t *testing.T) {
	testkit.NoLeaks(t)
	sent := []int{1, 2, 3}
	i := 0
	msgs, ended := recv.Pump(t.Context(), func() (int, error) {
		if i == len(sent) {
			return 0, io.EOF
		}
		i++
		return sent[i-1], nil
	})
	var got []int
	for range sent {
		got = append(got, <-msgs)
	}
	if err := <-ended; err != io.EOF || !slices.Equal(got, sent) {
		t.Fatalf("got %v then %v, want %v then EOF", got, err, sent)
	}
}

// The receiving goroutine ends with the call even when nobody takes its message.
func TestPumpEndsWithTheCall(t *testing.T) {
	testkit.NoLeaks(t)
	ctx, cancel := context.WithCancel(t.Context())
	received := make(chan struct{})
	recv.Pump(ctx, func() (string, error) {
		close(received)
		return "never taken", nil
	})
	<-received
	cancel()
}
