package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/concur-dev/concur/internal/dial"
	"github.com/concur-dev/concur/internal/telemetry"
)

// tracing measures what tracing costs the smallest call, the no-op unary, where its share is
// the largest. A traced server is set up as concurd is, from OTEL_* variables: it makes a
// span per call and exports the spans in batches (concur's, with no OTEL_BSP_* set) over OTLP
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
// through internal/dial without tracing, as concur's clients do without OTEL_* variables, and
// as grpcurl does. The variables are unset
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

// collector is an OTLP trace receiver on loopback that counts the spans and keeps nothing. It
// stands for a collector that runs elsewhere: it reads the requests' wire format without
// decoding them into messages, so that the figure is what tracing costs the server (making,
// batching, encoding and sending spans), not what decoding them costs a collector, which
// would share this machine's CPUs with the server only here.
type collector struct {
	addr  string
	spans atomic.Int64
}

func (e *env) collector() (*collector, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &collector{addr: lis.Addr().String()}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(wire{}))
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Export", Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var req mem.BufferSlice
			if err := dec(&req); err != nil {
				return nil, err
			}
			defer req.Free()
			n, err := countSpans(req.Materialize())
			if err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "ExportTraceServiceRequest: %v", err)
			}
			c.spans.Add(n)
			return mem.BufferSlice{}, nil // an empty ExportTraceServiceResponse: every span accepted
		}}},
	}, nil)
	go srv.Serve(lis)
	e.closers = append(e.closers, srv.Stop)
	return c, nil
}

// countSpans counts the spans of an encoded ExportTraceServiceRequest: field 2 of each
// ScopeSpans (field 2) of each ResourceSpans (field 1).
func countSpans(req []byte) (int64, error) {
	var n int64
	err := eachField(req, 1, func(rs []byte) error {
		return eachField(rs, 2, func(ss []byte) error {
			return eachField(ss, 2, func([]byte) error { n++; return nil })
		})
	})
	return n, err
}

// eachField calls f with the bytes of every length-delimited field number num of msg.
func eachField(msg []byte, num protowire.Number, f func([]byte) error) error {
	for len(msg) > 0 {
		n, typ, l := protowire.ConsumeTag(msg)
		if l < 0 {
			return protowire.ParseError(l)
		}
		msg = msg[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(msg)
			if l < 0 {
				return protowire.ParseError(l)
			}
			if err := f(v); err != nil {
				return err
			}
			msg = msg[l:]
			continue
		}
		if l = protowire.ConsumeFieldValue(n, typ, msg); l < 0 {
			return protowire.ParseError(l)
		}
		msg = msg[l:]
	}
	return nil
}

// wire is the collector's codec: a request is handed over as its bytes.
type wire struct{}

func (wire) Marshal(v any) (mem.BufferSlice, error) { return v.(mem.BufferSlice), nil }

func (wire) Unmarshal(data mem.BufferSlice, v any) error {
	data.Ref()
	*v.(*mem.BufferSlice) = data
	return nil
}

func (wire) Name() string { return "proto" }
