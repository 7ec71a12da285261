package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/concur-dev/concur/internal/dial"
	"github.com/concur-dev/concur/internal/telemetry"
)

// tracing measures what tracing costs the smallest call, the no-op unary, where its share is
// the largest. A traced server is set up as concurd is, from OTEL_* variables: it makes a
// span per call and exports the spans in batches (the default OTEL_BSP_* settings) over OTLP
// to a collector in this process. The target holds for every call sampled; a second figure
// samples one trace in ten (OTEL_TRACES_SAMPLER=parentbased_traceidratio). The client is
// untraced, as grpcurl is. Untraced is the stack of the ceiling, reached through
// internal/dial, which then adds nothing.
func init() {
	register("tracing", "the no-op unary at 50 callers, traced to an in-process OTLP collector and untraced, against the no-op unary ceiling", tracingCost)
}

func tracingCost(ctx context.Context, e *env) ([]figure, error) {
	col, err := e.collector()
	if err != nil {
		return nil, err
	}
	otlp := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + col.addr, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
	all, err := e.dialServer(otlp)
	if err != nil {
		return nil, err
	}
	otlp["OTEL_TRACES_SAMPLER"], otlp["OTEL_TRACES_SAMPLER_ARG"] = "parentbased_traceidratio", "0.1"
	tenth, err := e.dialServer(otlp)
	if err != nil {
		return nil, err
	}
	untraced, err := e.dialServer(nil)
	if err != nil {
		return nil, err
	}

	var figs []figure
	for _, c := range []struct {
		name     string
		conn     *grpc.ClientConn
		min, max float64 // the target's bounds of the ratio to the ceiling, if any
	}{
		{"traced server, every call", all, 0.85, 0},
		{"traced server, 1 in 10 sampled", tenth, 0, 0},
		{"untraced", untraced, 0.95, 1.05},
	} {
		var lat latencies
		calls, ceiling, ratio, err := versus(e.rounds, func() (float64, error) {
			r, err := closedLoop(ctx, unaryCallers, e.duration, func(ctx context.Context) error {
				return c.conn.Invoke(ctx, noopMethod, &emptypb.Empty{}, &emptypb.Empty{})
			})
			if err != nil {
				return 0, fmt.Errorf("load of the no-op unary, %s: %w", c.name, err)
			}
			return lat.rate(r, nil)
		}, func() (float64, error) { return perSecond(e.ceiling(ctx, unaryCallers)) })
		if err != nil {
			return nil, err
		}
		f := rateOf(fmt.Sprintf("no-op unary, %d callers, %s", unaryCallers, c.name), calls, "calls")
		f.ratio, f.per = &ratio, " of no-op"
		switch {
		case c.max > 0:
			f.target, f.met = fmt.Sprintf("%.2f–%.2f of no-op", c.min, c.max), new(ratio.median >= c.min && ratio.median <= c.max)
		case c.min > 0:
			f.target, f.met = fmt.Sprintf(">= %.2f of no-op", c.min), new(ratio.median >= c.min)
		}
		figs = append(append(figs, f), lat.figures("no-op unary, "+c.name)...)
		figs = append(figs, rateOf(fmt.Sprintf("no-op unary, %d callers (the yardstick)", unaryCallers), ceiling, "calls"))
	}
	if col.spans.Load() == 0 { // the traced figures would measure tracing that exports nothing
		return nil, errors.New("the collector received no span")
	}
	return figs, nil
}

// dialServer starts a server of the bench's stack with the OTEL_* variables vars set, so
// that it traces as concurd would with them (not at all with none), and connects to it
// through internal/dial without tracing, as concur's clients do. The variables are unset
// again and tracing is turned off for what is made after it; the server keeps its tracer
// provider, and flushes it when the run ends.
func (e *env) dialServer(vars map[string]string) (*grpc.ClientConn, error) {
	for k, v := range vars {
		os.Setenv(k, v)
	}
	srv, _, err := e.server()
	for k := range vars {
		os.Unsetenv(k)
	}
	telemetry.Use(nil)
	if err != nil {
		return nil, err
	}
	conn, err := dial.Config{Addr: srv.Addr().String()}.Dial()
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, func() { conn.Close() })
	return conn, nil
}

// collector is an OTLP trace receiver on loopback that counts the spans and keeps nothing.
type collector struct {
	coltracepb.UnimplementedTraceServiceServer
	addr  string
	spans atomic.Int64
}

func (e *env) collector() (*collector, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &collector{addr: lis.Addr().String()}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, c)
	go srv.Serve(lis)
	e.closers = append(e.closers, srv.Stop)
	return c, nil
}

func (c *collector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			c.spans.Add(int64(len(ss.GetSpans())))
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}
