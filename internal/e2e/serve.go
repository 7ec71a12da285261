package e2e

import (
	"context"
	"flag"
	"sync"
	"testing"

	"github.com/concur-dev/concur/internal/serve"
	"github.com/concur-dev/concur/internal/testkit"
)

// Serve runs services in this process on the real server runtime, on a free loopback port,
// with serve's flag defaults (changed by configure, if not nil). It returns the address and
// stop, which shuts the server down gracefully once, as SIGTERM does, and returns Serve's
// result; the end of the test stops it too. When the server cannot start, the services are
// shut down and the test fails.
func Serve(t testing.TB, configure func(*serve.Config), services ...serve.Service) (addr string, stop func() error) {
	t.Helper()
	var c serve.Config
	c.RegisterFlags(flag.NewFlagSet("serve", flag.ContinueOnError))
	c.Listen = "127.0.0.1:0"
	if configure != nil {
		configure(&c)
	}
	srv, err := serve.New(c, testkit.Quiet())
	if err != nil {
		for _, s := range services {
			s.Shutdown(context.Background())
		}
		t.Fatalf("serve.New: %v", err)
	}
	srv.Register(services...)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	stop = sync.OnceValue(func() error {
		cancel()
		return <-served
	})
	t.Cleanup(func() { stop() })
	return srv.Addr().String(), stop
}
