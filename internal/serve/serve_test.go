package serve_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	"github.com/concur-dev/concur/api/violation"
	"github.com/concur-dev/concur/internal/e2e"
	"github.com/concur-dev/concur/internal/serve"
	"github.com/concur-dev/concur/internal/testkit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakePrinter is a printer contract with just enough behaviour to exercise the runtime:
// Print panics on the line "panic", Tail blocks until Shutdown ends it.
type fakePrinter struct {
	printerv1.UnimplementedPrinterServiceServer
	name        string
	prints      atomic.Int64
	streamed    atomic.Int64
	stop        chan struct{}
	stopOnce    sync.Once
	ignoreStop  bool // Shutdown leaves open Tails open
	shutdownLog *[]string
}

func newFake(name string, log *[]string) *fakePrinter {
	return &fakePrinter{name: name, stop: make(chan struct{}), shutdownLog: log}
}

func (f *fakePrinter) Name() string { return f.name }

func (f *fakePrinter) Register(r grpc.ServiceRegistrar) {
	desc := printerv1.PrinterService_ServiceDesc
	desc.ServiceName = f.name
	r.RegisterService(&desc, f)
}

func (f *fakePrinter) Shutdown(context.Context) error {
	if f.shutdownLog != nil {
		*f.shutdownLog = append(*f.shutdownLog, f.name)
	}
	if !f.ignoreStop {
		f.stopOnce.Do(func() { close(f.stop) })
	}
	return nil
}

func (f *fakePrinter) Print(_ context.Context, req *printerv1.PrintRequest) (*printerv1.PrintResponse, error) {
	if req.GetLines()[0] == "panic" {
		panic("fake printer asked to panic")
	}
	return &printerv1.PrintResponse{Sequence: new(uint64(f.prints.Add(1)))}, nil
}

func (f *fakePrinter) PrintStream(stream printerv1.PrinterService_PrintStreamServer) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		f.streamed.Add(int64(len(req.GetJobs())))
		if err := stream.Send(&printerv1.PrintStreamResponse{}); err != nil {
			return err
		}
	}
}

func (f *fakePrinter) Tail(_ *printerv1.TailRequest, stream printerv1.PrinterService_TailServer) error {
	if err := stream.Send(&printerv1.TailResponse{Sequence: new(uint64(1))}); err != nil {
		return err
	}
	select {
	case <-f.stop:
		return status.Error(codes.Unavailable, "shutting down")
	case <-stream.Context().Done():
		return stream.Context().Err()
	}
}

// start runs a server with cfg (listening on a free port) until the test ends or the
// returned stop function is called; stop returns Serve's result.
func start(t *testing.T, cfg serve.Config, services ...serve.Service) (*serve.Server, func() error) {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	srv, err := serve.New(cfg, testkit.Quiet())
	if err != nil {
		t.Fatalf("serve.New: %v", err)
	}
	srv.Register(services...)
	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan error, 1)
	go func() { result <- srv.Serve(ctx) }()
	var once sync.Once
	var err2 error
	stop := func() error {
		once.Do(func() { cancel(); err2 = <-result })
		return err2
	}
	t.Cleanup(func() { stop() })
	return srv, stop
}

func defaults(t *testing.T) serve.Config {
	t.Helper()
	var cfg serve.Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestHealthPerService(t *testing.T) {
	a, b := newFake("test.A", nil), newFake("test.B", nil)
	srv, _ := start(t, defaults(t), a, b)
	health := healthpb.NewHealthClient(e2e.Dial(t, srv.Addr().String()))
	for _, name := range []string{"", "test.A", "test.B"} {
		resp, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: name})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q = %v, %v; want SERVING", name, resp.GetStatus(), err)
		}
	}
	_, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "test.Missing"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("health of unknown service: %v, want NotFound", err)
	}
}

func TestReflectionListsEveryService(t *testing.T) {
	srv, _ := start(t, defaults(t), newFake(printerv1.PrinterService_ServiceDesc.ServiceName, nil))
	stream, err := reflectionpb.NewServerReflectionClient(e2e.Dial(t, srv.Addr().String())).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	stream.CloseSend()
	for _, want := range []string{"concur.printer.v1.PrinterService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v; %s is missing", names, want)
		}
	}
}

