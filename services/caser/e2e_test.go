package caser_test

import (
	"context"
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

// concurd takes the caser's flags and their environment variables, and refuses bad values.
func TestConcurdCaserFlags(t *testing.T) {
	t.Setenv("CONCUR_CASER_IDLE", "50ms")
	p := e2e.StartConcurd(t, "--services=caser")
	s := open(t, caserv1.NewCaserServiceClient(e2e.Dial(t, p.Addr)))
	if g := s.reply().GetGoodbye(); g.GetText() != "<goodbye: no line for 50ms, closing the session>" {
		t.Fatalf("with CONCUR_CASER_IDLE=50ms a silent session got %v", g)
	}

	out, err := exec.Command(e2e.Concurd(t), "--listen=127.0.0.1:0", "--services=caser", "--caser-max-line-bytes=0", "--caser-announce=-1s").CombinedOutput()
	if e2e.ExitCode(err) != 1 ||
		!strings.Contains(string(out), "--caser-max-line-bytes must be positive") || !strings.Contains(string(out), "--caser-announce must not be negative") {
		t.Fatalf("concurd with bad caser flags: %v\n%s", err, out)
	}
}
