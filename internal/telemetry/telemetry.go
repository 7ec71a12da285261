// Package telemetry is concur's tracing: OpenTelemetry set up from the standard OTEL_*
// environment variables, the otelgrpc stats handlers that internal/serve and internal/dial
// add while it is on, and a log handler that names the trace of a call.
//
// Tracing is off unless the environment asks for it. Off, no stats handler is installed and
// the tracer provider is OpenTelemetry's no-op one, so a call costs what it did before.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
)

// on says whether servers and connections made from now on trace their calls.
var on atomic.Bool

// Start sets tracing up from the environment, for the whole process, and returns what
// flushes and stops it. Tracing is on when OTEL_TRACES_EXPORTER is otlp, or when it is unset
// and OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set; it stays off
// with OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true. The exporter reads the other
// OTEL_EXPORTER_OTLP_* variables itself (OTEL_EXPORTER_OTLP_PROTOCOL grpc or http/protobuf,
// the default), the SDK reads OTEL_TRACES_SAMPLER, OTEL_BSP_* and the span limits, and the
// resource OTEL_SERVICE_NAME (else the program's name) and OTEL_RESOURCE_ATTRIBUTES.
// stop turns tracing off and exports the spans still queued. Off, Start changes nothing and
// its stop does nothing; so does a Start while tracing is on already (a command that runs a
// server in its process, as the talk does, traces with the command's provider).
func Start(ctx context.Context) (stop func(context.Context) error, err error) {
	nothing := func(context.Context) error { return nil }
	if enabled, err := wanted(); !enabled || err != nil || on.Load() {
		return nothing, err
	}
	exp, err := exporter(ctx)
	if err != nil {
		return nothing, err
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", filepath.Base(os.Args[0]))),
		resource.WithFromEnv(), // after the default, so OTEL_SERVICE_NAME wins
		resource.WithHost(),
		resource.WithTelemetrySDK())
	if err != nil {
		return nothing, fmt.Errorf("tracing resource: %w", err)
	}
	var batch []sdktrace.BatchSpanProcessorOption
	if os.Getenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") == "" {
		batch = append(batch, sdktrace.WithMaxExportBatchSize(exportBatch))
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, batch...), sdktrace.WithResource(res))
	Use(tp)
	return func(ctx context.Context) error {
		Use(nil)
		return tp.Shutdown(ctx)
	}, nil
}

// exportBatch is the most spans one export carries unless OTEL_BSP_MAX_EXPORT_BATCH_SIZE
// says otherwise; the SDK's default is 512. A batch of 512 short spans encodes to more than
// 100 KB, past the sizes gRPC keeps buffers of for reuse, so every export allocated its
// buffers anew and the runtime kept returning that memory to the system: at 128 a traced
// call took 10% less CPU (internal/serve's stack, the no-op call, every call traced).
const exportBatch = 128

// wanted reads whether the environment turns tracing on.
func wanted() (bool, error) {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return false, nil
	}
	switch e := os.Getenv("OTEL_TRACES_EXPORTER"); e {
	case "otlp":
		return true, nil
	case "none":
		return false, nil
	case "":
		return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "", nil
	default:
		return false, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: concur exports traces with otlp, or none", e)
	}
}

// exporter is the OTLP exporter of the protocol the environment names.
func exporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	protocol := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch protocol {
	case "grpc":
		return otlptracegrpc.New(ctx)
	case "", "http/protobuf":
		return otlptracehttp.New(ctx)
	}
	return nil, errors.New("OTEL_EXPORTER_OTLP_PROTOCOL=" + protocol + ": concur exports traces over grpc or http/protobuf")
}

// Use makes tp the process's tracer provider, with W3C trace context propagation, and turns
// tracing on for the servers and connections made from now on; nil turns it off again.
// Start calls it; tests and benchmarks call it with a provider of their own.
func Use(tp trace.TracerProvider) {
	on.Store(tp != nil)
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
}

// untraced leaves out the calls that tools poll: health checks and reflection.
var untraced = filters.None(filters.HealthCheck(), filters.ServicePrefix("grpc.reflection."))

// ServerOptions are a server's otelgrpc stats handler while tracing is on, else none.
func ServerOptions() []grpc.ServerOption {
	if !on.Load() {
		return nil
	}
	return []grpc.ServerOption{grpc.StatsHandler(spanEvents{otelgrpc.NewServerHandler(otelgrpc.WithFilter(untraced))})}
}

// spanEvents hands otelgrpc's server handler only the events a server span is made of: the
// call's begin and end (the span starts in TagRPC). A call has five more, and they cost what
// a no-op call costs in all: the payload and trailer events, which the handler looks two
// values up in the context for and then ignores, and the header event, which adds the
// server's own address and port to every span, the same on each; the resource names the host.
type spanEvents struct{ stats.Handler }

func (h spanEvents) HandleRPC(ctx context.Context, s stats.RPCStats) {
	switch s.(type) {
	case *stats.Begin, *stats.End:
		h.Handler.HandleRPC(ctx, s)
	}
}

// DialOptions are a connection's otelgrpc stats handler while tracing is on, else none.
func DialOptions() []grpc.DialOption {
	if !on.Load() {
		return nil
	}
	return []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithFilter(untraced)))}
}
