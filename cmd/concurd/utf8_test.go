package main_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/concur-dev/concur/internal/e2e"
)

// rawCodec sends bytes as they are, so that a test can send what no protobuf library would
// encode, and reads the reply as bytes.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { *v.(*[]byte) = data; return nil }
func (rawCodec) Name() string                       { return "proto" }

// The contracts are proto3, whose strings must be valid UTF-8: a message holding invalid
// UTF-8 in any string field is refused while it is decoded, before any check of the
// server's, and answered INTERNAL, on unary and streaming calls alike. The same bytes made
// valid reach the service.
func TestInvalidUTF8IsRefusedWhileDecoding(t *testing.T) {
	p := e2e.StartConcurd(t)
	conn, err := grpc.NewClient(p.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Every method named here takes a string as its field 1.
	for _, method := range []string{
		"/concur.counter.v1.CounterService/Increment",
		"/concur.printer.v1.PrinterService/Print",
		"/concur.sitesize.v1.SiteSizeService/Measure",
		"/concur.caser.v1.CaserService/Case",
		"/concur.caser.v1.CaserService/Session",
	} {
		t.Run(method, func(t *testing.T) {
			if code, _ := call(t, conn, method, "ok"); code == codes.Internal {
				t.Fatalf("a valid string was answered INTERNAL")
			}
			code, msg := call(t, conn, method, "caf\xe9")
			if code != codes.Internal || !strings.Contains(msg, "invalid UTF-8") {
				t.Fatalf("invalid UTF-8 was answered %v %q, want INTERNAL saying invalid UTF-8", code, msg)
			}
		})
	}
}

// call sends one message whose field 1 is the string s on a stream of method, which works
// for unary and streaming methods alike, and returns the code and message of its status.
func call(t *testing.T, conn *grpc.ClientConn, method, s string) (codes.Code, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	msg := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), s)
	if err := stream.SendMsg(msg); err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for {
		var reply []byte
		err := stream.RecvMsg(&reply)
		if errors.Is(err, io.EOF) {
			return codes.OK, ""
		}
		if err != nil {
			st := status.Convert(err)
			return st.Code(), st.Message()
		}
	}
}
