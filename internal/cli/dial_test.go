package cli

import (
	"errors"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	"github.com/concur-dev/concur/internal/dial"
	"github.com/concur-dev/concur/internal/testkit"
)

// closedAddr is an address on which nothing listens.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// A call, unary or streaming, that reaches no server says so in a sentence and keeps its
// code.
func TestDialUnreachable(t *testing.T) {
	testkit.NoLeaks(t)
	addr := closedAddr(t)
	conn, err := Dial(dial.Config{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := counterv1.NewCounterServiceClient(conn)
	_, unary := client.Get(t.Context(), &counterv1.GetRequest{})
	stream, streamErr := client.Watch(t.Context(), &counterv1.WatchRequest{})
	if streamErr == nil {
		_, streamErr = stream.Recv()
	}
	want := "no concur service answered at " + addr + ": is concurd running? (connection refused)"
	for kind, err := range map[string]error{"unary": unary, "stream": streamErr} {
		if _, ok := errors.AsType[*unreachable](err); !ok || err.Error() != want || status.Code(err) != codes.Unavailable {
			t.Errorf("%s: %v (code %v), want %q, UNAVAILABLE", kind, err, status.Code(err), want)
		}
	}
}

// An UNAVAILABLE that a server sends is the server's to word.
func TestDialServerUnavailable(t *testing.T) {
	testkit.NoLeaks(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		return status.Error(codes.Unavailable, "shutting down")
	}))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() { srv.Stop(); <-served }()

	conn, err := Dial(dial.Config{Addr: l.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Methods that are never retried (internal/dial), so that the answer is the server's
	// first, not gRPC's account of exhausted retries.
	client := counterv1.NewCounterServiceClient(conn)
	_, unary := client.Increment(t.Context(), &counterv1.IncrementRequest{})
	stream, streamErr := client.IncrementStream(t.Context())
	if streamErr == nil {
		_, streamErr = stream.CloseAndRecv()
	}
	for kind, err := range map[string]error{"unary": unary, "stream": streamErr} {
		if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "shutting down" {
			t.Errorf("%s: %v, want the server's own UNAVAILABLE", kind, err)
		}
	}
}

// A configuration that cannot be used is a usage error.
func TestDialConfigError(t *testing.T) {
	_, err := Dial(dial.Config{Addr: "127.0.0.1:1", TokenFile: "/nonexistent/token"})
	if e, ok := errors.AsType[*exitError](err); !ok || e.code != ExitUsage || !strings.Contains(err.Error(), "read token file") {
		t.Fatalf("%v, want a usage error", err)
	}
	_, err = Dial(dial.Config{})
	if e, ok := errors.AsType[*exitError](err); !ok || e.code != ExitUsage {
		t.Fatalf("no address: %v, want a usage error", err)
	}
}

// Validate makes a request that breaks a contract's rule a usage error.
func TestValidate(t *testing.T) {
	if err := Validate(&counterv1.GetRequest{Name: "hits"}); err != nil {
		t.Fatal(err)
	}
	err := Validate(&counterv1.GetRequest{Name: strings.Repeat("x", 201)})
	if e, ok := errors.AsType[*exitError](err); !ok || e.code != ExitUsage || !strings.HasPrefix(err.Error(), "invalid request: name: ") {
		t.Fatalf("%v, want a usage error naming the field", err)
	}
}

// DialGroup names the flags that internal/dial defines, with the prefix.
func TestDialGroup(t *testing.T) {
	g := DialGroup("To the printer", "printer-")
	want := []string{"printer-addr", "printer-tls", "printer-tls-ca", "printer-tls-cert", "printer-tls-key", "printer-token-file"}
	if g.Title != "To the printer" || strings.Join(g.Prefixes, " ") != strings.Join(want, " ") {
		t.Fatalf("%+v, want %q", g, want)
	}
}
