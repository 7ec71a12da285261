package cluster

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	"github.com/concur-dev/concur/internal/counterroute"
	"github.com/concur-dev/concur/internal/dial"
	"github.com/concur-dev/concur/internal/e2e"
)

// TestClientRoutesToOwners: the routing client (internal/counterroute), given one node, sends
// every increment straight to its counter's owner. A forwarded increment is handled twice,
// by the node that forwards it and by the owner, so the nodes together handle exactly as many
// Increment calls as the client made, and each node some of them; the totals are exact.
func TestClientRoutesToOwners(t *testing.T) {
	c := startCluster(t)
	c.settled(t)
	before := c.handledIncrements(t)
	client, err := counterroute.New(counterroute.Config{Seed: dial.Config{Addr: c.nodes[0].Addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	const routedWorkers = 10
	var (
		calls  atomic.Int64
		mu     sync.Mutex
		values = map[string][]int64{}
		wg     sync.WaitGroup
	)
	for w := range routedWorkers {
		wg.Go(func() {
			for i := range perWorker {
				name := fmt.Sprintf("c%03d", rand.IntN(names))
				req := &counterv1.IncrementRequest{Name: name, RequestId: fmt.Sprintf("routed-%d-%d", w, i)}
				for attempt := 0; ; attempt++ {
					calls.Add(1)
					resp, err := client.Increment(t.Context(), req)
					if err == nil {
						mu.Lock()
						values[name] = append(values[name], resp.GetValue())
						mu.Unlock()
						break
					}
					if attempt == 100 {
						t.Errorf("increment %s of %s failed 100 times: %v", req.RequestId, name, err)
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()

	after := c.handledIncrements(t)
	var handled float64
	for i, n := range after {
		n -= before[i]
		handled += n
		if n == 0 {
			t.Errorf("node %d handled no increment: the client did not route to it", i)
		}
	}
	if handled != float64(calls.Load()) {
		t.Errorf("the nodes handled %v Increment calls for the client's %d: %v were forwarded", handled, calls.Load(), handled-float64(calls.Load()))
	}
	total := 0
	for name, vs := range values {
		total += len(vs)
		slices.Sort(vs)
		for i, v := range vs {
			if v != int64(i+1) {
				t.Fatalf("counter %s: answers %v are not 1..%d, each once", name, vs, len(vs))
			}
		}
		g, err := client.Get(t.Context(), &counterv1.GetRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if g.GetValue() != int64(len(vs)) {
			t.Errorf("counter %s is %d, want %d", name, g.GetValue(), len(vs))
		}
	}
	if total != routedWorkers*perWorker {
		t.Errorf("%d increments answered, want %d", total, routedWorkers*perWorker)
	}
	t.Logf("%d increments in %d calls, %v handled by the nodes", total, calls.Load(), handled)
}

// TestRoutedWithTheSeedsCredentials: against nodes that serve TLS, ask for a client
// certificate (mTLS) and a token, the routing client dials each owner with the seed's
// credentials: the increments for the other node's shards are handled by it alone, never by
// the seed that would forward them.
func TestRoutedWithTheSeedsCredentials(t *testing.T) {
	c := &cluster{etcd: startEtcd(t)}
	certs := e2e.WriteCerts(t)
	token := e2e.WriteToken(t, t.TempDir(), "the cluster's token")
	seed := dial.Config{CAFile: certs.CA, CertFile: certs.NodeCert, KeyFile: certs.NodeKey, TokenFile: token}
	for range 2 {
		addr := e2e.FreeAddr(t)
		c.nodes = append(c.nodes, e2e.StartConcurd(t, "--services=counter", "--listen="+addr, "--metrics-listen=127.0.0.1:0",
			"--tls-cert="+certs.NodeCert, "--tls-key="+certs.NodeKey, "--tls-client-ca="+certs.CA, "--auth-token-file="+token,
			"--counter-etcd="+strings.Join(c.etcd.endpoints(), ","), "--counter-advertise="+addr, "--counter-lease="+lease.String()))
		node := seed
		node.Addr = addr
		c.counters = append(c.counters, counterv1.NewCounterServiceClient(dialed(t, node)))
	}
	c.settled(t)
	before := c.handledIncrements(t)
	seed.Addr = c.nodes[0].Addr
	client, err := counterroute.New(counterroute.Config{Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	theirs := c.ownedBy(t, c.nodes[1].Addr)
	const calls = 20
	for i := range calls {
		if _, err := client.Increment(t.Context(), &counterv1.IncrementRequest{Name: nameOf(theirs, i)}); err != nil {
			t.Fatalf("increment %s: %v", nameOf(theirs, i), err)
		}
	}
	after := c.handledIncrements(t)
	if n := after[0] - before[0]; n != 0 {
		t.Errorf("the seed handled %v increments, want 0: every name was of the other node's shards", n)
	}
	if n := after[1] - before[1]; n != calls {
		t.Errorf("the other node handled %v increments, want %d", n, calls)
	}
}

// settled waits until every shard is owned, each node owning its fair share, 64/n or one
// more (which node owns one more follows the sorted addresses), and every node's Shards
// answers that map as etcd holds it: a node that claimed a shard serves it before its map
// says so, so a client routed by any node's map reaches owners that serve their shards.
func (c *cluster) settled(t *testing.T) {
	t.Helper()
	waitFor(t, "the shards shared fairly, every node's map etcd's", func() bool {
		if c.free(t) > 0 {
			return false
		}
		for _, n := range c.nodes {
			if owned := len(c.ownedBy(t, n.Addr)); owned != 64/len(c.nodes) && owned != 64/len(c.nodes)+1 {
				return false
			}
		}
		return c.mapsAgree(t)
	})
}

// mapsAgree says whether every node's Shards answers the owners etcd holds.
func (c *cluster) mapsAgree(t *testing.T) bool {
	t.Helper()
	want := make([]string, 64)
	for k, v := range c.owners(t) {
		n, err := strconv.Atoi(strings.TrimPrefix(k, "/concur/counter/owner/"))
		if err != nil {
			t.Fatalf("owner key %s: %v", k, err)
		}
		want[n] = v
	}
	for _, client := range c.counters {
		m, err := client.Shards(t.Context(), &counterv1.ShardsRequest{})
		if err != nil {
			t.Fatalf("Shards: %v", err)
		}
		if m.GetShards() != 64 {
			t.Fatalf("Shards says %d shards, want 64", m.GetShards())
		}
		if !slices.Equal(m.GetOwners(), want) {
			return false
		}
	}
	return true
}

// handledIncrements is, for each node, how many Increment calls it has handled, from its
// grpc_server_handled_total series (every code).
func (c *cluster) handledIncrements(t *testing.T) []float64 {
	t.Helper()
	var counts []float64
	for _, n := range c.nodes {
		var sum float64
		sc := bufio.NewScanner(strings.NewReader(e2e.Metrics(t, n.MetricsAddr)))
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "grpc_server_handled_total{") ||
				!strings.Contains(line, `grpc_method="Increment"`) ||
				!strings.Contains(line, `grpc_service="concur.counter.v1.CounterService"`) {
				continue
			}
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			sum += v
		}
		counts = append(counts, sum)
	}
	return counts
}