func TestPanicIsInternalAndServerKeepsServing(t *testing.T) {
	fake := newFake("test.P", nil)
	srv, _ := start(t, defaults(t), fake)
	client := fakeClient(t, srv.Addr().String(), "test.P")
	ctx := context.Background()
	_, err := client.Print(ctx, &printerv1.PrintRequest{Lines: []string{"panic"}})
	if status.Code(err) != codes.Internal {
		t.Fatalf("Print(panic) = %v, want Internal", err)
	}
	if msg := status.Convert(err).Message(); strings.Contains(msg, "fake printer") || strings.Contains(msg, "goroutine") {
		t.Errorf("the panic leaked to the client: %q", msg)
	}
	resp, err := client.Print(ctx, &printerv1.PrintRequest{Lines: []string{"still here"}})
	if err != nil || resp.GetSequence() != 1 {
		t.Fatalf("Print after panic = %v, %v; want sequence 1", resp, err)
	}
}

func TestInvalidRequestNeverReachesHandler(t *testing.T) {
	fake := newFake("test.P", nil)
	srv, _ := start(t, defaults(t), fake)
	client := fakeClient(t, srv.Addr().String(), "test.P")
	ctx := context.Background()

	_, err := client.Print(ctx, &printerv1.PrintRequest{Lines: []string{"ok", "bad\x1b[0m"}})
	if status.Code(err) != codes.InvalidArgument || !slices.Equal(violation.Fields(err), []string{"lines[1]"}) {
		t.Fatalf("Print(bad) = %v (fields %v), want InvalidArgument on lines[1]", err, violation.Fields(err))
	}
	if n := fake.prints.Load(); n != 0 {
		t.Fatalf("handler ran %d times for an invalid request", n)
	}

	stream, err := client.PrintStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&printerv1.PrintStreamRequest{Jobs: []*printerv1.PrintJob{{Lines: []string{"fine"}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("first batch: %v", err)
	}
	stream.Send(&printerv1.PrintStreamRequest{})
	_, err = stream.Recv()
	if status.Code(err) != codes.InvalidArgument || !slices.Equal(violation.Fields(err), []string{"jobs"}) {
		t.Fatalf("empty batch = %v, want InvalidArgument on jobs", err)
	}
	if n := fake.streamed.Load(); n != 1 {
		t.Fatalf("handler saw %d jobs, want only the valid one", n)
	}
}

func TestAuth(t *testing.T) {
	cfg := defaults(t)
	cfg.AuthTokenFile = filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(cfg.AuthTokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, _ := start(t, cfg, newFake("test.P", nil))
	client := fakeClient(t, srv.Addr().String(), "test.P")
	req := &printerv1.PrintRequest{Lines: []string{"x"}}
	for name, md := range map[string]metadata.MD{
		"missing":      nil,
		"wrong":        metadata.Pairs("authorization", "Bearer nope"),
		"wrong scheme": metadata.Pairs("authorization", "Basic s3cret"),
	} {
		t.Run(name, func(t *testing.T) {
			ctx := metadata.NewOutgoingContext(context.Background(), md)
			if _, err := client.Print(ctx, req); status.Code(err) != codes.Unauthenticated {
				t.Errorf("%s token: %v, want Unauthenticated", name, err)
			}
		})
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer s3cret")
	if _, err := client.Print(ctx, req); err != nil {
		t.Errorf("right token: %v", err)
	}
	resp, err := healthpb.NewHealthClient(e2e.Dial(t, srv.Addr().String())).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health without token = %v, %v; want SERVING", resp, err)
	}
}

func TestTLSAndMutualTLS(t *testing.T) {
	certs := e2e.WriteCerts(t)
	cfg := defaults(t)
	cfg.TLSCert, cfg.TLSKey = certs.ServerCert, certs.ServerKey
	srv, _ := start(t, cfg, newFake("test.P", nil))
	check := func(conn *grpc.ClientConn) error {
		_, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
		return err
	}
	tlsConn := e2e.Dial(t, srv.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(certs.ClientTLS(t, false))))
	if err := check(tlsConn); err != nil {
		t.Fatalf("TLS: %v", err)
	}
	if err := check(e2e.Dial(t, srv.Addr().String())); err == nil {
		t.Fatal("a plaintext client reached a TLS server")
	}

	cfg.TLSClientCA = certs.CA
	mtls, _ := start(t, cfg, newFake("test.P", nil))
	withCert := e2e.Dial(t, mtls.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(certs.ClientTLS(t, true))))
	if err := check(withCert); err != nil {
		t.Fatalf("mTLS with a client certificate: %v", err)
	}
	noCert := e2e.Dial(t, mtls.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(certs.ClientTLS(t, false))))
	if err := check(noCert); status.Code(err) != codes.Unavailable {
		t.Fatalf("mTLS without a client certificate: %v, want Unavailable (handshake refused)", err)
	}
}

