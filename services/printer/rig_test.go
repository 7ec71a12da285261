package printer_test

import (
	"context"
	"errors"
	"flag"
	"io"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	"github.com/concur-dev/concur/internal/e2e"
	"github.com/concur-dev/concur/internal/jitter"
	"github.com/concur-dev/concur/internal/testkit"
	"github.com/concur-dev/concur/services/printer"
)

func TestMain(m *testing.M) { e2e.Main(m) }

// config is the printer's configuration from its flags: defaults, then args.
func config(t *testing.T, args ...string) printer.Config {
	t.Helper()
	var c printer.Config
	fs := flag.NewFlagSet("printer", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return c
}

// rig is a printer served by the real server runtime on a loopback port, with a client.
type rig struct {
	printer *printer.Service
	client  printerv1.PrinterServiceClient
	addr    string
	stop    func() error // stops the server gracefully (the printer drains) and returns Serve's result
}

func start(t *testing.T, cfg printer.Config, stdout io.Writer, j jitter.Jitter, dial ...grpc.DialOption) *rig {
	t.Helper()
	p, err := printer.New(cfg, printer.Deps{Stdout: stdout, Jitter: j})
	if err != nil {
		t.Fatalf("printer.New: %v", err)
	}
	addr, stop := e2e.Serve(t, nil, p)
	conn := e2e.Dial(t, addr, dial...)
	return &rig{printer: p, client: printerv1.NewPrinterServiceClient(conn), addr: addr, stop: stop}
}

func (r *rig) print(t *testing.T, lines ...string) uint64 {
	t.Helper()
	resp, err := r.client.Print(context.Background(), &printerv1.PrintRequest{Lines: lines})
	if err != nil {
		t.Fatalf("Print(%q): %v", lines, err)
	}
	return resp.GetSequence()
}

func (r *rig) join(t *testing.T) uint64 {
	t.Helper()
	resp, err := r.client.Join(context.Background(), &printerv1.JoinRequest{})
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	if resp.Sequence == nil {
		t.Fatal("Join's sequence is absent; it must always be present")
	}
	return resp.GetSequence()
}

// tailAll reads a history_only Tail to its end.
func tailAll(t *testing.T, c printerv1.PrinterServiceClient, from uint64) []*printerv1.TailResponse {
	t.Helper()
	stream, err := c.Tail(context.Background(), &printerv1.TailRequest{FromSequence: from, HistoryOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []*printerv1.TailResponse
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return got
		}
		if err != nil {
			t.Fatalf("Tail from %d after %d jobs: %v", from, len(got), err)
		}
		got = append(got, r)
	}
}

// tailLines is the lines of jobs, in order.
func tailLines(jobs []*printerv1.TailResponse) []string {
	var lines []string
	for _, j := range jobs {
		lines = append(lines, j.GetLines()...)
	}
	return lines
}

// gate is a sink whose writes wait until it is opened: a stuck sink.
type gate struct {
	testkit.Buffer
	open     chan struct{}
	openOnce sync.Once
}

// newGate returns a closed gate. Defer its unblock, so that a failing test does not leave the
// printer stuck: deferred calls run before the cleanups that stop the server.
func newGate() *gate { return &gate{open: make(chan struct{})} }

func (g *gate) unblock() { g.openOnce.Do(func() { close(g.open) }) }

func (g *gate) Write(p []byte) (int, error) {
	<-g.open
	return g.Buffer.Write(p)
}

// code returns err's status code and its ErrorInfo reason and metadata, if any.
func code(err error) (codes.Code, string, map[string]string) {
	st := status.Convert(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return st.Code(), info.GetReason(), info.GetMetadata()
		}
	}
	return st.Code(), "", nil
}
