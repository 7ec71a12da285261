package dial_test

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/emptypb"

	caserv1 "github.com/concur-dev/concur/api/concur/caser/v1"
	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/internal/dial"
	"github.com/concur-dev/concur/internal/e2e"
	"github.com/concur-dev/concur/internal/serve"
	"github.com/concur-dev/concur/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// listServices makes a call that needs the token (reflection is not exempt from auth).
func listServices(t *testing.T, c dial.Config) error {
	t.Helper()
	conn, err := c.Dial()
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()
	return listServicesOn(conn)
}

func listServicesOn(conn *grpc.ClientConn) error {
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
	if err != nil {
		return err
	}
	defer stream.CloseSend()
	// io.EOF from Send means the server already ended the call (a refused token, say): Recv
	// returns its status.
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	_, err = stream.Recv()
	return err
}

func TestDialWithMutualTLSAndToken(t *testing.T) {
	certs := e2e.WriteCerts(t)
	token := e2e.WriteToken(t, t.TempDir(), "tok")
	var cfg serve.Config
	cfg.RegisterFlags(flag.NewFlagSet("", flag.ContinueOnError))
	cfg.Listen, cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA, cfg.AuthTokenFile = "127.0.0.1:0", certs.ServerCert, certs.ServerKey, certs.CA, token
	srv, err := serve.New(cfg, testkit.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	// Flags as a command registers them, under a prefix.
	var c dial.Config
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	c.RegisterFlags(fs, "printer-", "printer", "")
	if err := fs.Parse([]string{"--printer-addr=" + srv.Addr().String(), "--printer-tls-ca=" + certs.CA,
		"--printer-tls-cert=" + certs.ClientCert, "--printer-tls-key=" + certs.ClientKey, "--printer-token-file=" + token}); err != nil {
		t.Fatal(err)
	}
	if err := listServices(t, c); err != nil {
		t.Fatalf("with certificate and token: %v", err)
	}
	noToken := c
	noToken.TokenFile = ""
	if err := listServices(t, noToken); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("without token: %v, want Unauthenticated", err)
	}
	noCert := c
	noCert.CertFile, noCert.KeyFile = "", ""
	if err := listServices(t, noCert); status.Code(err) != codes.Unavailable {
		t.Fatalf("without client certificate: %v, want Unavailable", err)
	}
	plain := dial.Config{Addr: c.Addr}
	if err := listServices(t, plain); err == nil {
		t.Fatal("plaintext reached a TLS server")
	}

	// A Dialer reads its files once: it goes on dialing with them once they are gone.
	dir := t.TempDir()
	gone := c
	gone.TokenFile = e2e.WriteToken(t, dir, "tok")
	d, err := gone.Dialer()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	conn, err := d.Dial(c.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := listServicesOn(conn); err != nil {
		t.Fatalf("through a Dialer whose token file is gone: %v", err)
	}
}

func TestDialRefusesBadFiles(t *testing.T) {
	for name, c := range map[string]dial.Config{
		"no address":   {},
		"missing CA":   {Addr: "x:1", CAFile: "/nonexistent"},
		"missing cert": {Addr: "x:1", CertFile: "/nonexistent", KeyFile: "/nonexistent"},
		"token file":   {Addr: "x:1", TokenFile: "/nonexistent"},
	} {
		t.Run(name, func(t *testing.T) {
			if conn, err := c.Dial(); err == nil {
				conn.Close()
				t.Errorf("%s: Dial succeeded", name)
			}
			if _, err := c.Dialer(); err == nil && c.Addr != "" {
				t.Errorf("%s: Dialer succeeded", name)
			}
		})
	}
}

func TestAddresses(t *testing.T) {
	for addr, wantErr := range map[string]string{
		"localhost:50051":                   "",
		"127.0.0.1:1":                       "",
		"[::1]:1":                           "",
		"dns:///concur-replicas.test:50051": "",
		"dns://127.0.0.53/example.com:443":  "",
		"dns:example.com:443":               "",
		"unix:///run/concur.sock":           "",
		"unix:concur.sock":                  "",
		"passthrough:///10.0.0.1:50051":     "",
		"localhost":                         `address "localhost" has no port: give host:port, such as localhost:50051`,
		"localhost:":                        `address "localhost:" has no port: give host:port, such as localhost:50051`,
		"[::1]":                             `address "[::1]" has no port: give host:port, such as [::1]:50051`,
		"dns:///concur-replicas.test":       `address "dns:///concur-replicas.test" has no port: give host:port, such as dns:///concur-replicas.test:50051`,
		"dns://127.0.0.53/example.com":      `such as dns://127.0.0.53/example.com:50051`,
		"::1":                               `address "::1" is not host:port (too many colons in address): give one such as localhost:50051 or [::1]:50051`,
		"http://localhost:50051":            `is not host:port`,
	} {
		conn, err := dial.Config{Addr: addr}.Dial()
		if err == nil {
			conn.Close()
		}
		if wantErr == "" && err != nil || wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)) {
			t.Errorf("Dial %q: %v, want %q", addr, err, cmp.Or(wantErr, "no error"))
		}
	}
}

