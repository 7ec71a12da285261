// Package serve is the one way to run a concur gRPC server: flags with environment
// equivalents, TLS and mTLS, bearer-token auth, interceptors, health, reflection, Prometheus
// metrics and graceful shutdown. It knows no service: each is handed in as a Service.
package serve

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/concur-dev/concur/api/violation"
	"github.com/concur-dev/concur/internal/telemetry"
)

// A Service is one gRPC service run by a Server.
//
// Requests are checked before a handler sees them: each request message's Validate method
// (the contract's own rules) runs, and, when the implementation a Service registers (the
// value it passes to RegisterService, which gRPC hands interceptors) is a LimitChecker, its
// CheckLimits runs too (the rules a server sets by flag). A request that breaks any rule is
// answered with one INVALID_ARGUMENT whose google.rpc.BadRequest, and message, name every
// violation, in the request's field order, whichever check found it. In a client stream,
// every message is checked this way as it is received; a message at fault ends the stream
// with that error.
type Service interface {
	// Name is the service's full gRPC name (concur.printer.v1.PrinterService): its health
	// status is reported under it.
	Name() string
	// Register adds the service's handlers to a gRPC server.
	Register(grpc.ServiceRegistrar)
	// Shutdown is called when the server has stopped taking new calls from outside and is
	// waiting for open ones. It finishes what the service accepted and ends the service's open
	// streams (telling their clients why), so that the wait ends. Services are shut down in
	// the reverse of the order they were registered in, and the in-process connection (Local)
	// keeps working until every Shutdown has returned, so a service registered later may
	// still call one registered earlier while it drains. Shutdown returns when its work is
	// done or ctx ends. The server calls it once; it must allow more calls (whoever built the
	// service may call it too), each waiting for the same end.
	Shutdown(ctx context.Context) error
}

// A Breakable service can break for good while the server runs (the embedded counter, when
// its database fails a commit): Broken is closed then (a nil channel: it never breaks). The
// server reports the service NOT_SERVING from that moment, and the server as a whole (health
// service ""), in its health checks and in concur_service_serving, so that a liveness probe
// restarts the process and an alert fires, and logs why.
type Breakable interface {
	Broken() <-chan struct{}
}

// A LimitChecker checks requests against limits set by flag (--printer-max-lines and such),
// which a request's Validate cannot know. CheckLimits adds a violation to l for each limit req
// breaks, naming the field as Validate would (lines, lines[0], jobs[1].lines), and ignores
// requests it sets no limits on; it must not block or keep req. See Service.
type LimitChecker interface {
	CheckLimits(req any, l *violation.List)
}

// Server is a configured gRPC server with its listeners open.
type Server struct {
	cfg      Config
	log      *slog.Logger
	services []Service
	grpc     *grpc.Server
	census   *census // what grpc holds open
	health   *health.Server
	lis      *handshakes
	metrics  *grpcprom.ServerMetrics
	serving  *prometheus.GaugeVec // concur_service_serving, by service
	stopping chan struct{}        // closed when shutdown starts: Breakable services are no longer watched
	registry *prometheus.Registry
	http     *http.Server
	mlis     net.Listener
	// stopTracing flushes the spans of the tracing Start set up from OTEL_* (a no-op when off).
	stopTracing func(context.Context) error

	// The in-process side: the same services on a second gRPC server, reached through memory
	// without TLS or auth, for services that call each other inside one process.
	local       *grpc.Server
	localCensus *census
	localLis    *bufconn.Listener
	localConn   *grpc.ClientConn
}

