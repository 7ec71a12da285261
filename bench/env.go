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

// env is what scenarios share in one run: the measuring duration and yardsticks measured once.
type env struct {
	duration time.Duration
	ceilings map[int]loadResult
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

// ceiling measures, once per run and number of callers, the no-op unary RPC on the same
// server stack: the most any unary RPC can reach here.
func (e *env) ceiling(ctx context.Context, callers int) (loadResult, error) {
	if r, ok := e.ceilings[callers]; ok {
		return r, nil
	}
	_, conn, err := e.server()
	if err != nil {
		return loadResult{}, err
	}
	r, err := closedLoop(ctx, callers, e.duration, func(ctx context.Context) error {
		return conn.Invoke(ctx, noopMethod, &emptypb.Empty{}, &emptypb.Empty{})
	})
	if err != nil {
		return r, fmt.Errorf("load of the no-op ceiling, %d callers: %w", callers, err)
	}
	if e.ceilings == nil {
		e.ceilings = map[int]loadResult{}
	}
	e.ceilings[callers] = r
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