// retryable is every method gRPC retries; docs/replicas.md says why each is safe to call
// again, and why the others are not.
var retryable = map[string]bool{
	"/concur.counter.v1.CounterService/Get":       true,
	"/concur.counter.v1.CounterService/Join":      true,
	"/concur.counter.v1.CounterService/Watch":     true,
	"/concur.counter.v1.CounterService/Shards":    true,
	"/concur.printer.v1.PrinterService/Join":      true,
	"/concur.printer.v1.PrinterService/Tail":      true,
	"/concur.sitesize.v1.SiteSizeService/Measure": true,
	"/concur.caser.v1.CaserService/Case":          true,
	"/concur.caser.v1.CaserService/Session":       true,
}

// Every method of the four contracts, called once on a server that answers every call
// UNAVAILABLE: the retryable ones are attempted four times, the others once.
func TestRetriesOnlyWhatIsSafe(t *testing.T) {
	var mu sync.Mutex
	attempts := map[string]int{}
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(stream)
		mu.Lock()
		attempts[method]++
		mu.Unlock()
		return status.Error(codes.Unavailable, "replica going away")
	}))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := dial.Config{Addr: lis.Addr().String()}.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	var methods []protoreflect.MethodDescriptor
	for _, f := range []protoreflect.FileDescriptor{counterv1.File_concur_counter_v1_counter_proto, printerv1.File_concur_printer_v1_printer_proto,
		sitesizev1.File_concur_sitesize_v1_sitesize_proto, caserv1.File_concur_caser_v1_caser_proto} {
		for i := range f.Services().Len() {
			for j := range f.Services().Get(i).Methods().Len() {
				methods = append(methods, f.Services().Get(i).Methods().Get(j))
			}
		}
	}
	var wg sync.WaitGroup
	for _, m := range methods {
		name := fmt.Sprintf("/%s/%s", m.Parent().FullName(), m.Name())
		wg.Go(func() {
			desc := &grpc.StreamDesc{ServerStreams: m.IsStreamingServer(), ClientStreams: m.IsStreamingClient()}
			stream, err := conn.NewStream(t.Context(), desc, name)
			if err == nil {
				stream.SendMsg(&emptypb.Empty{}) // io.EOF once the server answered: RecvMsg has it
				stream.CloseSend()
				err = stream.RecvMsg(&emptypb.Empty{})
			}
			// grpc-go can end a retried stream whose replayed request met the server's close
			// with io.EOF inside its ErrRetriesExhausted rather than the server's status (1
			// run in 5 under -race); what this test is about is the count of attempts below.
			if status.Code(err) != codes.Unavailable && !errors.Is(err, io.EOF) {
				t.Errorf("%s: %v, want the server's Unavailable", name, err)
			}
		})
	}
	wg.Wait()
	for name := range retryable {
		if _, ok := attempts[name]; !ok {
			t.Errorf("retryable method %s is in no contract", name)
		}
	}
	for name, n := range attempts {
		if want := map[bool]int{true: 4, false: 1}[retryable[name]]; n != want {
			t.Errorf("%s attempted %d times, want %d", name, n, want)
		}
	}
}
