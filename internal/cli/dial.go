package cli

import (
	"context"
	"flag"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/concur-dev/concur/internal/dial"
)

// DialGroup is the group of the flags that dial.Config's RegisterFlags defines with prefix.
func DialGroup(title, prefix string) Group {
	g := Group{Title: title}
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	new(dial.Config).RegisterFlags(fs, prefix, "", "")
	fs.VisitAll(func(f *flag.Flag) { g.Prefixes = append(g.Prefixes, f.Name) })
	return g
}

// Dial connects as c says. A call that reaches no server fails with an error that says so in
// a sentence, "no concur service answered at ADDR: is concurd running?", still with the code
// UNAVAILABLE; an UNAVAILABLE that a server sent (it is shutting down, say) is left as it is.
// A configuration that cannot be used (a CA file that is not there) is a usage error.
func Dial(c dial.Config) (*grpc.ClientConn, error) {
	conn, err := c.Dial(
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			var p peer.Peer // set only when the call had a connection to a server
			err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Peer(&p))...)
			if p.Addr == nil {
				return unreached(c.Addr, err)
			}
			return err
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			// Opening a stream waits for a connection, not for the server: whatever the
			// server says comes later, on the stream.
			s, err := streamer(ctx, desc, cc, method, opts...)
			return s, unreached(c.Addr, err)
		}),
	)
	if err != nil {
		return nil, Usage("%v", err)
	}
	return conn, nil
}

// unreached makes an UNAVAILABLE error of a call that reached no server say so.
func unreached(addr string, err error) error {
	if status.Code(err) != codes.Unavailable {
		return err
	}
	return &unreachable{addr: addr, cause: err}
}

// unreachable is the error of a call that reached no server.
type unreachable struct {
	addr  string
	cause error
}

func (e *unreachable) Error() string {
	msg := "no concur service answered at " + e.addr + ": is concurd running?"
	if r := shortReason(status.Convert(e.cause).Message()); r != "" {
		msg += " (" + r + ")"
	}
	return msg
}

// GRPCStatus keeps the code, so that a caller can still tell UNAVAILABLE.
func (e *unreachable) GRPCStatus() *status.Status { return status.New(codes.Unavailable, e.Error()) }

func (e *unreachable) Unwrap() error { return e.cause }

// shortReason is the last clause of gRPC's message, the one that says what went wrong
// ("connection refused", "no such host"), or "" when even that is long.
func shortReason(msg string) string {
	msg = strings.TrimRight(msg, `"`)
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	if len(msg) > 60 {
		return ""
	}
	return msg
}
