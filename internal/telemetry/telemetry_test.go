package telemetry

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/stats"
)

func TestWanted(t *testing.T) {
	for _, c := range []struct {
		env     map[string]string
		on, err bool
	}{
		{env: nil},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, on: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, on: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, on: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}},
		{env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, err: true},
	} {
		for _, name := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
			t.Setenv(name, c.env[name])
		}
		on, err := wanted()
		if on != c.on || (err != nil) != c.err {
			t.Errorf("%v: on %v, err %v; want on %v, an error %v", c.env, on, err, c.on, c.err)
		}
	}
}

func TestStartOffChangesNothing(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	stop, err := Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ServerOptions() != nil || DialOptions() != nil {
		t.Error("tracing is off, but stats handlers are offered")
	}
	if err := stop(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestStartOnUntilStopped(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1") // nothing is exported: no span is made
	for _, protocol := range []string{"", "grpc", "http/protobuf"} {
		t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
		stop, err := Start(context.Background())
		if err != nil {
			t.Fatalf("protocol %q: %v", protocol, err)
		}
		if ServerOptions() == nil || DialOptions() == nil {
			t.Errorf("protocol %q: tracing is on, but no stats handler is offered", protocol)
		}
		// A second Start, a server's in a process that traces already, leaves tracing to the
		// first: its stop turns nothing off.
		again, err := Start(context.Background())
		if err != nil {
			t.Fatalf("protocol %q: a second Start: %v", protocol, err)
		}
		if err := again(context.Background()); err != nil || ServerOptions() == nil {
			t.Errorf("protocol %q: the second Start's stop (%v) turned tracing off", protocol, err)
		}
		if err := stop(context.Background()); err != nil {
			t.Errorf("protocol %q: stop: %v", protocol, err)
		}
		if ServerOptions() != nil {
			t.Errorf("protocol %q: stopped, but stats handlers are still offered", protocol)
		}
	}
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
	if _, err := Start(context.Background()); err == nil {
		t.Error("OTEL_EXPORTER_OTLP_PROTOCOL=http/json was taken")
	}
}

func TestLoggerAddsTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	log := Logger(slog.New(slog.NewTextHandler(&buf, nil))).With("service", "counter")
	if Logger(log) != log {
		t.Error("Logger wrapped its own logger again")
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	log.InfoContext(trace.ContextWithSpanContext(context.Background(), sc), "traced")
	log.InfoContext(context.Background(), "untraced")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if want := "service=counter trace_id=" + sc.TraceID().String() + " span_id=" + sc.SpanID().String(); !strings.HasSuffix(lines[0], want) {
		t.Errorf("traced line %q does not end with %q", lines[0], want)
	}
	if strings.Contains(lines[1], "trace_id") {
		t.Errorf("untraced line %q has a trace_id", lines[1])
	}
}

// events records the events a stats handler is given.
type events struct {
	stats.Handler
	got []string
}

func (e *events) HandleRPC(_ context.Context, s stats.RPCStats) {
	e.got = append(e.got, fmt.Sprintf("%T", s))
}

// A server span is begun in TagRPC and ended by the End event: spanEvents passes the Begin and
// End events of a call, and none of the five others.
func TestSpanEventsPassesBeginAndEnd(t *testing.T) {
	rec := &events{}
	h := spanEvents{rec}
	for _, s := range []stats.RPCStats{&stats.Begin{}, &stats.InHeader{}, &stats.InPayload{}, &stats.OutHeader{},
		&stats.OutPayload{}, &stats.OutTrailer{}, &stats.InTrailer{}, &stats.End{}} {
		h.HandleRPC(context.Background(), s)
	}
	if want := []string{"*stats.Begin", "*stats.End"}; !slices.Equal(rec.got, want) {
		t.Errorf("the handler was given %v, want %v", rec.got, want)
	}
}
