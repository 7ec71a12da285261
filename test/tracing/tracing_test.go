// Package tracing proves concur's tracing on the real stack: a concurd's services on
// loopback sockets, a client through internal/dial, and the SDK's in-memory exporter in
// place of a collector. It checks the spans' structure (names, parents, links), never their
// timing.
package tracing

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/internal/demosites"
	"github.com/concur-dev/concur/internal/dial"
	"github.com/concur-dev/concur/internal/stack"
	"github.com/concur-dev/concur/internal/telemetry"
	"github.com/concur-dev/concur/internal/testkit"
	"github.com/concur-dev/concur/services/counter"
)

const (
	incrementMethod = "concur.counter.v1.CounterService/Increment"
	measureMethod   = "concur.sitesize.v1.SiteSizeService/Measure"
)

// traced turns tracing on with an in-memory exporter, starts a stack of the printer, the
// counter and sitesize (allowed to fetch from the demo sites at port, if not 0), and returns a
// connection to it, the exporter, the server's log and a stop that shuts the stack down.
// Every span is exported as it ends.
func traced(t *testing.T, port int) (*tracetest.InMemoryExporter, *testkit.Buffer, func(), *dialed) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	telemetry.Use(tp)
	t.Cleanup(func() {
		telemetry.Use(nil)
		tp.Shutdown(context.Background())
	})

	var cfg stack.Config
	fs := flag.NewFlagSet("concurd", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	args := []string{"--listen=127.0.0.1:0", "--services=printer,counter,sitesize", "--counter-db=" + counter.Memory,
		"--printer-stdout=false", "--sitesize-allow=127.0.0.0/8", "--log-level=debug"}
	if port != 0 {
		args = append(args, fmt.Sprintf("--sitesize-allow-ports=%d", port))
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	var logs testkit.Buffer
	log, err := cfg.Serve.NewLogger(&logs)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := stack.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	conn, err := dial.Config{Addr: srv.Addr().String()}.Dial()
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		conn.Close()
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
	t.Cleanup(stop)
	return exp, &logs, stop, &dialed{counterv1.NewCounterServiceClient(conn), sitesizev1.NewSiteSizeServiceClient(conn)}
}

type dialed struct {
	counter  counterv1.CounterServiceClient
	sitesize sitesizev1.SiteSizeServiceClient
}

// caller starts the span a client's own work would be in, as an application's would.
func caller(t *testing.T) (context.Context, trace.Span) {
	return otel.Tracer("test/tracing").Start(t.Context(), "caller")
}

func TestIncrementIsLinkedToThePrintingOfItsLine(t *testing.T) {
	testkit.NoLeaks(t)
	exp, logs, stop, c := traced(t, 0)
	ctx, span := caller(t)
	if _, err := c.counter.Increment(ctx, &counterv1.IncrementRequest{Name: "traced"}); err != nil {
		t.Fatal(err)
	}
	span.End()
	// Join returns once the printer has written the increment's line.
	if _, err := c.counter.Join(t.Context(), &counterv1.JoinRequest{}); err != nil {
		t.Fatal(err)
	}
	stop() // the long-lived PrintStream's spans end with it

	spans := exp.GetSpans()
	root := only(t, spans, "caller", trace.SpanKindInternal)
	client := only(t, spans, incrementMethod, trace.SpanKindClient)
	server := only(t, spans, incrementMethod, trace.SpanKindServer)
	if client.Parent.SpanID() != root.SpanContext.SpanID() || client.SpanContext.TraceID() != root.SpanContext.TraceID() {
		t.Errorf("the client's Increment span is not a child of the caller's span")
	}
	if server.Parent.SpanID() != client.SpanContext.SpanID() || server.SpanContext.TraceID() != root.SpanContext.TraceID() {
		t.Errorf("the counter's Increment span is not a child of the client's: the trace context did not cross the call")
	}
	if !hasEvent(server, "committed") {
		t.Errorf("the counter's Increment span has no committed event: %v", server.Events)
	}

	var forward *tracetest.SpanStub
	for i, s := range spans {
		if s.Name == "counter.forward" && linksTo(s, server.SpanContext) {
			forward = &spans[i]
		}
	}
	if forward == nil {
		t.Fatalf("no counter.forward span links to the Increment's span; spans: %v", names(spans))
	}
	if forward.SpanKind != trace.SpanKindProducer || forward.Parent.IsValid() || forward.SpanContext.TraceID() == server.SpanContext.TraceID() {
		t.Errorf("the forward span is not a producer root of a trace of its own: kind %v, parent %v", forward.SpanKind, forward.Parent)
	}
	// The hop itself: the counter's PrintStream to the printer, through the in-process
	// connection, traced on both ends.
	pc := only(t, spans, "concur.printer.v1.PrinterService/PrintStream", trace.SpanKindClient)
	ps := only(t, spans, "concur.printer.v1.PrinterService/PrintStream", trace.SpanKindServer)
	if ps.Parent.SpanID() != pc.SpanContext.SpanID() {
		t.Errorf("the printer's PrintStream span is not a child of the counter's")
	}

	// The counter's log line of the call names its trace (the call log is at debug level).
	want := "trace_id=" + server.SpanContext.TraceID().String()
	found := false
	for _, line := range logs.Lines() {
		if strings.Contains(line, incrementMethod) || strings.Contains(line, "grpc.method=Increment") {
			found = found || strings.Contains(line, want)
		}
	}
	if !found {
		t.Errorf("no log line of the Increment carries %s:\n%s", want, logs.String())
	}
}

func TestMeasureHasASpanPerFetch(t *testing.T) {
	testkit.NoLeaks(t)
	sites, err := demosites.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sites.Close()
	urls := sites.URLs()[:3]
	exp, _, stop, c := traced(t, sites.Port())
	ctx, span := caller(t)
	stream, err := c.sitesize.Measure(ctx, &sitesizev1.MeasureRequest{Urls: urls})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := stream.Recv(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	span.End()
	stop()

	spans := exp.GetSpans()
	server := only(t, spans, measureMethod, trace.SpanKindServer)
	fetched := map[string]bool{}
	for _, s := range spans {
		if s.Name != "sitesize.fetch" {
			continue
		}
		if s.Parent.SpanID() != server.SpanContext.SpanID() || s.SpanContext.TraceID() != server.SpanContext.TraceID() {
			t.Errorf("a fetch span is not a child of the Measure span")
		}
		for _, a := range s.Attributes {
			if a.Key == "url.full" {
				fetched[a.Value.AsString()] = true
			}
		}
	}
	for _, u := range urls {
		if !fetched[u] {
			t.Errorf("no fetch span for %s", u)
		}
	}
	if n := len(fetched); n != len(urls) {
		t.Errorf("%d fetch spans for %d URLs", n, len(urls))
	}
}

// only returns the one span named name of kind, failing t unless there is exactly one.
func only(t *testing.T, spans tracetest.SpanStubs, name string, kind trace.SpanKind) tracetest.SpanStub {
	t.Helper()
	var found []tracetest.SpanStub
	for _, s := range spans {
		if s.Name == name && s.SpanKind == kind {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans %s of kind %v, want 1; spans: %v", len(found), name, kind, names(spans))
	}
	return found[0]
}

func linksTo(s tracetest.SpanStub, sc trace.SpanContext) bool {
	for _, l := range s.Links {
		if l.SpanContext.TraceID() == sc.TraceID() && l.SpanContext.SpanID() == sc.SpanID() {
			return true
		}
	}
	return false
}

func hasEvent(s tracetest.SpanStub, name string) bool {
	for _, e := range s.Events {
		if e.Name == name {
			return true
		}
	}
	return false
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name+"/"+s.SpanKind.String())
	}
	return out
}
