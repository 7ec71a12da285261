package main

import (
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

func TestCountSpans(t *testing.T) {
	spans := func(n int) []*tracepb.Span {
		s := make([]*tracepb.Span, n)
		for i := range s {
			s[i] = &tracepb.Span{Name: "call", TraceId: make([]byte, 16), SpanId: make([]byte, 8)}
		}
		return s
	}
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{
		{ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans(2)}, {Spans: spans(3)}}, SchemaUrl: "s"},
		{ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans(4), SchemaUrl: "s"}}},
		{},
	}}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := countSpans(b); n != 9 || err != nil {
		t.Errorf("countSpans = %d, %v; want 9 spans", n, err)
	}
	if n, err := countSpans(b[:len(b)-3]); err == nil {
		t.Errorf("countSpans of a cut request = %d, nil; want an error", n)
	}
}
