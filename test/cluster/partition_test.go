package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	"github.com/concur-dev/concur/internal/e2e"
)

// TestPartition: a node in its own network namespace is cut off from etcd, the other nodes
// and its clients past its lease, mid-load. The others take its shards and go on answering.
// It loses its lease and stops serving: a caller on its side of the partition is answered
// UNAVAILABLE, never left waiting, and what it could not commit is counted nowhere (a commit
// it sent that etcd gets after the partition heals fails its fence). Healed, it takes its fair
// share back; every increment acknowledged, by it or the others, is counted once.
func TestPartition(t *testing.T) {
	ns := newNetns(t)
	c := &cluster{etcd: startEtcdOn(t, ns.host), file: filepath.Join(t.TempDir(), "printed.txt"), values: map[string][]int64{}}
	c.printer = e2e.StartConcurd(t, "--services=printer", "--listen="+freeAddrOn(t, ns.host),
		"--printer-file="+c.file, "--printer-stdout=false")
	node := func(ip, addr string) []string {
		return []string{"--services=counter", "--listen=" + addr, "--metrics-listen=" + ip + ":0",
			"--counter-etcd=" + strings.Join(c.etcd.endpoints(), ","), "--counter-advertise=" + addr,
			"--counter-lease=" + lease.String(), "--printer-addr=" + c.printer.Addr}
	}
	for range 2 {
		c.nodes = append(c.nodes, e2e.StartConcurd(t, node(ns.host, freeAddrOn(t, ns.host))...))
	}
	// Nothing else listens in a namespace of its own: any port is free there.
	c.nodes = append(c.nodes, ns.startConcurd(t, node(ns.ns, ns.ns+":50051")...))
	for _, p := range c.nodes {
		c.counters = append(c.counters, counterv1.NewCounterServiceClient(e2e.Dial(t, p.Addr)))
	}
	c.dead = make([]atomic.Bool, len(c.nodes))
	waitFor(t, "every shard owned", func() bool { return c.free(t) == 0 })
	cut := c.nodes[2]

	c.load(t, func(c *cluster) {
		before := c.ownedBy(t, cut.Addr)
		c.dead[2].Store(true) // the workers call the others from now on
		ns.partition(t)
		// The cut node cannot prove it still owns its shards: it does not answer a Get from
		// its memory, which the others may have left behind by now.
		ns.checkUnavailable(t, cut.Addr, "Get", fmt.Sprintf(`{"name":%q}`, nameOf(before, 1)), "")
		// A caller beside the cut node increments a counter of its shards: whether the node
		// still serves the shard (its commit cannot reach etcd) or has let it go, the call
		// fails UNAVAILABLE, and the increment must count nowhere.
		ns.checkUnavailable(t, cut.Addr, "Increment", fmt.Sprintf(`{"name":%q,"request_id":"cut-off"}`, nameOf(before, 0)), "")

		waitFor(t, "the others to own the cut node's shards", func() bool {
			return len(c.ownedBy(t, cut.Addr)) == 0 && c.free(t) == 0
		})
		for i := range 20 { // the load goes on through the others, on the moved shards too
			c.increment(t, nameOf(before, i), fmt.Sprintf("moved-%d", i), i%2)
		}
		waitFor(t, "the cut node to see its lease lost", func() bool {
			return strings.Contains(cut.Logs(), "etcd lease is lost: it stops serving every shard")
		})
		ns.checkUnavailable(t, cut.Addr, "Get", fmt.Sprintf(`{"name":%q}`, nameOf(before, 0)), "has no owner right now")

		ns.heal(t)
		c.dead[2].Store(false)
		nodes := []string{c.nodes[0].Addr, c.nodes[1].Addr, cut.Addr}
		slices.Sort(nodes)
		share := 64 / 3
		if slices.Index(nodes, cut.Addr) < 64%3 {
			share++
		}
		waitFor(t, "the healed node to own its fair share", func() bool {
			return len(c.ownedBy(t, cut.Addr)) == share && c.free(t) == 0
		})
	})
	// The healed node learns where the others' shards are from etcd's watch, a moment after
	// it owns its own: wait until every counter answers through it.
	waitFor(t, "every counter to answer through the healed node", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		for name := range c.values {
			if _, err := c.counters[2].Get(ctx, &counterv1.GetRequest{Name: name}); err != nil {
				return false
			}
		}
		j, err := c.counters[2].Join(ctx, &counterv1.JoinRequest{})
		return err == nil && j.GetPrinted()
	})
	c.check(t) // through the healed node
	t.Logf("the cut node counted %v fenced commits", metric(t, cut.MetricsAddr, "concur_counter_fenced_commits_total"))
}

// checkUnavailable calls method of the CounterService at addr from inside the namespace, with
// grpcurl and a deadline, and wants UNAVAILABLE, with want in its message.
func (n *netns) checkUnavailable(t *testing.T, addr, method, req, want string) {
	t.Helper()
	stdout, stderr, err := e2e.RunErr(t, "", n.ip, "netns", "exec", n.name, e2e.Grpcurl(t), "-plaintext", "-max-time=30",
		"-d", req, addr, "concur.counter.v1.CounterService/"+method)
	if err == nil || !strings.Contains(stderr, "Code: Unavailable") || !strings.Contains(stderr, want) {
		t.Fatalf("%s %s from beside the cut node: %v, want UNAVAILABLE (%q)\n%s%s", method, req, err, want, stdout, stderr)
	}
	t.Logf("%s from beside the cut node: %s", method, strings.Join(strings.Fields(stderr), " "))
}
