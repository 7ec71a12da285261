package counter_test

import (
	"flag"
	"io"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	"github.com/concur-dev/concur/internal/e2e"
	"github.com/concur-dev/concur/internal/serve"
	"github.com/concur-dev/concur/internal/testkit"
	"github.com/concur-dev/concur/services/counter"
)

func TestMain(m *testing.M) { e2e.Main(m) }

// noLeaks checks, after everything else the test cleans up, that no goroutine it started
// is left. Call it first.
var noLeaks = testkit.NoLeaks

// config is the counter's default configuration, with a database in the test's folder.
func config(t *testing.T) counter.Config {
	t.Helper()
	var c counter.Config
	c.RegisterFlags(flag.NewFlagSet("test", flag.ContinueOnError))
	c.DB = filepath.Join(t.TempDir(), "counter.db")
	return c
}

var quiet = testkit.Quiet()

// counterServer is a counter served by the real server runtime on a loopback port.
type counterServer struct {
	svc    *counter.Service
	client counterv1.CounterServiceClient
	// stop shuts the server down gracefully, as SIGTERM does, and returns Serve's result.
	stop func() error
}

func startCounter(t testing.TB, cfg counter.Config, deps counter.Deps) *counterServer {
	t.Helper()
	if deps.Log == nil {
		deps.Log = quiet
	}
	svc, err := counter.New(cfg, deps)
	if err != nil {
		t.Fatalf("counter.New: %v", err)
	}
	// A printer that is away is waited for half of the shutdown timeout.
	addr, stop := e2e.Serve(t, func(c *serve.Config) { c.ShutdownTimeout = 2 * time.Second }, svc)
	conn := e2e.Dial(t, addr)
	s := &counterServer{svc: svc, client: counterv1.NewCounterServiceClient(conn)}
	s.stop = func() error {
		err := stop()
		conn.Close()
		return err
	}
	return s
}

// printerClient is the counter's side of a connection to the printer at addr.
func printerClient(t testing.TB, addr string) printerv1.PrinterServiceClient {
	t.Helper()
	return printerv1.NewPrinterServiceClient(e2e.Dial(t, addr, counter.PrinterDialOptions()...))
}

// printerDouble implements the printer contract's PrintStream on a real gRPC server: a
// receipt per job, in order, and a job whose (source, source_sequence) was accepted before
// is acknowledged as a duplicate and not kept twice, as the real printer does. Its memory
// survives stop and restart, like a printer writing to a file.
type printerDouble struct {
	printerv1.UnimplementedPrinterServiceServer
	addr string

	mu   sync.Mutex
	srv  *grpc.Server
	last map[string]uint64
	jobs []*printerv1.PrintJob
	// lose is how many messages to accept and leave unanswered, ending their stream instead,
	// like a printer that wrote them and crashed before its receipts went out.
	lose int
}

func startPrinterDouble(t *testing.T) *printerDouble {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &printerDouble{addr: lis.Addr().String(), last: map[string]uint64{}}
	p.serve(lis)
	t.Cleanup(p.stop)
	return p
}

func (p *printerDouble) serve(lis net.Listener) {
	srv := grpc.NewServer()
	printerv1.RegisterPrinterServiceServer(srv, p)
	p.mu.Lock()
	p.srv = srv
	p.mu.Unlock()
	go srv.Serve(lis)
}

// stop kills the server at once, breaking open streams, like a crash.
func (p *printerDouble) stop() {
	p.mu.Lock()
	srv := p.srv
	p.srv = nil
	p.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

// restart serves again on the same address, remembering what it accepted.
func (p *printerDouble) restart(t *testing.T) {
	t.Helper()
	lis, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", p.addr, err)
	}
	p.serve(lis)
}

func (p *printerDouble) PrintStream(stream printerv1.PrinterService_PrintStreamServer) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := req.Validate(); err != nil {
			return err
		}
		resp := &printerv1.PrintStreamResponse{}
		p.mu.Lock()
		for _, j := range req.GetJobs() {
			r := &printerv1.PrintReceipt{Source: j.GetSource(), SourceSequence: j.GetSourceSequence()}
			if j.GetSource() != "" && j.GetSourceSequence() <= p.last[j.GetSource()] {
				r.Duplicate = true
			} else {
				p.last[j.GetSource()] = j.GetSourceSequence()
				p.jobs = append(p.jobs, j)
				r.Sequence = new(uint64(len(p.jobs)))
			}
			resp.Receipts = append(resp.Receipts, r)
		}
		lost := p.lose > 0
		if lost {
			p.lose--
		}
		p.mu.Unlock()
		if lost {
			return status.Error(codes.Unavailable, "the printer lost its receipts")
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// accepted returns the jobs accepted so far, in order, duplicates left out.
func (p *printerDouble) accepted() []*printerv1.PrintJob {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.jobs)
}

// lines returns the lines of the accepted jobs, as a printer would print them.
func (p *printerDouble) lines() []string {
	var lines []string
	for _, j := range p.accepted() {
		lines = append(lines, j.GetLines()...)
	}
	return lines
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got %v, want code %v", err, code)
	}
}

// errorInfo returns the reason and metadata of err's google.rpc.ErrorInfo, if it has one.
func errorInfo(err error) (string, map[string]string) {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason(), info.GetMetadata()
		}
	}
	return "", nil
}
