package counterroute_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	"github.com/concur-dev/concur/internal/counterroute"
	"github.com/concur-dev/concur/internal/dial"
	"github.com/concur-dev/concur/internal/e2e"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// node is a CounterService that answers every call with its own name, so that a test sees
// where a call landed, and serves the shard map it is given.
type node struct {
	counterv1.UnimplementedCounterServiceServer
	name        string
	addr        string
	shards      atomic.Pointer[counterv1.ShardsResponse] // nil: no Shards, as an older server
	unavailable atomic.Bool                              // answer every call UNAVAILABLE
	open        atomic.Int64                             // connections open to it
}

func startNode(t *testing.T, name string) *node {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &node{name: name, addr: lis.Addr().String()}
	srv := grpc.NewServer()
	counterv1.RegisterCounterServiceServer(srv, n)
	go srv.Serve(&countingListener{Listener: lis, open: &n.open})
	t.Cleanup(srv.Stop)
	return n
}

func (n *node) refuse() error {
	if n.unavailable.Load() {
		return status.Errorf(codes.Unavailable, "%s is going away", n.name)
	}
	return nil
}

func (n *node) Increment(context.Context, *counterv1.IncrementRequest) (*counterv1.IncrementResponse, error) {
	return &counterv1.IncrementResponse{Name: n.name}, n.refuse()
}

func (n *node) Get(context.Context, *counterv1.GetRequest) (*counterv1.GetResponse, error) {
	return &counterv1.GetResponse{Name: n.name}, n.refuse()
}

func (n *node) Join(context.Context, *counterv1.JoinRequest) (*counterv1.JoinResponse, error) {
	return &counterv1.JoinResponse{Printed: n.name == "seed"}, n.refuse()
}

func (n *node) Watch(_ *counterv1.WatchRequest, s counterv1.CounterService_WatchServer) error {
	if err := n.refuse(); err != nil {
		return err
	}
	return s.Send(&counterv1.WatchResponse{Name: n.name})
}

// IncrementStream answers with its name and how many messages it took.
func (n *node) IncrementStream(s counterv1.CounterService_IncrementStreamServer) error {
	var msgs uint64
	for {
		_, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return s.SendAndClose(&counterv1.IncrementStreamResponse{Applied: &msgs, Counters: []*counterv1.CounterValue{{Name: n.name}}})
		}
		if err != nil {
			return err
		}
		msgs++
	}
}

func (n *node) Shards(context.Context, *counterv1.ShardsRequest) (*counterv1.ShardsResponse, error) {
	if m := n.shards.Load(); m != nil {
		return m, nil
	}
	return nil, status.Error(codes.Unimplemented, "no Shards here")
}

// serveMap makes n serve a map of the given owners.
func (n *node) serveMap(owners ...string) {
	n.shards.Store(&counterv1.ShardsResponse{Shards: new(uint32(len(owners))), Owners: owners})
}

// countingListener counts the connections open to a server.
type countingListener struct {
	net.Listener
	open *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.open.Add(1)
	return &countedConn{Conn: c, open: l.open}, nil
}

type countedConn struct {
	net.Conn
	open   *atomic.Int64
	closed atomic.Bool
}

func (c *countedConn) Close() error {
	if !c.closed.Swap(true) {
		c.open.Add(-1)
	}
	return c.Conn.Close()
}

