package stack

import (
	"context"
	"testing"

	"google.golang.org/grpc"

	"github.com/concur-dev/concur/internal/serve"
)

type plain struct{}

func (plain) Name() string                   { return "test.Plain" }
func (plain) Register(grpc.ServiceRegistrar) {}
func (plain) Shutdown(context.Context) error { return nil }

type breakable struct {
	plain
	broken chan struct{}
}

func (b breakable) Broken() <-chan struct{} { return b.broken }

// A service wrapped to close its printer connection keeps telling when it breaks (the counter
// run with --printer-addr), and a wrapped service that cannot break never says it did.
func TestClosingKeepsBroken(t *testing.T) {
	b := breakable{broken: make(chan struct{})}
	var wrapped serve.Service = closing{b, func() error { return nil }}
	got, ok := wrapped.(serve.Breakable)
	if !ok || got.Broken() != b.broken {
		t.Fatalf("the wrapped counter's Broken is not its own")
	}
	if ch := (closing{plain{}, func() error { return nil }}).Broken(); ch != nil {
		t.Fatalf("a wrapped service that cannot break has Broken %v, want nil", ch)
	}
}
