// Package counterroute is a CounterService client that routes by the shard map: on a counter
// cluster (docs/cluster.md) it sends each call for a counter straight to the node that owns
// the counter's shard, rather than to a node that forwards it there.
//
// The map is a shortcut, never needed for correctness: every node answers every call,
// forwarding one it does not serve, once, to the owner. So whatever the client does not know
// goes to the seed, the server it was given: the calls for a shard without an owner (it is
// moving), every call when the seed has no Shards or its map cannot be read, and the calls
// that are for no one counter, Join and Shards. Against an embedded counter, whose map is one
// shard without an owner, the client is a plain client of the seed.
//
// One goroutine, the refresher, owns the connections to the owners (RR 1000): it reads the
// map from the seed, dials each owner the way the seed was dialled, and publishes the routes
// as an immutable value that calls read without a lock. It reads the map again every
// Config.Every and after a call failed UNAVAILABLE (a node gone, a shard moved), at most once
// a second, and closes the connections to the nodes that left the map, once they have been
// out of it for Config.Every, so that calls begun on them end first.
//
// A call goes to an owner only while the connection to it is ready; the first calls wait a
// second at most for it. When the owner cannot be reached at the address the map gives (a
// client outside the nodes' network, behind a port forward or a load balancer), the seed
// forwards the call.
package counterroute

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	"github.com/concur-dev/concur/internal/dial"
)

const (
	// DefaultEvery is how often the map is read again when Config.Every is 0: a map that
	// went stale without a call failing costs only forwarded calls meanwhile.
	DefaultEvery = 30 * time.Second
	// minGap bounds the reads that failed calls ask for: however many fail at once, say
	// while a node's shards move, the seed is asked at most once a gap.
	minGap = time.Second
	// readTimeout bounds one read of the map.
	readTimeout = 5 * time.Second
)

// Config says how to reach the counter.
type Config struct {
	// Seed is the server every call goes to unless the map names another; each owner is
	// dialled as the seed is (TLS, client certificate, token), at its own address.
	Seed dial.Config
	// Dial makes every connection, the seed's and the owners'; nil is dial.Config.Dial.
	Dial func(dial.Config) (*grpc.ClientConn, error)
	// Every is how often the map is read again besides after a call failed UNAVAILABLE;
	// 0 is DefaultEvery.
	Every time.Duration
}

// Client is a counterv1.CounterServiceClient that routes by the shard map. It is safe for
// concurrent use. Close it to release its connections.
type Client struct {
	seedConn  *grpc.ClientConn
	seed      counterv1.CounterServiceClient
	routes    atomic.Pointer[routes] // nil while no map was read
	firstRead chan struct{}          // closed once the first read is over, whatever came of it
	nudge     chan struct{}          // a call failed UNAVAILABLE: read the map again
	stop      context.CancelFunc
	done      chan struct{} // closed when the refresher has closed the owners' connections
}

var _ counterv1.CounterServiceClient = (*Client)(nil)

// New dials the seed and starts reading the map. Like grpc.NewClient it does not wait for the
// seed: the first call for a counter waits for the first read of the map, until its context
// ends, and goes to the seed if it brought none.
func New(cfg Config) (*Client, error) {
	if cfg.Dial == nil {
		cfg.Dial = func(c dial.Config) (*grpc.ClientConn, error) { return c.Dial() }
	}
	if cfg.Every <= 0 {
		cfg.Every = DefaultEvery
	}
	conn, err := cfg.Dial(cfg.Seed)
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	c := &Client{seedConn: conn, seed: counterv1.NewCounterServiceClient(conn), firstRead: make(chan struct{}),
		nudge: make(chan struct{}, 1), stop: stop, done: make(chan struct{})}
	r := &refresher{cfg: cfg, seed: c.seed, conns: map[string]*grpc.ClientConn{}, retired: map[string]retiredConn{}, routes: &c.routes}
	go c.run(ctx, r)
	return c, nil
}

// Close stops the refresher and closes every connection, the seed's last.
func (c *Client) Close() error {
	c.stop()
	<-c.done
	return c.seedConn.Close()
}

// to is the client of the owner of name's counter, or the seed's.
func (c *Client) to(ctx context.Context, name string) counterv1.CounterServiceClient {
	select {
	case <-c.firstRead:
	case <-ctx.Done(): // the call fails at the seed as it would have without a map
		return c.seed
	}
	if o := c.routes.Load().owner(name); o != nil && o.ready(ctx) {
		return o.client
	}
	return c.seed
}

// check asks for the map again when err says a node is down or a shard moved; it returns
// err as it is.
func (c *Client) check(err error) error {
	if status.Code(err) == codes.Unavailable {
		select {
		case c.nudge <- struct{}{}:
		default: // a read is asked for already
		}
	}
	return err
}

// Increment goes to the owner of the counter's shard.
func (c *Client) Increment(ctx context.Context, in *counterv1.IncrementRequest, opts ...grpc.CallOption) (*counterv1.IncrementResponse, error) {
	resp, err := c.to(ctx, in.GetName()).Increment(ctx, in, opts...)
	return resp, c.check(err)
}

