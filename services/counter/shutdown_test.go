package counter_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	"github.com/concur-dev/concur/services/counter"
)

// Shutdown may be called more than once: after the server's, with a printer to drain to, or
// twice on a counter that never served, with every Deps left zero.
func TestShutdownTwice(t *testing.T) {
	noLeaks(t)
	p := startPrinterDouble(t)
	s := startCounter(t, config(t), counter.Deps{Printer: printerClient(t, p.addr)})
	if _, err := s.client.Increment(context.Background(), &counterv1.IncrementRequest{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := s.stop(); err != nil {
		t.Fatalf("the server's shutdown: %v", err)
	}
	if err := s.svc.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown after the server's: %v", err)
	}
	cfg := config(t)
	cfg.DB = counter.Memory
	svc, err := counter.New(cfg, counter.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := svc.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown #%d: %v", i+1, err)
		}
	}
}

// awayPrinter is a printer that is never reached: a stream waits for it until its context ends.
type awayPrinter struct{ streams atomic.Int64 }

func (p *awayPrinter) PrintStream(ctx context.Context, _ ...grpc.CallOption) (grpc.BidiStreamingClient[printerv1.PrintStreamRequest, printerv1.PrintStreamResponse], error) {
	p.streams.Add(1)
	<-ctx.Done()
	return nil, status.FromContextError(ctx.Err()).Err()
}

// A counter with nothing to print never waits for its printer: it opens no stream, and its
// Shutdown, with the printer away, does not wait out the forwarder's patience. A cluster node
// giving up a shard while the printer is away relies on it.
func TestShutdownWithNothingToPrintWaitsForNoPrinter(t *testing.T) {
	noLeaks(t)
	cfg := config(t)
	cfg.DB = counter.Memory
	p := &awayPrinter{}
	svc, err := counter.New(cfg, counter.Deps{Printer: p})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // what a stream would wait for
	defer cancel()
	if err := svc.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if n := p.streams.Load(); n != 0 {
		t.Errorf("the forwarder opened %d streams to a printer it had nothing to send", n)
	}
}