func TestMetricsServed(t *testing.T) {
	cfg := defaults(t)
	cfg.MetricsListen = "127.0.0.1:0"
	srv, _ := start(t, cfg, newFake("test.P", nil))
	client := fakeClient(t, srv.Addr().String(), "test.P")
	if _, err := client.Print(context.Background(), &printerv1.PrintRequest{Lines: []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + srv.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// The generated handler names the method by the contract's service, whatever the fake's name.
	want := `grpc_server_handled_total{grpc_code="OK",grpc_method="Print",grpc_service="concur.printer.v1.PrinterService",grpc_type="unary"} 1`
	if !strings.Contains(string(body), want) {
		t.Fatalf("metrics lack %s:\n%s", want, grpcLines(body))
	}
}

func TestShutdownEndsStreamsInReverseOrder(t *testing.T) {
	var order []string
	first, second := newFake("test.First", &order), newFake("test.Second", &order)
	srv, stop := start(t, defaults(t), first, second)
	tail, err := fakeClient(t, srv.Addr().String(), "test.Second").Tail(context.Background(), &printerv1.TailRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tail.Recv(); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatalf("Serve = %v, want a clean shutdown", err)
	}
	if _, err := tail.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("open Tail after shutdown: %v, want Unavailable", err)
	}
	if !slices.Equal(order, []string{"test.Second", "test.First"}) {
		t.Fatalf("shutdown order %v, want the reverse of registration", order)
	}
	resp, err := healthpb.NewHealthClient(e2e.Dial(t, srv.Addr().String())).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err == nil {
		t.Fatalf("health after shutdown = %v, want the connection refused", resp)
	}
}

// A connection past --max-connection-age is told to go away: the client's next call dials a
// new one, while a stream open on the old connection runs to its own end, or, with
// --max-connection-age-grace, is cut once the grace has passed.
func TestConnectionAge(t *testing.T) {
	for _, grace := range []time.Duration{0, 50 * time.Millisecond} {
		t.Run(fmt.Sprint("grace ", grace), func(t *testing.T) {
			cfg := defaults(t)
			cfg.MaxConnectionAge, cfg.MaxConnectionAgeGrace = 50*time.Millisecond, grace
			srv, stop := start(t, cfg, newFake(printerv1.PrinterService_ServiceDesc.ServiceName, nil))
			var dials atomic.Int64
			conn := e2e.Dial(t, srv.Addr().String(), grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
				dials.Add(1)
				return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			}))
			client := printerv1.NewPrinterServiceClient(conn)
			tail, err := client.Tail(t.Context(), &printerv1.TailRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tail.Recv(); err != nil {
				t.Fatal(err)
			}
			conn.WaitForStateChange(t.Context(), connectivity.Ready) // the server's GOAWAY
			if _, err := client.Print(t.Context(), &printerv1.PrintRequest{Lines: []string{"x"}}); err != nil {
				t.Fatalf("Print after the connection's age: %v", err)
			}
			if n := dials.Load(); n != 2 {
				t.Fatalf("%d connections dialled, want 2: the aged one and its successor", n)
			}
			if grace == 0 {
				stop() // the fake ends its Tails when it shuts down
			}
			_, err = tail.Recv()
			if cut := status.Convert(err).Message() != "shutting down"; status.Code(err) != codes.Unavailable || cut != (grace > 0) {
				t.Fatalf("Tail open on the aged connection ended with %v; want the fake's own end without a grace, a cut with one", err)
			}
		})
	}
}