// New builds the server and opens its listeners, so that Addr is known before Serve.
// Register the services, then call Serve. The OTEL_* environment turns tracing on
// (internal/telemetry); log lines of a traced call carry its trace_id and span_id.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	log = telemetry.Logger(log)
	if cfg.HandshakeTimeout <= 0 {
		return nil, fmt.Errorf("--handshake-timeout %v: must be more than 0", cfg.HandshakeTimeout)
	}
	if err := cfg.checkConnectionAge(); err != nil {
		return nil, err
	}
	opts := []grpc.ServerOption{
		grpc.ConnectionTimeout(cfg.HandshakeTimeout),
		grpc.MaxRecvMsgSize(cfg.MaxRecvMsgBytes),
		grpc.MaxSendMsgSize(cfg.MaxSendMsgBytes),
		grpc.MaxConcurrentStreams(uint32(min(cfg.MaxConcurrentStreams, 1<<32-1))),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: cfg.KeepaliveMinTime, PermitWithoutStream: true}),
	}
	pings := keepalive.ServerParameters{Time: cfg.KeepaliveTime, Timeout: cfg.KeepaliveTimeout}
	// Only outside clients have other replicas to find: the in-process connection is never
	// recycled.
	recycled := pings
	recycled.MaxConnectionAge, recycled.MaxConnectionAgeGrace = cfg.MaxConnectionAge, cfg.MaxConnectionAgeGrace
	tlsConf, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	var token []byte
	if cfg.AuthTokenFile != "" {
		if token, err = readToken(cfg.AuthTokenFile); err != nil {
			return nil, err
		}
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on --listen %s: %w", cfg.Listen, err)
	}
	var mlis net.Listener
	if cfg.MetricsListen != "" {
		if mlis, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			lis.Close()
			return nil, fmt.Errorf("listen on --metrics-listen %s: %w", cfg.MetricsListen, err)
		}
	}
	stopTracing, err := telemetry.Start(context.Background())
	if err != nil {
		lis.Close()
		if mlis != nil {
			mlis.Close()
		}
		return nil, err
	}
	// Nothing below fails but for a bug, so the listeners need no more cleaning up.
	s := &Server{
		stopTracing: stopTracing,
		cfg:         cfg,
		lis:         newHandshakes(lis, cfg.HandshakeTimeout),
		mlis:        mlis,
		log:         log,
		health:      health.NewServer(),
		metrics:     grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram()),
		registry:    prometheus.NewRegistry(),
		localCensus: &census{},
		localLis:    bufconn.Listen(1 << 20),
		stopping:    make(chan struct{}),
		serving: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "concur_service_serving",
			Help: "1 while the service reports SERVING in its health checks, 0 once it is NOT_SERVING (broken, or the server is shutting down).",
		}, []string{"service"}),
	}
	s.census = &census{handshakes: s.lis}
	s.registry.MustRegister(s.metrics, s.serving, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	unary, stream := interceptorChain(log, s.metrics, token)
	opts = append(opts, telemetry.ServerOptions()...)
	external := slices.Concat(opts, []grpc.ServerOption{grpc.KeepaliveParams(recycled), grpc.StatsHandler(s.census), grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...)})
	if tlsConf != nil {
		external = append(external, grpc.Creds(credentials.NewTLS(tlsConf)))
	}
	s.grpc = grpc.NewServer(external...)
	unary, stream = interceptorChain(log, s.metrics, nil)
	s.local = grpc.NewServer(slices.Concat(opts, []grpc.ServerOption{grpc.KeepaliveParams(pings), grpc.StatsHandler(s.localCensus), grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...)})...)
	s.localConn, err = grpc.NewClient("passthrough:///in-process", append(telemetry.DialOptions(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return s.localLis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		panic(fmt.Sprintf("in-process connection: %v", err)) // a constant, valid target
	}

	healthpb.RegisterHealthServer(s.grpc, s.health)
	refl := reflection.ServerOptions{Services: s.grpc, DescriptorResolver: protoregistry.GlobalFiles}
	if cfg.Descriptors != nil {
		refl.DescriptorResolver = fallback{cfg.Descriptors, protoregistry.GlobalFiles}
	}
	reflectionv1.RegisterServerReflectionServer(s.grpc, reflection.NewServerV1(refl))
	reflectionv1alpha.RegisterServerReflectionServer(s.grpc, reflection.NewServer(refl))
	if mlis != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry}))
		s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	}
	return s, nil
}

// Register adds services to the server, in start order, and marks each SERVING.
func (s *Server) Register(services ...Service) {
	for _, svc := range services {
		svc.Register(s.grpc)
		svc.Register(s.local)
		s.health.SetServingStatus(svc.Name(), healthpb.HealthCheckResponse_SERVING)
		s.serving.WithLabelValues(svc.Name()).Set(1)
		if b, ok := svc.(Breakable); ok {
			go s.watchBroken(svc.Name(), b.Broken())
		}
	}
	s.services = append(s.services, services...)
}