// Get goes to the owner of the counter's shard.
func (c *Client) Get(ctx context.Context, in *counterv1.GetRequest, opts ...grpc.CallOption) (*counterv1.GetResponse, error) {
	resp, err := c.to(ctx, in.GetName()).Get(ctx, in, opts...)
	return resp, c.check(err)
}

// Watch goes to the owner of the counter's shard. A watch that its shard's move ends with
// UNAVAILABLE has the map read again, so that watching again reaches the new owner.
func (c *Client) Watch(ctx context.Context, in *counterv1.WatchRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[counterv1.WatchResponse], error) {
	s, err := c.to(ctx, in.GetName()).Watch(ctx, in, opts...)
	if err != nil {
		return nil, c.check(err)
	}
	return &watchStream{ServerStreamingClient: s, c: c}, nil
}

type watchStream struct {
	grpc.ServerStreamingClient[counterv1.WatchResponse]
	c *Client
}

func (w *watchStream) Recv() (*counterv1.WatchResponse, error) {
	v, err := w.ServerStreamingClient.Recv()
	return v, w.c.check(err)
}

// IncrementStream goes to the owner of the shard of the first counter of its first message,
// as a node forwards a stream: on a cluster a stream's counters must all be of one shard.
// The stream is opened by its first Send; one asked for anything else first (closed without
// a message, say) goes to the seed.
func (c *Client) IncrementStream(ctx context.Context, opts ...grpc.CallOption) (grpc.ClientStreamingClient[counterv1.IncrementStreamRequest, counterv1.IncrementStreamResponse], error) {
	return &incrementStream{c: c, ctx: ctx, opts: opts}, nil
}

// Join is a barrier over every shard, which any node runs: it goes to the seed.
func (c *Client) Join(ctx context.Context, in *counterv1.JoinRequest, opts ...grpc.CallOption) (*counterv1.JoinResponse, error) {
	resp, err := c.seed.Join(ctx, in, opts...)
	return resp, c.check(err)
}

// Shards returns the seed's map.
func (c *Client) Shards(ctx context.Context, in *counterv1.ShardsRequest, opts ...grpc.CallOption) (*counterv1.ShardsResponse, error) {
	resp, err := c.seed.Shards(ctx, in, opts...)
	return resp, c.check(err)
}

// incrementStream opens its call once it knows where to, by the first message.
type incrementStream struct {
	c    *Client
	ctx  context.Context
	opts []grpc.CallOption

	once   sync.Once
	stream grpc.ClientStreamingClient[counterv1.IncrementStreamRequest, counterv1.IncrementStreamResponse]
	err    error
}

// open opens the call, the first time, to the owner of first's first counter (the seed's
// when first is nil), and returns it.
func (s *incrementStream) open(first *counterv1.IncrementStreamRequest) (grpc.ClientStreamingClient[counterv1.IncrementStreamRequest, counterv1.IncrementStreamResponse], error) {
	s.once.Do(func() {
		to := s.c.seed
		if incs := first.GetIncrements(); len(incs) > 0 {
			to = s.c.to(s.ctx, incs[0].GetName())
		}
		s.stream, s.err = to.IncrementStream(s.ctx, s.opts...)
		s.err = s.c.check(s.err)
	})
	return s.stream, s.err
}

func (s *incrementStream) Send(m *counterv1.IncrementStreamRequest) error {
	st, err := s.open(m)
	if err != nil {
		return err
	}
	return st.Send(m)
}

func (s *incrementStream) CloseAndRecv() (*counterv1.IncrementStreamResponse, error) {
	st, err := s.open(nil)
	if err != nil {
		return nil, err
	}
	resp, err := st.CloseAndRecv()
	return resp, s.c.check(err)
}

func (s *incrementStream) Header() (metadata.MD, error) {
	st, err := s.open(nil)
	if err != nil {
		return nil, err
	}
	return st.Header()
}

// Trailer is nil until the call has ended, as gRPC's.
func (s *incrementStream) Trailer() metadata.MD {
	if st, err := s.open(nil); err == nil {
		return st.Trailer()
	}
	return nil
}

func (s *incrementStream) CloseSend() error {
	st, err := s.open(nil)
	if err != nil {
		return err
	}
	return st.CloseSend()
}

func (s *incrementStream) Context() context.Context {
	if st, err := s.open(nil); err == nil {
		return st.Context()
	}
	return s.ctx
}

func (s *incrementStream) SendMsg(m any) error {
	req, ok := m.(*counterv1.IncrementStreamRequest)
	if !ok {
		return fmt.Errorf("counterroute: IncrementStream sends %T, not %T", m, req)
	}
	return s.Send(req)
}

func (s *incrementStream) RecvMsg(m any) error {
	st, err := s.open(nil)
	if err != nil {
		return err
	}
	return s.c.check(st.RecvMsg(m))
}

// routes is a shard map made routable; it is never changed once published.
type routes struct {
	owners []*owner // by shard; nil: the seed serves it
}

// owner is a node that owns shards, and the connection to it.
type owner struct {
	conn   *grpc.ClientConn
	client counterv1.CounterServiceClient
	slow   atomic.Bool // its first connection took longer than connectWait: calls wait no more
}