func TestShutdownCutsCallsThatOutliveTheTimeout(t *testing.T) {
	stuck := newFake("test.Stuck", nil)
	stuck.ignoreStop = true
	cfg := defaults(t)
	cfg.ShutdownTimeout = 100 * time.Millisecond
	srv, stop := start(t, cfg, stuck)
	tail, err := fakeClient(t, srv.Addr().String(), "test.Stuck").Tail(context.Background(), &printerv1.TailRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tail.Recv(); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err == nil || !strings.Contains(err.Error(), "cut") {
		t.Fatalf("Serve = %v, want an error saying open calls were cut", err)
	}
	if _, err := tail.Recv(); err == nil {
		t.Fatal("the stuck Tail still receives after the server stopped")
	}
}

// A connection that never finishes its handshake is closed after --handshake-timeout, and
// the server keeps serving.
func TestSilentConnectionIsClosedAfterHandshakeTimeout(t *testing.T) {
	cfg := defaults(t)
	cfg.HandshakeTimeout = 100 * time.Millisecond
	srv, _ := start(t, cfg, newFake("test.P", nil))
	silent, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	// The bound only keeps a broken server from hanging the test: grpc's own default is 120 s.
	silent.SetReadDeadline(time.Now().Add(time.Minute))
	_, err = io.Copy(io.Discard, silent) // the server's settings, then its close
	if err != nil {
		t.Fatalf("the silent connection was not closed by the server: %v", err)
	}
	if _, err := healthpb.NewHealthClient(e2e.Dial(t, srv.Addr().String())).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health after closing a silent connection: %v", err)
	}
}

// Shutdown closes the connections still in their handshake at once, but drains the served
// ones, plain or TLS: an open stream is ended by its service, not by a closed connection.
func TestShutdownClosesHandshakesAndDrainsServedConnections(t *testing.T) {
	certs := e2e.WriteCerts(t)
	for _, useTLS := range []bool{false, true} {
		cfg := defaults(t)
		var opts []grpc.DialOption
		if useTLS {
			cfg.TLSCert, cfg.TLSKey = certs.ServerCert, certs.ServerKey
			opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(certs.ClientTLS(t, false))))
		}
		srv, stop := start(t, cfg, newFake("test.P", nil))
		tail, err := fakeClient(t, srv.Addr().String(), "test.P", opts...).Tail(context.Background(), &printerv1.TailRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tail.Recv(); err != nil {
			t.Fatal(err)
		}
		silent, err := net.Dial("tcp", srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer silent.Close()
		// Connections are accepted in the order they arrive: once this answers, the silent
		// one has been accepted.
		if _, err := healthpb.NewHealthClient(e2e.Dial(t, srv.Addr().String(), opts...)).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
		if err := stop(); err != nil {
			t.Fatalf("TLS %v: Serve = %v, want a clean shutdown", useTLS, err)
		}
		_, err = tail.Recv()
		if status.Code(err) != codes.Unavailable || status.Convert(err).Message() != "shutting down" {
			t.Fatalf("TLS %v: open Tail after shutdown: %v, want the service's own Unavailable", useTLS, err)
		}
		silent.SetReadDeadline(time.Now().Add(time.Minute))
		if _, err := io.Copy(io.Discard, silent); err != nil {
			t.Fatalf("TLS %v: the silent connection was not closed by the server: %v", useTLS, err)
		}
	}
}

func TestBadConfigurationIsRefused(t *testing.T) {
	certs := e2e.WriteCerts(t)
	for name, mutate := range map[string]func(*serve.Config){
		"cert without key":   func(c *serve.Config) { c.TLSCert = certs.ServerCert },
		"client CA alone":    func(c *serve.Config) { c.TLSClientCA = certs.CA },
		"missing token":      func(c *serve.Config) { c.AuthTokenFile = filepath.Join(t.TempDir(), "none") },
		"bad listen address": func(c *serve.Config) { c.Listen = "256.0.0.1:1" },
		"bad metrics addr":   func(c *serve.Config) { c.Listen, c.MetricsListen = "127.0.0.1:0", "nope" },
		"key is not a cert":  func(c *serve.Config) { c.TLSCert, c.TLSKey = certs.ServerKey, certs.ServerKey },
		"no handshake time":  func(c *serve.Config) { c.HandshakeTimeout = 0 },
		"negative age":       func(c *serve.Config) { c.MaxConnectionAge = -time.Second },
		"negative grace":     func(c *serve.Config) { c.MaxConnectionAgeGrace = -time.Second },
		"grace without age":  func(c *serve.Config) { c.MaxConnectionAge, c.MaxConnectionAgeGrace = 0, time.Minute },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := defaults(t)
			mutate(&cfg)
			if _, err := serve.New(cfg, testkit.Quiet()); err == nil {
				t.Errorf("%s: serve.New accepted it", name)
			}
		})
	}
}

// fakeClient is a printer client whose calls go to the fake registered as service.
func fakeClient(t *testing.T, addr, service string, opts ...grpc.DialOption) printerv1.PrinterServiceClient {
	rewrite := func(method string) string { return "/" + service + method[strings.LastIndex(method, "/"):] }
	opts = append(opts,
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoke(ctx, rewrite(method), req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, open grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return open(ctx, desc, cc, rewrite(method), opts...)
		}))
	return printerv1.NewPrinterServiceClient(e2e.Dial(t, addr, opts...))
}

