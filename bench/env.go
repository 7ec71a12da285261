package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/concur-dev/concur/internal/serve"
)

// env is what scenarios share in one run: the measuring duration, the rounds, and the server
// of the no-op ceiling.
type env struct {
	duration time.Duration
	rounds   int
	noop     *grpc.ClientConn // the ceiling's server, started at its first measure
	closers  []func()
}

func (e *env) close() {
	for _, c := range e.closers {
		c()
	}
}

// server starts an in-process concur server on a loopback port with services and the no-op
// service registered, the same stack concurd runs, and returns a client connection to it;
// both are stopped when the run ends.
func (e *env) server(services ...serve.Service) (*serve.Server, *grpc.ClientConn, error) {
	var cfg serve.Config
	cfg.RegisterFlags(flag.NewFlagSet("bench", flag.ContinueOnError))
	cfg.Listen = "127.0.0.1:0"
	srv, err := serve.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return nil, nil, err
	}
	srv.Register(append([]serve.Service{noop{}}, services...)...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		srv.Serve(ctx)
		close(done)
	}()
	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		return nil, nil, err
	}
	e.closers = append(e.closers, func() {
		conn.Close()
		cancel()
		<-done
	})
	return srv, conn, nil
}

// ceiling measures the no-op unary RPC with callers callers on a server of the same stack,
// the most any unary RPC can reach here. It is measured anew each time, next to the figure
// it is the yardstick of; only its server is started once per run.
func (e *env) ceiling(ctx context.Context, callers int) (loadResult, error) {
	if e.noop == nil {
		_, conn, err := e.server()
		if err != nil {
			return loadResult{}, err
		}
		e.noop = conn
	}
	r, err := closedLoop(ctx, callers, e.duration, func(ctx context.Context) error {
		return e.noop.Invoke(ctx, noopMethod, &emptypb.Empty{}, &emptypb.Empty{})
	})
	if err != nil {
		return r, fmt.Errorf("load of the no-op ceiling, %d callers: %w", callers, err)
	}
	return r, nil
}

// noop is a service with one unary RPC that does nothing: the ceiling's yardstick.
type noop struct{}

const noopMethod = "/concur.bench.Noop/Call"

func (noop) Name() string                   { return "concur.bench.Noop" }
func (noop) Shutdown(context.Context) error { return nil }
func (noop) Register(r grpc.ServiceRegistrar) {
	r.RegisterService(&grpc.ServiceDesc{
		ServiceName: "concur.bench.Noop",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Call",
			Handler: func(_ any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
				in := new(emptypb.Empty)
				if err := dec(in); err != nil {
					return nil, err
				}
				if icpt == nil {
					return in, nil
				}
				return icpt(ctx, in, &grpc.UnaryServerInfo{FullMethod: noopMethod}, func(context.Context, any) (any, error) { return in, nil })
			},
		}},
	}, noop{})
}
