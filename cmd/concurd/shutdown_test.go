package main_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/concur-dev/concur/internal/e2e"
)

// The shutdown tests run concurd with this --shutdown-timeout; the contract under test is
// that it exits within it, plus a second.
const shutdownTimeout = 3 * time.Second

// fastRaceExit keeps a concurd built with the race detector from sleeping a second as it
// exits (the race runtime's atexit_sleep_ms, there for other threads' reports), which would
// count against the bound under test. Call it before starting concurd.
func fastRaceExit(t *testing.T) {
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
}

// terminate sends SIGTERM and returns the exit code, failing the test when the process
// still runs a second after --shutdown-timeout.
func terminate(t *testing.T, p *e2e.Process) int {
	t.Helper()
	p.Signal(t, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout+time.Second)
	defer cancel()
	return p.Wait(ctx, t)
}

// record returns the last JSON log line of p whose message is msg.
func record(t *testing.T, p *e2e.Process, msg string) map[string]any {
	t.Helper()
	var found map[string]any
	for line := range strings.Lines(p.Logs()) {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			found = rec
		}
	}
	if found == nil {
		t.Fatalf("no log line says %q:\n%s", msg, p.Logs())
	}
	return found
}

// wantCounts fails the test unless rec has each of the numbers in want.
func wantCounts(t *testing.T, rec map[string]any, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("log %q has %s=%v, want %v (record %v)", rec["msg"], k, rec[k], v, rec)
		}
	}
}

// checkHealth makes one health call on a new connection and closes it. Connections are
// accepted in the order they arrive, so once it answers, every connection opened before it
// has been accepted by concurd.
func checkHealth(t *testing.T, addr string, opts ...grpc.DialOption) {
	t.Helper()
	conn := e2e.Dial(t, addr, opts...)
	defer conn.Close()
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health check: %v", err)
	}
}

// A connection that never finishes its handshake holds no call: SIGTERM closes it and
// concurd exits 0 within --shutdown-timeout, saying so.
func TestShutdownClosesConnectionsInTheirHandshake(t *testing.T) {
	fastRaceExit(t)
	certs := e2e.WriteCerts(t)
	tlsArgs := []string{"--tls-cert=" + certs.ServerCert, "--tls-key=" + certs.ServerKey}
	tlsClient := grpc.WithTransportCredentials(credentials.NewTLS(certs.ClientTLS(t, false)))
	tcp := func(t *testing.T, addr string) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tt := range []struct {
		name string
		args []string
		opts []grpc.DialOption
		open func(t *testing.T, addr string) net.Conn
	}{
		{"plain TCP, silent", nil, nil, tcp},
		{"plain TCP, half an HTTP/2 preface", nil, nil, func(t *testing.T, addr string) net.Conn {
			c := tcp(t, addr)
			if _, err := io.WriteString(c, "PRI * HTTP/2.0\r\n"); err != nil {
				t.Fatal(err)
			}
			return c
		}},
		{"TLS port, silent TCP", tlsArgs, []grpc.DialOption{tlsClient}, tcp},
		{"TLS done, no HTTP/2 preface", tlsArgs, []grpc.DialOption{tlsClient}, func(t *testing.T, addr string) net.Conn {
			conf := certs.ClientTLS(t, false)
			conf.NextProtos = []string{"h2"}
			c, err := tls.Dial("tcp", addr, conf)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := e2e.StartConcurd(t, append([]string{"--shutdown-timeout=" + shutdownTimeout.String()}, tt.args...)...)
			silent := tt.open(t, p.Addr)
			defer silent.Close()
			checkHealth(t, p.Addr, tt.opts...)

			if code := terminate(t, p); code != 0 {
				t.Fatalf("exit %d, want 0: no call was open\n%s", code, p.Logs())
			}
			wantCounts(t, record(t, p, "shutdown complete"), map[string]float64{"handshakes_closed": 1, "calls_cut": 0, "connections_closed": 0})
		})
	}
}

// stallingConn is a client's connection that stops reading once stalled, like a client
// whose process is stopped: what the server sends is never read, so its pings are never
// acknowledged.
type stallingConn struct {
	net.Conn
	stalled atomic.Bool
	closed  chan struct{}
	once    sync.Once
}

func (c *stallingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if c.stalled.Load() {
		<-c.closed
		return 0, net.ErrClosed
	}
	return n, err
}

func (c *stallingConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// A connected client that made a call and then reads nothing more holds no call: concurd
// closes its connection at --shutdown-timeout and exits 0.
func TestShutdownClosesAnIdleConnectionThatDoesNotRead(t *testing.T) {
	fastRaceExit(t)
	p := e2e.StartConcurd(t, "--shutdown-timeout="+shutdownTimeout.String())
	var conn atomic.Pointer[stallingConn]
	client := e2e.Dial(t, p.Addr, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		s := &stallingConn{Conn: c, closed: make(chan struct{})}
		conn.Store(s)
		return s, nil
	}))
	if _, err := healthpb.NewHealthClient(client).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health check: %v", err)
	}
	conn.Load().stalled.Store(true)

	if code := terminate(t, p); code != 0 {
		t.Fatalf("exit %d, want 0: no call was open\n%s", code, p.Logs())
	}
	wantCounts(t, record(t, p, "closed idle connections at --shutdown-timeout; no call was open"), map[string]float64{"connections": 1})
	wantCounts(t, record(t, p, "shutdown complete"), map[string]float64{"connections_closed": 1, "calls_cut": 0, "handshakes_closed": 0})
}

// A call still open at --shutdown-timeout (a health watch: health has no end of its own) is
// cut, the log says so, and concurd exits 1.
func TestShutdownCutsACallThatOutlivesTheTimeout(t *testing.T) {
	fastRaceExit(t)
	p := e2e.StartConcurd(t, "--shutdown-timeout="+shutdownTimeout.String())
	watch, err := healthpb.NewHealthClient(e2e.Dial(t, p.Addr)).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health watch: %v, %v; want SERVING", resp, err)
	}

	if code := terminate(t, p); code != 1 {
		t.Fatalf("exit %d, want 1: an open call was cut\n%s", code, p.Logs())
	}
	rec := record(t, p, "shutdown incomplete")
	wantCounts(t, rec, map[string]float64{"calls_cut": 1, "connections_closed": 1, "handshakes_closed": 0})
	if msg, _ := rec["err"].(string); !strings.Contains(msg, "were cut: 1") {
		t.Errorf("shutdown error %q does not say one call was cut", msg)
	}
	for {
		if _, err = watch.Recv(); err != nil {
			break
		}
	}
	if errors.Is(err, io.EOF) {
		t.Fatal("the cut watch ended as if the server had finished it")
	}
}