func grpcLines(body []byte) string {
	var out []string
	for line := range strings.Lines(string(body)) {
		if strings.HasPrefix(line, "grpc_") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}

// drainer is a service that, like the counter, calls another service of the same process
// while it shuts down.
type drainer struct {
	local   func() grpc.ClientConnInterface
	callErr error
}

func (d *drainer) Name() string                   { return "test.Drainer" }
func (d *drainer) Register(grpc.ServiceRegistrar) {}
func (d *drainer) Shutdown(ctx context.Context) error {
	d.callErr = d.local().Invoke(ctx, "/test.P/Print", &printerv1.PrintRequest{Lines: []string{"last words"}}, &printerv1.PrintResponse{})
	return nil
}

func TestLocalConnectionOutlivesShutdownOfLaterServices(t *testing.T) {
	printer := newFake("test.P", nil)
	d := &drainer{}
	srv, stop := start(t, defaults(t), printer, d)
	d.local = srv.Local
	if err := srv.Local().Invoke(context.Background(), "/test.P/Print", &printerv1.PrintRequest{Lines: []string{"hello"}}, &printerv1.PrintResponse{}); err != nil {
		t.Fatalf("in-process call: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	if d.callErr != nil {
		t.Fatalf("in-process call during shutdown: %v", d.callErr)
	}
	if n := printer.prints.Load(); n != 2 {
		t.Fatalf("printer got %d prints, want 2", n)
	}
	if err := srv.Local().Invoke(context.Background(), "/test.P/Print", &printerv1.PrintRequest{Lines: []string{"too late"}}, &printerv1.PrintResponse{}); err == nil {
		t.Fatal("in-process call after shutdown succeeded")
	}
}

// limitedPrinter is the fake printer with limits set "by flag", checked by the runtime
// before its handlers run: at most maxLines lines of at most maxLineBytes bytes in a job, and
// Tail from no later than maxFrom.
type limitedPrinter struct {
	*fakePrinter
	maxLines, maxLineBytes int
	maxFrom                uint64
}

var _ serve.LimitChecker = (*limitedPrinter)(nil)

func (p *limitedPrinter) Register(r grpc.ServiceRegistrar) {
	desc := printerv1.PrinterService_ServiceDesc
	desc.ServiceName = p.name
	r.RegisterService(&desc, p)
}

func (p *limitedPrinter) CheckLimits(req any, l *violation.List) {
	switch r := req.(type) {
	case *printerv1.PrintRequest:
		p.checkJob(l, "", r.GetLines())
	case *printerv1.PrintStreamRequest:
		for i, j := range r.GetJobs() {
			p.checkJob(l, fmt.Sprintf("jobs[%d].", i), j.GetLines())
		}
	case *printerv1.TailRequest:
		if r.GetFromSequence() > p.maxFrom {
			l.Addf("from_sequence", "is past %d", p.maxFrom)
		}
	}
}

func (p *limitedPrinter) checkJob(l *violation.List, prefix string, lines []string) {
	if len(lines) > p.maxLines {
		l.Addf(prefix+"lines", "holds %d lines; at most %d", len(lines), p.maxLines)
	}
	for i, line := range lines {
		if len(line) > p.maxLineBytes {
			l.Addf(fmt.Sprintf("%slines[%d]", prefix, i), "is %d bytes long; at most %d", len(line), p.maxLineBytes)
		}
	}
}

// wantViolations fails the test unless err is INVALID_ARGUMENT whose BadRequest names fields,
// in that order, and whose message lists them in the same order.
func wantViolations(t *testing.T, what string, err error, fields ...string) {
	t.Helper()
	if status.Code(err) != codes.InvalidArgument || !slices.Equal(violation.Fields(err), fields) {
		t.Fatalf("%s = %v (fields %q), want InvalidArgument on %q", what, err, violation.Fields(err), fields)
	}
	msg, at := status.Convert(err).Message(), 0
	for _, f := range fields {
		i := strings.Index(msg[at:], f+": ")
		if i < 0 {
			t.Fatalf("%s: message %q does not list %s after the fields before it", what, msg, f)
		}
		at += i + len(f)
	}
}

// Violations of Validate and of the service's limits come back together, in field order,
// whichever check found them, and the handler never sees the request.
func TestLimitsAndValidateReportedTogether(t *testing.T) {
	fake := &limitedPrinter{fakePrinter: newFake("test.L", nil), maxLines: 2, maxLineBytes: 5, maxFrom: 10}
	srv, _ := start(t, defaults(t), fake)
	client := fakeClient(t, srv.Addr().String(), "test.L")
	ctx := context.Background()

	// Validate finds lines[1] (a NUL) and source_sequence; the limits find lines and lines[0].
	_, err := client.Print(ctx, &printerv1.PrintRequest{Lines: []string{"too long", "a\x00", "ok"}, Source: "s"})
	wantViolations(t, "Print(both)", err, "lines", "lines[0]", "lines[1]", "source_sequence")
	_, err = client.Print(ctx, &printerv1.PrintRequest{Lines: []string{"ok", "too long"}})
	wantViolations(t, "Print(limit only)", err, "lines[1]")
	if n := fake.prints.Load(); n != 0 {
		t.Fatalf("handler ran %d times for invalid requests", n)
	}
	if _, err := client.Print(ctx, &printerv1.PrintRequest{Lines: []string{"fine", "ok"}}); err != nil {
		t.Fatalf("Print(within limits) = %v", err)
	}

	tail, err := client.Tail(ctx, &printerv1.TailRequest{FromSequence: 11})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tail.Recv()
	wantViolations(t, "Tail(limit)", err, "from_sequence")
}

// In a client stream every message gets the same merged check before the handler sees it.
func TestLimitsAndValidateReportedTogetherInStream(t *testing.T) {
	fake := &limitedPrinter{fakePrinter: newFake("test.L", nil), maxLines: 2, maxLineBytes: 5, maxFrom: 10}
	srv, _ := start(t, defaults(t), fake)
	stream, err := fakeClient(t, srv.Addr().String(), "test.L").PrintStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&printerv1.PrintStreamRequest{Jobs: []*printerv1.PrintJob{{Lines: []string{"fine"}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("first message: %v", err)
	}
	// Validate finds jobs[0].lines[1] (a newline) and jobs[1].source (a tab); the limits find
	// jobs[0].lines[0], jobs[1].lines and jobs[1].lines[2].
	stream.Send(&printerv1.PrintStreamRequest{Jobs: []*printerv1.PrintJob{
		{Lines: []string{"too long", "a\nb"}},
		{Lines: []string{"x", "y", "too long"}, Source: "s\t", SourceSequence: 1},
	}})
	_, err = stream.Recv()
	wantViolations(t, "second message", err, "jobs[0].lines[0]", "jobs[0].lines[1]", "jobs[1].lines", "jobs[1].lines[2]", "jobs[1].source")
	if n := fake.streamed.Load(); n != 1 {
		t.Fatalf("handler saw %d jobs, want only the valid one", n)
	}
}

// breakable is a fake service that breaks when told to.
type breakable struct {
	*fakePrinter
	broken chan struct{}
}

func (b breakable) Broken() <-chan struct{} { return b.broken }

func TestBrokenServiceIsNotServing(t *testing.T) {
	cfg := defaults(t)
	cfg.MetricsListen = "127.0.0.1:0"
	a, b := newFake("test.A", nil), breakable{newFake("test.B", nil), make(chan struct{})}
	srv, _ := start(t, cfg, a, b)
	health := healthpb.NewHealthClient(e2e.Dial(t, srv.Addr().String()))
	watch, err := health.Watch(context.Background(), &healthpb.HealthCheckRequest{Service: "test.B"})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("test.B before it broke: %v, %v; want SERVING", resp.GetStatus(), err)
	}
	metrics := func() string { return e2e.Metrics(t, srv.MetricsAddr().String()) }
	for _, want := range []string{`concur_service_serving{service="test.A"} 1`, `concur_service_serving{service="test.B"} 1`} {
		if m := metrics(); !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	close(b.broken)
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("test.B after it broke: %v, %v; want NOT_SERVING", resp.GetStatus(), err)
	}
	m := metrics()
	for _, want := range []string{`concur_service_serving{service="test.A"} 1`, `concur_service_serving{service="test.B"} 0`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics after test.B broke lack %s", want)
		}
	}
	if resp, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "test.A"}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("test.A, which did not break: %v, %v; want SERVING", resp.GetStatus(), err)
	}
	// The server as a whole is not serving: a liveness probe of "" restarts it.
	if resp, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("the server after test.B broke: %v, %v; want NOT_SERVING", resp.GetStatus(), err)
	}
}
