package dial_test

import (
	"context"
	"errors"
	"flag"
	"io"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

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
		})
	}
}