// watchBroken turns a service NOT_SERVING when it breaks, unless the server shuts down first.
func (s *Server) watchBroken(name string, broken <-chan struct{}) {
	select {
	case <-broken:
		s.serving.WithLabelValues(name).Set(0) // first: whoever sees NOT_SERVING sees the gauge at 0
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_NOT_SERVING)
		s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
		s.log.Error("a service broke: it reports NOT_SERVING and refuses its calls until concurd is restarted", "service", name)
	case <-s.stopping:
	}
}

// Local is a connection to the server's services through memory, for a service that calls
// another in the same process (the counter forwarding to the printer). It skips TLS and
// auth, runs the other interceptors, and outlives every service's Shutdown.
func (s *Server) Local() grpc.ClientConnInterface { return s.localConn }

// Metrics is the registry served at /metrics, for services' own collectors.
func (s *Server) Metrics() prometheus.Registerer { return s.registry }

// Addr is the address the gRPC listener is bound to.
func (s *Server) Addr() net.Addr { return s.lis.Addr() }

// MetricsAddr is the address metrics are served on, or nil when they are off.
func (s *Server) MetricsAddr() net.Addr {
	if s.mlis == nil {
		return nil
	}
	return s.mlis.Addr()
}

// Serve serves until ctx ends, then shuts down gracefully: health turns NOT_SERVING, the
// listener closes and new calls are refused, connections still in their handshake are
// closed, each service's Shutdown finishes its accepted work and ends its streams, and open
// calls are waited for until --shutdown-timeout; then the server stops, cutting the calls
// still open and closing the connections left. It returns nil when no call was cut and
// every service drained: idle connections closed at the deadline are no failure.
func (s *Server) Serve(ctx context.Context) error {
	s.metrics.InitializeMetrics(s.grpc)
	served := make(chan error, 1)
	go func() { served <- s.grpc.Serve(s.lis) }()
	go s.local.Serve(s.localLis) // returns when shutdown stops it
	if s.http != nil {
		go func() {
			if err := s.http.Serve(s.mlis); !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("metrics server failed", "err", err)
			}
		}()
	}
	names := make([]string, len(s.services))
	for i, svc := range s.services {
		names[i] = svc.Name()
	}
	attrs := []any{"addr", s.Addr().String(), "tls", s.cfg.TLSCert != "", "services", names}
	if m := s.MetricsAddr(); m != nil {
		attrs = append(attrs, "metrics", m.String())
	}
	s.log.Info("serving", attrs...)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
		serveErr = fmt.Errorf("grpc server stopped: %w", serveErr)
	}
	return errors.Join(serveErr, s.shutdown())
}

func (s *Server) shutdown() error {
	s.log.Info("shutting down", "timeout", s.cfg.ShutdownTimeout.String())
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()

	close(s.stopping)
	s.health.Shutdown()
	for _, svc := range s.services {
		s.serving.WithLabelValues(svc.Name()).Set(0)
	}
	externalStopped := stopGracefully(s.grpc)
	// GracefulStop, like Stop, waits for every connection still in its handshake (up to
	// --handshake-timeout; grpc's Server.stop waits on serveWG before it drains or closes
	// anything) before it tells the served ones to go away. Those connections carry no
	// call: close them now.
	s.lis.closeAll()
	var errs []error
	for _, svc := range slices.Backward(s.services) {
		if err := svc.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shut down %s: %w", svc.Name(), err))
		}
	}
	// Every service has drained: the in-process calls between them may end now.
	localStopped := stopGracefully(s.local)
	external := waitOrStop(ctx, s.grpc, s.census, externalStopped)
	local := waitOrStop(ctx, s.local, s.localCensus, localStopped)
	calls, conns := external.calls+local.calls, external.conns+local.conns
	if calls > 0 {
		errs = append(errs, fmt.Errorf("calls still open at --shutdown-timeout %v were cut: %d", s.cfg.ShutdownTimeout, calls))
	} else if conns > 0 {
		// A client that does not read never acknowledges grpc's GOAWAY ping, and grpc waits
		// 5 s for it before it closes a connection; nothing was cut.
		s.log.Info("closed idle connections at --shutdown-timeout; no call was open", "connections", conns)
	}
	s.localConn.Close()
	if s.http != nil {
		if err := s.http.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop metrics server: %w", err))
		}
	}
	// Spans not exported are no failure of the shutdown: they are only said to be lost.
	if err := s.stopTracing(ctx); err != nil {
		s.log.Warn("flushing the last spans failed", "err", err)
	}
	attrs := []any{"calls_cut", calls, "connections_closed", conns, "handshakes_closed", s.lis.closedCount()}
	err := errors.Join(errs...)
	if err != nil {
		s.log.Error("shutdown incomplete", append([]any{"err", err}, attrs...)...)
	} else {
		s.log.Info("shutdown complete", attrs...)
	}
	return err
}

