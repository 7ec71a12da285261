package tracing

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"

	"github.com/concur-dev/concur/internal/e2e"
)

func TestMain(m *testing.M) { e2e.Main(m) }

// TestCommandTracesThroughConcurd runs the concur command and concurd as processes, both
// exporting to one OTLP collector as the OTEL_* variables say: the command's Increment is a
// client span of service "concur", and concurd's server span of the call is its child, in the
// same trace.
func TestCommandTracesThroughConcurd(t *testing.T) {
	col := startCollector(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+col.addr)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100") // milliseconds: concurd exports while it runs
	srv := e2e.StartConcurd(t, "--services=counter", "--counter-db=:memory:")
	e2e.Run(t, "", e2e.Build(t, "./clients/concur"), "--addr="+srv.Addr, "incr", "traced")

	const method = "concur.counter.v1.CounterService/Increment"
	client := col.wait(t, "concur", method, tracepb.Span_SPAN_KIND_CLIENT)
	server := col.wait(t, "concurd", method, tracepb.Span_SPAN_KIND_SERVER)
	if !slices.Equal(server.TraceId, client.TraceId) || !slices.Equal(server.ParentSpanId, client.SpanId) {
		t.Errorf("concurd's span is in trace %x under span %x, want trace %x under the command's span %x",
			server.TraceId, server.ParentSpanId, client.TraceId, client.SpanId)
	}
	if len(client.ParentSpanId) != 0 {
		t.Errorf("the command's span has parent %x, want a root span", client.ParentSpanId)
	}
}

// collector is an OTLP trace receiver that keeps every span with its service's name.
type collector struct {
	coltracepb.UnimplementedTraceServiceServer
	addr    string
	mu      sync.Mutex
	spans   []servedSpan
	arrived chan struct{} // a token after each export
}

type servedSpan struct {
	service string
	*tracepb.Span
}

func startCollector(t *testing.T) *collector {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{addr: lis.Addr().String(), arrived: make(chan struct{}, 1)}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, c)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return c
}

func (c *collector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, servedSpan{service, s})
			}
		}
	}
	c.mu.Unlock()
	select {
	case c.arrived <- struct{}{}:
	default:
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// wait returns the one span of service named name of that kind, once it has arrived.
func (c *collector) wait(t *testing.T, service, name string, kind tracepb.Span_SpanKind) *tracepb.Span {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		c.mu.Lock()
		var found []*tracepb.Span
		for _, s := range c.spans {
			if s.service == service && s.GetName() == name && s.GetKind() == kind {
				found = append(found, s.Span)
			}
		}
		c.mu.Unlock()
		switch {
		case len(found) > 1:
			t.Fatalf("%d %v spans %s of %s, want 1", len(found), kind, name, service)
		case len(found) == 1:
			return found[0]
		}
		select {
		case <-c.arrived:
		case <-deadline:
			t.Fatalf("no %v span %s of service %s reached the collector", kind, name, service)
		}
	}
}
