// Package recv lets a gRPC handler select on a client stream: Pump runs the stream's Recv in
// a goroutine of its own, since a blocked Recv cannot be selected on. Services use it without
// pulling in the server runtime (internal/serve).
package recv

import "context"

// Pump calls recv in a goroutine of its own, handing each message on msgs, so that a handler
// can select on a client stream beside its other events. The error that ends the stream
// (io.EOF when the client closed its side) arrives on ended. ctx is the call's context: the
// goroutine ends with the call.
func Pump[T any](ctx context.Context, recv func() (T, error)) (msgs <-chan T, ended <-chan error) {
	m := make(chan T)
	e := make(chan error, 1)
	go func() {
		for {
			v, err := recv()
			if err != nil {
				e <- err
				return
			}
			select {
			case m <- v:
			case <-ctx.Done():
				return
			}
		}
	}()
	return m, e
}