// held is what a server still held open when it was stopped at --shutdown-timeout.
type held struct{ calls, conns int64 }

// waitOrStop waits for stopped, or for ctx to end and then stops srv at once; it returns
// what srv held open when it was stopped (nothing when it stopped gracefully).
func waitOrStop(ctx context.Context, srv *grpc.Server, c *census, stopped <-chan struct{}) held {
	// Once ctx has ended, a select on both would pick at random: a server that stopped
	// gracefully must not be reported as stopped.
	select {
	case <-stopped:
		return held{}
	default:
	}
	select {
	case <-stopped:
		return held{}
	case <-ctx.Done():
		h := held{c.calls.Load(), c.conns.Load()}
		srv.Stop()
		<-stopped
		return h
	}
}

// stopGracefully starts srv.GracefulStop and returns a channel closed when it is done.
func stopGracefully(srv *grpc.Server) <-chan struct{} {
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	return stopped
}

// checkConnectionAge refuses negative ages and a grace without an age, which would never apply.
func (c *Config) checkConnectionAge() error {
	switch {
	case c.MaxConnectionAge < 0:
		return fmt.Errorf("--max-connection-age %v: must not be negative (0 is off)", c.MaxConnectionAge)
	case c.MaxConnectionAgeGrace < 0:
		return fmt.Errorf("--max-connection-age-grace %v: must not be negative (0 lets open calls run to their end)", c.MaxConnectionAgeGrace)
	case c.MaxConnectionAgeGrace > 0 && c.MaxConnectionAge == 0:
		return fmt.Errorf("--max-connection-age-grace %v needs --max-connection-age: the grace starts when a connection reaches that age", c.MaxConnectionAgeGrace)
	}
	return nil
}

// tlsConfig returns the server's TLS configuration, or nil for plaintext.
func (c *Config) tlsConfig() (*tls.Config, error) {
	if c.TLSCert == "" && c.TLSKey == "" {
		if c.TLSClientCA != "" {
			return nil, errors.New("--tls-client-ca needs --tls-cert and --tls-key")
		}
		return nil, nil
	}
	if c.TLSCert == "" || c.TLSKey == "" {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	pair, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("load --tls-cert and --tls-key: %w", err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if c.TLSClientCA != "" {
		pem, err := os.ReadFile(c.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("read --tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-client-ca %s holds no PEM certificate", c.TLSClientCA)
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return conf, nil
}

// fallback resolves descriptors from first, then from then.
type fallback struct{ first, then protodesc.Resolver }

func (f fallback) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	if d, err := f.first.FindFileByPath(path); err == nil {
		return d, nil
	}
	return f.then.FindFileByPath(path)
}

func (f fallback) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	if d, err := f.first.FindDescriptorByName(name); err == nil {
		return d, nil
	}
	return f.then.FindDescriptorByName(name)
}

// Close releases a server that will not Serve: its listeners and in-process connection.
func (s *Server) Close() {
	s.lis.Close()
	if s.mlis != nil {
		s.mlis.Close()
	}
	s.localConn.Close()
	s.localLis.Close()
	s.stopTracing(context.Background())
}
