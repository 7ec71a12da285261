package serve

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/stats"
)

// census is a gRPC stats handler that counts what a server holds open, so that shutdown
// can say what it cut at --shutdown-timeout: calls whose handler still runs, and
// connections past their handshake. With handshakes set, it also tells that listener when
// grpc has taken a connection over.
type census struct {
	calls      atomic.Int64
	conns      atomic.Int64
	handshakes *handshakes
}

func (c *census) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (c *census) HandleRPC(_ context.Context, s stats.RPCStats) {
	switch s.(type) {
	case *stats.Begin:
		c.calls.Add(1)
	case *stats.End:
		c.calls.Add(-1)
	}
}

// TagConn is called by grpc once a connection's handshake is done, before it serves calls.
func (c *census) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	if c.handshakes != nil {
		c.handshakes.servedBy(info.LocalAddr, info.RemoteAddr)
	}
	return ctx
}

func (c *census) HandleConn(_ context.Context, s stats.ConnStats) {
	switch s.(type) {
	case *stats.ConnBegin:
		c.conns.Add(1)
	case *stats.ConnEnd:
		c.conns.Add(-1)
	}
}

// handshakes is the gRPC listener. It keeps each connection it accepts until grpc has
// finished the connection's handshake (TLS, then the HTTP/2 preface and settings) and
// serves it, so that shutdown can close the connections still in their handshake.
// grpc.Server closes none of those: Stop and GracefulStop wait for them to finish or fail,
// up to grpc.ConnectionTimeout, before they stop or drain any other connection.
//
// The accepted connections are handed to grpc as they are (a wrapper would hide the
// *net.TCPConn that grpc sets TCP_USER_TIMEOUT on); a connection is known to be served when
// grpc's stats handler (census) tags a connection with the same addresses.
type handshakes struct {
	net.Listener
	// forgetAfter is when a connection that grpc never served is dropped from pending: long
	// after grpc's own deadline (grpc.ConnectionTimeout) has ended its handshake.
	forgetAfter time.Duration

	mu      sync.Mutex
	pending map[string]pendingConn // by connKey
	closing bool                   // shutdown began: every connection is closed on accept
	closed  int                    // connections this listener closed before grpc served them
}

type pendingConn struct {
	conn   net.Conn
	forget *time.Timer
}

func newHandshakes(lis net.Listener, timeout time.Duration) *handshakes {
	return &handshakes{Listener: lis, forgetAfter: 2 * timeout, pending: map[string]pendingConn{}}
}

// Accept returns the next connection, keeping it until grpc serves it; once closeAll was
// called, it closes each connection it accepts and waits for the next.
func (h *handshakes) Accept() (net.Conn, error) {
	for {
		c, err := h.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if h.track(c) {
			return c, nil
		}
	}
}

func (h *handshakes) track(c net.Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		if c.Close() == nil {
			h.closed++
		}
		return false
	}
	key := connKey(c.LocalAddr(), c.RemoteAddr())
	if old, ok := h.pending[key]; ok {
		old.forget.Stop()
	}
	// grpc closes a connection whose handshake fails, but says nothing: forget it when it
	// must have ended either way.
	h.pending[key] = pendingConn{conn: c, forget: time.AfterFunc(h.forgetAfter, func() { h.forget(key, c) })}
	return true
}

func (h *handshakes) forget(key string, c net.Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p, ok := h.pending[key]; ok && p.conn == c {
		delete(h.pending, key)
	}
}

// servedBy marks the connection between local and remote as served by grpc.
func (h *handshakes) servedBy(local, remote net.Addr) {
	key := connKey(local, remote)
	h.mu.Lock()
	defer h.mu.Unlock()
	if p, ok := h.pending[key]; ok {
		p.forget.Stop()
		delete(h.pending, key)
	}
}

// closeAll closes the connections still in their handshake, and from now on every
// connection as soon as it is accepted. None of them carries a call.
func (h *handshakes) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closing = true
	for key, p := range h.pending {
		p.forget.Stop()
		// Closing one that grpc already closed (a failed handshake) fails: it is not counted.
		if p.conn.Close() == nil {
			h.closed++
		}
		delete(h.pending, key)
	}
}

// closedCount is how many connections closeAll, and Accept after it, closed.
func (h *handshakes) closedCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

func connKey(local, remote net.Addr) string {
	return local.String() + " " + remote.String()
}