func newClient(t *testing.T, seed *node, every time.Duration) *counterroute.Client {
	t.Helper()
	c, err := counterroute.New(counterroute.Config{Seed: dial.Config{Addr: seed.addr}, Every: every})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// nameIn is a counter name of the shard, of shards.
func nameIn(shard, shards int) string {
	for i := 0; ; i++ {
		if name := fmt.Sprint("c", i); counterv1.ShardOf(name, shards) == shard {
			return name
		}
	}
}

// landedOn checks that the per-counter calls for name all reach want. A call goes to an owner
// once the connection to it is ready, to the seed until then, so the calls are made again
// until they all land on want, for a minute at most.
func landedOn(t *testing.T, c counterv1.CounterServiceClient, name, want string) {
	t.Helper()
	giveUp := time.Now().Add(time.Minute)
	for {
		at, apart := landed(t, c, name)
		switch {
		case apart == "" && at == want:
			return
		case time.Now().After(giveUp):
			t.Fatalf("for a minute, the calls for %s did not all land on %s: %s", name, want, cmp.Or(apart, "all on "+at))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// landed is the node the per-counter calls for name reached, or how they landed apart.
func landed(t *testing.T, c counterv1.CounterServiceClient, name string) (at, apart string) {
	t.Helper()
	ctx := t.Context()
	inc, err := c.Increment(ctx, &counterv1.IncrementRequest{Name: name})
	if err != nil {
		t.Fatalf("Increment %s: %v", name, err)
	}
	get, err := c.Get(ctx, &counterv1.GetRequest{Name: name})
	if err != nil {
		t.Fatalf("Get %s: %v", name, err)
	}
	w, err := c.Watch(ctx, &counterv1.WatchRequest{Name: name})
	if err != nil {
		t.Fatalf("Watch %s: %v", name, err)
	}
	watched, err := w.Recv()
	if err != nil {
		t.Fatalf("Watch %s: %v", name, err)
	}
	s, err := c.IncrementStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.Send(&counterv1.IncrementStreamRequest{Increments: []*counterv1.CounterIncrement{{Name: name}}}); err != nil {
			t.Fatalf("IncrementStream %s: %v", name, err)
		}
	}
	sum, err := s.CloseAndRecv()
	if err != nil {
		t.Fatalf("IncrementStream %s: %v", name, err)
	}
	if sum.GetApplied() != 2 {
		t.Errorf("IncrementStream %s: %d messages reached %s, want 2", name, sum.GetApplied(), sum.GetCounters()[0].GetName())
	}
	at = inc.GetName()
	if get.GetName() != at || watched.GetName() != at || sum.GetCounters()[0].GetName() != at {
		apart = fmt.Sprintf("Increment on %s, Get on %s, Watch on %s, IncrementStream on %s", at, get.GetName(), watched.GetName(), sum.GetCounters()[0].GetName())
	}
	return at, apart
}

// Each counter's calls go to its shard's owner; a shard without an owner, or owned by the
// seed's own address, to the seed; Join and Shards to the seed.
func TestCallsGoToTheOwner(t *testing.T) {
	seed, a, b := startNode(t, "seed"), startNode(t, "a"), startNode(t, "b")
	seed.serveMap(a.addr, b.addr, "", seed.addr, a.addr)
	c := newClient(t, seed, time.Hour)
	for shard, want := range []string{"a", "b", "seed", "seed", "a"} {
		landedOn(t, c, nameIn(shard, 5), want)
	}
	if j, err := c.Join(t.Context(), &counterv1.JoinRequest{}); err != nil || !j.GetPrinted() {
		t.Errorf("Join = %v, %v; want the seed's answer", j, err)
	}
	if m, err := c.Shards(t.Context(), &counterv1.ShardsRequest{}); err != nil || m.GetShards() != 5 {
		t.Errorf("Shards = %v, %v; want the seed's map", m, err)
	}
	// A stream closed before any message, or whose first message is empty, goes to the seed.
	s, err := c.IncrementStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if sum, err := s.CloseAndRecv(); err != nil || sum.GetCounters()[0].GetName() != "seed" {
		t.Errorf("an empty stream = %v, %v; want the seed's answer", sum, err)
	}
}

// Whatever the map does not say goes to the seed: a server without Shards, a map whose owners
// do not match its shards.
func TestNoMapMeansTheSeed(t *testing.T) {
	for _, tt := range []struct {
		name string
		set  func(seed, a *node)
	}{
		{"no Shards", func(*node, *node) {}},
		{"more owners than shards", func(seed, a *node) {
			seed.shards.Store(&counterv1.ShardsResponse{Shards: new(uint32(1)), Owners: []string{a.addr, a.addr}})
		}},
		{"no shards", func(seed, a *node) { seed.shards.Store(&counterv1.ShardsResponse{Owners: []string{a.addr}}) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			seed, a := startNode(t, "seed"), startNode(t, "a")
			tt.set(seed, a)
			c := newClient(t, seed, time.Hour)
			for shard := range 4 {
				landedOn(t, c, nameIn(shard, 4), "seed")
			}
		})
	}
}

// A call that fails UNAVAILABLE has the map read again: the next calls for the moved shard
// reach its new owner, with no periodic read to do it.
func TestUnavailableReadsTheMapAgain(t *testing.T) {
	seed, a, b := startNode(t, "seed"), startNode(t, "a"), startNode(t, "b")
	seed.serveMap(a.addr, b.addr)
	c := newClient(t, seed, time.Hour)
	name := nameIn(0, 2)
	landedOn(t, c, name, "a")
	seed.serveMap(b.addr, b.addr)
	a.unavailable.Store(true)
	giveUp, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for {
		_, err := c.Increment(t.Context(), &counterv1.IncrementRequest{Name: name})
		if err == nil {
			break
		}
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("Increment %s: %v, want UNAVAILABLE from a, then b's answer", name, err)
		}
		select {
		case <-giveUp.Done():
			t.Fatal("for a minute, the calls for the moved shard did not reach its new owner")
		case <-time.After(50 * time.Millisecond):
		}
	}
	landedOn(t, c, name, "b")
}

// The connection to a node that left the map is closed; the others stay open.
func TestClosesConnectionsToNodesThatLeft(t *testing.T) {
	seed, a, b := startNode(t, "seed"), startNode(t, "a"), startNode(t, "b")
	seed.serveMap(a.addr, b.addr)
	c := newClient(t, seed, 10*time.Millisecond)
	landedOn(t, c, nameIn(0, 2), "a")
	landedOn(t, c, nameIn(1, 2), "b")
	if a.open.Load() != 1 || b.open.Load() != 1 {
		t.Fatalf("%d connections to a, %d to b; want 1 each", a.open.Load(), b.open.Load())
	}
	seed.serveMap(b.addr, b.addr)
	giveUp, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for a.open.Load() > 0 {
		select {
		case <-giveUp.Done():
			t.Fatal("for a minute, the connection to a, which left the map, stayed open")
		case <-time.After(10 * time.Millisecond):
		}
	}
	landedOn(t, c, nameIn(0, 2), "b")
	if n := b.open.Load(); n != 1 {
		t.Errorf("%d connections to b, want 1", n)
	}
}

// Every connection is made by Config.Dial, with the seed's settings and the owner's address.
func TestDialsOwnersLikeTheSeed(t *testing.T) {
	seed, a := startNode(t, "seed"), startNode(t, "a")
	seed.serveMap(a.addr)
	token := e2e.WriteToken(t, t.TempDir(), "tok")
	var dialled []dial.Config // read once Close has stopped the refresher
	c, err := counterroute.New(counterroute.Config{
		Seed:  dial.Config{Addr: seed.addr, TokenFile: token},
		Every: time.Hour,
		Dial: func(cfg dial.Config) (*grpc.ClientConn, error) {
			dialled = append(dialled, cfg)
			return cfg.Dial()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	landedOn(t, c, "x", "a")
	c.Close()
	want := []dial.Config{{Addr: seed.addr, TokenFile: token}, {Addr: a.addr, TokenFile: token}}
	if fmt.Sprint(dialled) != fmt.Sprint(want) {
		t.Errorf("dialled %v, want %v", dialled, want)
	}
}

// An owner the client cannot reach at the address the map gives (a client behind a port
// forward, outside the nodes' network) costs no call: the seed forwards them.
func TestUnreachableOwnerMeansTheSeed(t *testing.T) {
	seed := startNode(t, "seed")
	seed.serveMap(e2e.FreeAddr(t)) // nothing listens there
	c := newClient(t, seed, time.Hour)
	for range 20 {
		landedOn(t, c, nameIn(0, 1), "seed")
	}
}
