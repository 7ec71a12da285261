package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	"github.com/concur-dev/concur/internal/dial"
	"github.com/concur-dev/concur/internal/e2e"
)

// TestSecureForwarding: nodes that serve TLS, ask for client certificates (mTLS) and a token
// forward calls to each other with their own certificate and token. Calls to one node for the
// other's shards are answered, and counted by the other; a call without the client
// certificate, in plaintext or with a wrong token is refused.
func TestSecureForwarding(t *testing.T) {
	c := &cluster{etcd: startEtcd(t)}
	certs := e2e.WriteCerts(t)
	dir := t.TempDir()
	token := e2e.WriteToken(t, dir, "the cluster's token")
	for range 2 {
		addr := e2e.FreeAddr(t)
		c.nodes = append(c.nodes, e2e.StartConcurd(t, "--services=counter", "--listen="+addr, "--metrics-listen=127.0.0.1:0",
			"--tls-cert="+certs.NodeCert, "--tls-key="+certs.NodeKey, "--tls-client-ca="+certs.CA, "--auth-token-file="+token,
			"--counter-etcd="+strings.Join(c.etcd.endpoints(), ","), "--counter-advertise="+addr, "--counter-lease="+lease.String()))
	}
	c.balanced(t)
	client := dial.Config{Addr: c.nodes[0].Addr, CAFile: certs.CA, CertFile: certs.NodeCert, KeyFile: certs.NodeKey, TokenFile: token}
	first := counterv1.NewCounterServiceClient(dialed(t, client))

	theirs := c.ownedBy(t, c.nodes[1].Addr)
	const calls = 20
	for i := range calls {
		incrementUntilRouted(t, first, nameOf(theirs, i), fmt.Sprintf("secure-%d", i))
	}
	if g, err := first.Get(t.Context(), &counterv1.GetRequest{Name: nameOf(theirs, 0)}); err != nil || g.GetValue() != 1 {
		t.Errorf("Get through the first node = %v, %v; want 1", g, err)
	}
	if _, err := first.Join(t.Context(), &counterv1.JoinRequest{}); err != nil {
		t.Errorf("Join through the first node, over both: %v", err)
	}
	if n := metric(t, c.nodes[1].MetricsAddr, "concur_counter_increments_total"); n != calls {
		t.Errorf("the second node applied %v increments, want the %d forwarded to it", n, calls)
	}
	if n := metric(t, c.nodes[0].MetricsAddr, "concur_counter_increments_total"); n != 0 {
		t.Errorf("the first node applied %v increments, want 0: every name was of the second's shards", n)
	}

	second := client
	second.Addr = c.nodes[1].Addr
	wrongToken := second
	wrongToken.TokenFile = filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(wrongToken.TokenFile, []byte("not the cluster's token"), 0o600); err != nil {
		t.Fatal(err)
	}
	noCert := second
	noCert.CertFile, noCert.KeyFile = "", ""
	for what, refused := range map[string]struct {
		cfg  dial.Config
		code codes.Code
	}{
		"a wrong token":         {wrongToken, codes.Unauthenticated},
		"no client certificate": {noCert, codes.Unavailable},
		"plaintext":             {dial.Config{Addr: second.Addr, TokenFile: token}, codes.Unavailable},
	} {
		_, err := counterv1.NewCounterServiceClient(dialed(t, refused.cfg)).Get(t.Context(), &counterv1.GetRequest{Name: nameOf(theirs, 0)})
		if status.Code(err) != refused.code {
			t.Errorf("a call to a node with %s: %v, want it refused with %v", what, err, refused.code)
		}
	}
}

// TestPeerCredentialsChecked: a node refuses to start, naming the flag, when it could not
// reach the others: a CA file it cannot read, or a certificate that may not authenticate a
// client while the nodes ask for client certificates.
func TestPeerCredentialsChecked(t *testing.T) {
	certs := e2e.WriteCerts(t) // its server certificate is for serverAuth alone
	for want, args := range map[string][]string{
		"--counter-peer-ca: read CA file":    {"--tls-cert=" + certs.NodeCert, "--tls-key=" + certs.NodeKey, "--counter-peer-ca=" + filepath.Join(t.TempDir(), "missing.pem")},
		"lacks the clientAuth":               {"--tls-cert=" + certs.ServerCert, "--tls-key=" + certs.ServerKey, "--tls-client-ca=" + certs.CA},
		"--counter-peer-ca needs --tls-cert": {"--counter-peer-ca=" + certs.CA},
	} {
		args = append([]string{"--services=counter", "--listen=127.0.0.1:0", "--counter-etcd=http://" + e2e.FreeAddr(t), "--counter-advertise=127.0.0.1:1"}, args...)
		_, stderr, err := e2e.RunErr(t, "", e2e.Concurd(t), args...)
		if err == nil || !strings.Contains(stderr, want) {
			t.Errorf("concurd %s: %v, stderr %q; want it to refuse to start with %q", strings.Join(args, " "), err, stderr, want)
		}
	}
}

