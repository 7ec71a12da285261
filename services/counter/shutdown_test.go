package counter_test

import (
	"context"
	"testing"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
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
