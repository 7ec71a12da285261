package caser_test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"

	caserv1 "github.com/concur-dev/concur/api/concur/caser/v1"
	"github.com/concur-dev/concur/internal/e2e"
)

// A real concurd with a thousand open sessions, some in title mode, takes SIGTERM: every
// session gets the shutdown goodbye and ends, and the process exits 0, which it does only
// when everything drained within --shutdown-timeout.
func TestConcurdSaysGoodbyeToThousandSessionsOnSIGTERM(t *testing.T) {
	p := e2e.StartConcurd(t, "--services=caser")
	var clients []caserv1.CaserServiceClient
	for range 4 {
		clients = append(clients, caserv1.NewCaserServiceClient(e2e.Dial(t, p.Addr)))
	}
	sessions := make([]*session, 1000)
	for i := range sessions {
		sessions[i] = open(t, clients[i%len(clients)])
		if i%3 == 0 {
			sessions[i].ask("title")
		}
	}

	p.Signal(t, syscall.SIGTERM)
	for i, s := range sessions {
		if g := s.reply().GetGoodbye(); g.GetReason() != caserv1.GoodbyeReason_GOODBYE_REASON_SHUTDOWN {
			t.Fatalf("session %d got %v at SIGTERM, want the shutdown goodbye", i, g)
		}
		s.ended(codes.OK)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if code := p.Wait(ctx, t); code != 0 {
		t.Fatalf("concurd exited %d after SIGTERM, want 0\n%s", code, p.Logs())
	}
	if !strings.Contains(p.Logs(), `"msg":"shutdown complete"`) {
		t.Fatalf("no clean shutdown in the logs:\n%s", p.Logs())
	}
}

// The README's grpcurl lines: a whole session through -d @, Case, and Case refused.
func TestGrpcurl(t *testing.T) {
	p := e2e.StartConcurd(t, "--services=caser", "--caser-announce=0")
	grpcurl := e2e.Grpcurl(t)

	session := `{"line": "hello"}
{"line": "title"}
{"line": "hello world"}
{"line": "quit"}
`
	out, _ := e2e.Run(t, session, grpcurl, "-plaintext", "-d", "@", p.Addr, "concur.caser.v1.CaserService/Session")
	inOrder(t, out,
		`"welcome": {`, `"text": "\u003cwelcome: starting in upper case mode\u003e"`,
		`"cased": {`, `"text": "HELLO"`, `"mode": "MODE_UPPER"`,
		`"modeChanged": {`, `"mode": "MODE_TITLE"`,
		`"cased": {`, `"text": "Hello World"`, `"mode": "MODE_TITLE"`,
		`"goodbye": {`, `"reason": "GOODBYE_REASON_QUIT"`)

	out, _ = e2e.Run(t, "", grpcurl, "-plaintext", "-d", `{"text": "straße ﬁsh"}`, p.Addr, "concur.caser.v1.CaserService/Case")
	inOrder(t, out, `"text": "STRASSE FISH"`, `"mode": "MODE_UPPER"`)
	out, _ = e2e.Run(t, "", grpcurl, "-plaintext", "-d", `{"text": "hello_world ΟΔΟΣ", "mode": "MODE_TITLE"}`, p.Addr, "concur.caser.v1.CaserService/Case")
	inOrder(t, out, `"text": "Hello_World Οδος"`, `"mode": "MODE_TITLE"`)

	_, stderr, err := e2e.RunErr(t, "", grpcurl, "-plaintext", "-d", `{"text": "hello", "mode": 7}`, p.Addr, "concur.caser.v1.CaserService/Case")
	if err == nil {
		t.Fatal("grpcurl succeeded with an unknown mode")
	}
	inOrder(t, stderr, "Code: InvalidArgument", "google.rpc.BadRequest", `"field": "mode"`)
}

// inOrder checks that out holds each of wants, one after the other.
func inOrder(t *testing.T, out string, wants ...string) {
	t.Helper()
	rest := out
	for _, w := range wants {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Fatalf("missing %s (in order) in:\n%s", w, out)
		}
		rest = rest[i+len(w):]
	}
}

// concurd takes the caser's flags and their environment variables, and refuses bad values.
func TestConcurdCaserFlags(t *testing.T) {
	t.Setenv("CONCUR_CASER_IDLE", "50ms")
	p := e2e.StartConcurd(t, "--services=caser")
	s := open(t, caserv1.NewCaserServiceClient(e2e.Dial(t, p.Addr)))
	if g := s.reply().GetGoodbye(); g.GetText() != "<goodbye: no line for 50ms, closing the session>" {
		t.Fatalf("with CONCUR_CASER_IDLE=50ms a silent session got %v", g)
	}

	out, err := exec.Command(e2e.Concurd(t), "--listen=127.0.0.1:0", "--services=caser", "--caser-max-line-bytes=0", "--caser-announce=-1s").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 ||
		!strings.Contains(string(out), "--caser-max-line-bytes must be positive") || !strings.Contains(string(out), "--caser-announce must not be negative") {
		t.Fatalf("concurd with bad caser flags: %v\n%s", err, out)
	}
}