// connectWait is how long a call waits for the first connection to an owner before it goes
// through the seed: long enough for a node on the same network, short enough that a client
// that cannot reach the owner (its packets dropped, not refused) loses little.
const connectWait = time.Second

// ready says whether calls go to o now: its connection is ready, or becomes ready within
// connectWait of the first calls.
func (o *owner) ready(ctx context.Context) bool {
	if o.conn.GetState() == connectivity.Ready {
		return true
	}
	if o.slow.Load() {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, connectWait)
	defer cancel()
	for st := o.conn.GetState(); st == connectivity.Idle || st == connectivity.Connecting; st = o.conn.GetState() {
		o.conn.Connect()
		if !o.conn.WaitForStateChange(ctx, st) {
			o.slow.Store(true)
			return false
		}
	}
	return o.conn.GetState() == connectivity.Ready
}

// owner is the node that owns name's shard, nil for the seed.
func (r *routes) owner(name string) *owner {
	if r == nil {
		return nil
	}
	return r.owners[counterv1.ShardOf(name, len(r.owners))]
}

// run is the refresher's loop: a read at once, then one on each tick or asked for by a
// failed call, at most once a minGap.
func (c *Client) run(ctx context.Context, r *refresher) {
	defer close(c.done)
	defer r.closeAll()
	tick := time.NewTicker(r.cfg.Every)
	defer tick.Stop()
	first := c.firstRead
	for {
		r.read(ctx)
		last := time.Now()
		if first != nil {
			close(first)
			first = nil
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-c.nudge:
			gap := time.NewTimer(time.Until(last.Add(minGap)))
			select {
			case <-ctx.Done():
				gap.Stop()
				return
			case <-gap.C:
			}
		}
	}
}

// refresher owns the connections to the owners.
type refresher struct {
	cfg    Config
	seed   counterv1.CounterServiceClient
	routes *atomic.Pointer[routes]
	conns  map[string]*grpc.ClientConn // by address: the owners in the map, the seed never
	// retired are the connections to nodes the last read dropped from the map: they are
	// closed at the next read, unless back in the map, so that calls begun on them end first.
	retired map[string]retiredConn
}

// retiredConn is a connection to a node that left the map, and when it left.
type retiredConn struct {
	conn  *grpc.ClientConn
	since time.Time
}

// read asks the seed for the map and publishes its routes. A read that fails keeps the routes
// as they were: the owners they name still answer, or fail and ask for another read. A seed
// without Shards, or a map that is not one, leaves every call to the seed.
func (r *refresher) read(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	resp, err := r.seed.Shards(ctx, &counterv1.ShardsRequest{})
	switch {
	case status.Code(err) == codes.Unimplemented:
		r.publish(nil)
	case err != nil:
	case resp.GetShards() < 1 || int(resp.GetShards()) != len(resp.GetOwners()):
		r.publish(nil) // not a map: a shard's owner would be a guess
	default:
		r.publish(resp.GetOwners())
	}
}

// publish makes the routes of owners (nil: every call to the seed), dialling the owners it has
// no connection to, and retires the connections to the others.
func (r *refresher) publish(owners []string) {
	var next *routes
	want := map[string]*grpc.ClientConn{}
	if owners != nil {
		next = &routes{owners: make([]*owner, len(owners))}
		nodes := map[string]*owner{}
		for shard, addr := range owners {
			if addr == "" || addr == r.cfg.Seed.Addr {
				continue // the seed serves it, or forwards it
			}
			if nodes[addr] == nil {
				conn := r.conn(addr)
				if conn == nil {
					continue // an address that cannot be dialled: the seed forwards its calls
				}
				conn.Connect() // calls go to it once it is ready, to the seed until then
				want[addr] = conn
				nodes[addr] = &owner{conn: conn, client: counterv1.NewCounterServiceClient(conn)}
			}
			next.owners[shard] = nodes[addr]
		}
	}
	r.routes.Store(next)
	now := time.Now()
	for addr, conn := range r.conns {
		if want[addr] == nil {
			r.retired[addr] = retiredConn{conn, now}
		}
	}
	for addr, rc := range r.retired {
		if now.Sub(rc.since) >= r.cfg.Every {
			rc.conn.Close()
			delete(r.retired, addr)
		}
	}
	r.conns = want
}

// conn is the connection to addr: the one there is, one retired, or a new one; nil when addr
// cannot be dialled.
func (r *refresher) conn(addr string) *grpc.ClientConn {
	if c := r.conns[addr]; c != nil {
		return c
	}
	if rc, ok := r.retired[addr]; ok {
		delete(r.retired, addr)
		return rc.conn
	}
	cfg := r.cfg.Seed
	cfg.Addr = addr
	c, err := r.cfg.Dial(cfg)
	if err != nil {
		return nil
	}
	return c
}

// closeAll closes every owner's connection.
func (r *refresher) closeAll() {
	for _, c := range r.conns {
		c.Close()
	}
	for _, rc := range r.retired {
		rc.conn.Close()
	}
}
