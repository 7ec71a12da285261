package counterroute_test

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"testing"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	"github.com/concur-dev/concur/internal/counterroute"
	"github.com/concur-dev/concur/internal/dial"
	"github.com/concur-dev/concur/internal/e2e"
	"github.com/concur-dev/concur/internal/testkit"
	"github.com/concur-dev/concur/services/counter"
)

// embedded serves a fresh embedded counter, in memory, on the real server runtime.
func embedded(t *testing.T) string {
	t.Helper()
	var cfg counter.Config
	cfg.RegisterFlags(flag.NewFlagSet("", flag.ContinueOnError))
	cfg.DB = counter.Memory
	svc, err := counter.New(cfg, counter.Deps{Log: testkit.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := e2e.Serve(t, nil, svc)
	return addr
}

// script makes the same calls through c, and returns every answer and error as text (the
// same text for the same answer within one process).
func script(t *testing.T, c counterv1.CounterServiceClient) []string {
	t.Helper()
	ctx := t.Context()
	var out []string
	add := func(m proto.Message, err error) {
		if err != nil {
			out = append(out, status.Convert(err).String())
			return
		}
		out = append(out, fmt.Sprint(m))
	}
	add(c.Shards(ctx, &counterv1.ShardsRequest{}))
	add(c.Increment(ctx, &counterv1.IncrementRequest{}))
	add(c.Increment(ctx, &counterv1.IncrementRequest{Name: "apples", Delta: new(int64(5)), RequestId: "r1"}))
	add(c.Increment(ctx, &counterv1.IncrementRequest{Name: "apples", Delta: new(int64(5)), RequestId: "r1"}))
	add(c.Increment(ctx, &counterv1.IncrementRequest{Name: "apples", Delta: new(int64(7)), RequestId: "r1"}))
	add(c.Increment(ctx, &counterv1.IncrementRequest{Delta: new(int64(0))}))
	add(c.Get(ctx, &counterv1.GetRequest{Name: "apples"}))
	add(c.Get(ctx, &counterv1.GetRequest{Name: "a\nb"}))
	s, err := c.IncrementStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*counterv1.IncrementStreamRequest{
		{Increments: []*counterv1.CounterIncrement{{Name: "pears"}, {Name: "apples"}}},
		{Increments: []*counterv1.CounterIncrement{{}}},
	} {
		if err := s.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	add(s.CloseAndRecv())
	s, err = c.IncrementStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&counterv1.IncrementStreamRequest{}); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	add(s.CloseAndRecv())
	add(c.Join(ctx, &counterv1.JoinRequest{}))
	w, err := c.Watch(ctx, &counterv1.WatchRequest{Name: "apples"})
	if err != nil {
		t.Fatal(err)
	}
	add(w.Recv())
	return out
}

// Against an embedded counter, whose map is one shard without an owner, the client answers
// exactly what a plain client does, errors included.
func TestEmbeddedCounterIsAPlainClient(t *testing.T) {
	conn := e2e.Dial(t, embedded(t))
	m, err := counterv1.NewCounterServiceClient(conn).Shards(t.Context(), &counterv1.ShardsRequest{})
	if err != nil || m.GetShards() != 1 || len(m.GetOwners()) != 1 || m.GetOwners()[0] != "" {
		t.Errorf("an embedded counter's map is %v, %v; want one shard without an owner", m, err)
	}
	plain := script(t, counterv1.NewCounterServiceClient(conn))
	c, err := counterroute.New(counterroute.Config{Seed: dial.Config{Addr: embedded(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	routed := script(t, c)
	if fmt.Sprint(plain) != fmt.Sprint(routed) {
		t.Errorf("the answers differ:\nplain  %q\nrouted %q", plain, routed)
	}
}