// TestOutboxMetrics: with the printer gone, each node's outbox gauge counts the print jobs of
// the shards it serves, whichever node was called; when a node is killed, the node that
// takes its shards counts their jobs too. (A shard that moves away drops out of its former
// node's gauge: services/counter's TestClusterOutboxGauges.)
func TestOutboxMetrics(t *testing.T) {
	c := &cluster{etcd: startEtcd(t)}
	printer := e2e.StartConcurd(t, "--services=printer", "--printer-file="+filepath.Join(t.TempDir(), "printed.txt"), "--printer-stdout=false")
	start := func() *e2e.Process {
		addr := e2e.FreeAddr(t)
		return e2e.StartConcurd(t, "--services=counter", "--listen="+addr, "--metrics-listen=127.0.0.1:0", "--printer-addr="+printer.Addr,
			"--counter-etcd="+strings.Join(c.etcd.endpoints(), ","), "--counter-advertise="+addr, "--counter-lease="+lease.String())
	}
	c.nodes = []*e2e.Process{start(), start()}
	// The printer goes away only once the shards are shared: a node that gives up a shard
	// waits for its forwarder to reach the printer, a few seconds for each shard.
	c.balanced(t)
	printer.Signal(t, syscall.SIGKILL)
	printer.Wait(t.Context(), t)
	client := counterv1.NewCounterServiceClient(e2e.Dial(t, c.nodes[0].Addr))
	const calls = 50
	for i := range calls {
		incrementUntilRouted(t, client, fmt.Sprintf("m%03d", i), fmt.Sprintf("outbox-%d", i))
	}
	c.checkOutboxes(t, calls)

	// Killed, not stopped: a shard's drain waits for the printer that is away.
	c.nodes[1].Signal(t, syscall.SIGKILL)
	c.nodes = c.nodes[:1]
	c.balanced(t)
	c.checkOutboxes(t, calls)
}

// checkOutboxes waits until each node's concur_counter_outbox_jobs is the number of the
// first calls names m000... whose shards it owns (a node shows a shard once it has loaded
// it), and checks that a node with jobs shows their age.
func (c *cluster) checkOutboxes(t *testing.T, calls int) {
	t.Helper()
	owners := c.owners(t)
	for _, node := range c.nodes {
		want := 0
		for i := range calls {
			if owners[fmt.Sprintf("/concur/counter/owner/%03d", shardOf(fmt.Sprintf("m%03d", i)))] == node.Addr {
				want++
			}
		}
		deadline := time.Now().Add(time.Minute)
		for metric(t, node.MetricsAddr, "concur_counter_outbox_jobs") != float64(want) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if got := metric(t, node.MetricsAddr, "concur_counter_outbox_jobs"); got != float64(want) {
			t.Fatalf("node %s shows %v print jobs waiting, want %d, those of the shards it owns", node.Addr, got, want)
		}
		if age := metric(t, node.MetricsAddr, "concur_counter_outbox_oldest_age_seconds"); want > 0 && age <= 0 {
			t.Errorf("node %s has %d print jobs waiting, but their oldest's age is %v", node.Addr, want, age)
		}
	}
}

// balanced waits until the nodes own all 64 shards, each its fair share, so that no shard
// moves while the test sends its calls.
func (c *cluster) balanced(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		fair := c.free(t) == 0
		for i, node := range c.nodes {
			share := 64 / len(c.nodes)
			if i < 64%len(c.nodes) {
				share++
			}
			fair = fair && len(c.ownedBy(t, node.Addr)) == share
		}
		if fair {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shards are not shared fairly after a minute: %v", c.owners(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// incrementUntilRouted sends an increment until it is answered, retrying only UNAVAILABLE
// (the node called has not seen the shard's owner yet), with the same request_id.
func incrementUntilRouted(t *testing.T, client counterv1.CounterServiceClient, name, id string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := client.Increment(t.Context(), &counterv1.IncrementRequest{Name: name, RequestId: id})
		if err == nil {
			return
		}
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			t.Fatalf("increment %s: %v", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func dialed(t *testing.T, c dial.Config) *grpc.ClientConn {
	t.Helper()
	conn, err := c.Dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
