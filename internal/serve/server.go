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
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// A Service is one gRPC service run by a Server.
type Service interface {
	// Name is the service's full gRPC name (concur.printer.v1.PrinterService): its health
	// status is reported under it.
	Name() string
	// Register adds the service's handlers to the server.
	Register(grpc.ServiceRegistrar)
	// Shutdown is called once, when the server has stopped taking new calls and is waiting
	// for open ones. It finishes what the service accepted and ends the service's open streams
	// (telling their clients why), so that the wait ends. Services are shut down in the
	// reverse of the order they were given to New, so a service given later may still use one
	// given earlier while it drains. Shutdown returns when its work is done or ctx ends.
	Shutdown(ctx context.Context) error
}

// Server is a configured gRPC server with its listeners open.
type Server struct {
	cfg      Config
	log      *slog.Logger
	services []Service
	grpc     *grpc.Server
	health   *health.Server
	lis      net.Listener
	metrics  *http.Server
	mlis     net.Listener
}

// New builds the server and opens its listeners, so that Addr is known before Serve.
func New(cfg Config, log *slog.Logger, services ...Service) (*Server, error) {
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.MaxRecvMsgBytes),
		grpc.MaxSendMsgSize(cfg.MaxSendMsgBytes),
		grpc.MaxConcurrentStreams(uint32(min(cfg.MaxConcurrentStreams, 1<<32-1))),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: cfg.KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: cfg.KeepaliveTime, Timeout: cfg.KeepaliveTimeout}),
	}
	tlsConf, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	if tlsConf != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsConf)))
	}
	var token []byte
	if cfg.AuthTokenFile != "" {
		if token, err = readToken(cfg.AuthTokenFile); err != nil {
			return nil, err
		}
	}
	metrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	unary, stream := interceptorChain(log, metrics, token)
	opts = append(opts, grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...))

	s := &Server{cfg: cfg, log: log, services: services, grpc: grpc.NewServer(opts...), health: health.NewServer()}
	healthpb.RegisterHealthServer(s.grpc, s.health)
	refl := reflection.ServerOptions{Services: s.grpc, DescriptorResolver: protoregistry.GlobalFiles}
	if cfg.Descriptors != nil {
		refl.DescriptorResolver = fallback{cfg.Descriptors, protoregistry.GlobalFiles}
	}
	reflectionv1.RegisterServerReflectionServer(s.grpc, reflection.NewServerV1(refl))
	reflectionv1alpha.RegisterServerReflectionServer(s.grpc, reflection.NewServer(refl))
	for _, svc := range services {
		svc.Register(s.grpc)
		s.health.SetServingStatus(svc.Name(), healthpb.HealthCheckResponse_SERVING)
	}
	metrics.InitializeMetrics(s.grpc)

	if s.lis, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen on --listen %s: %w", cfg.Listen, err)
	}
	if cfg.MetricsListen != "" {
		if s.mlis, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			s.lis.Close()
			return nil, fmt.Errorf("listen on --metrics-listen %s: %w", cfg.MetricsListen, err)
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(metrics, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		s.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	}
	return s, nil
}

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
// listener closes and new calls are refused, each service's Shutdown finishes its accepted
// work and ends its streams, and open calls are waited for until --shutdown-timeout, after
// which they are cut. It returns nil when everything drained in time.
func (s *Server) Serve(ctx context.Context) error {
	served := make(chan error, 1)
	go func() { served <- s.grpc.Serve(s.lis) }()
	if s.metrics != nil {
		go func() {
			if err := s.metrics.Serve(s.mlis); !errors.Is(err, http.ErrServerClosed) {
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
	s.log.Info("shutting down", "timeout", s.cfg.ShutdownTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()

	s.health.Shutdown()
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	var errs []error
	for _, svc := range slices.Backward(s.services) {
		if err := svc.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shut down %s: %w", svc.Name(), err))
		}
	}
	select {
	case <-stopped:
	case <-ctx.Done():
		s.grpc.Stop()
		<-stopped
		errs = append(errs, fmt.Errorf("open calls did not end within --shutdown-timeout %v; they were cut", s.cfg.ShutdownTimeout))
	}
	if s.metrics != nil {
		if err := s.metrics.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop metrics server: %w", err))
		}
	}
	err := errors.Join(errs...)
	if err != nil {
		s.log.Error("shutdown incomplete", "err", err)
	} else {
		s.log.Info("shutdown complete")
	}
	return err
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
