// Package cluster proves the counter's cluster mode (docs/cluster.md) with real processes: a
// three-member etcd cluster, three concurd counter nodes and one printer, under a load of
// increments with request_ids sent to random nodes, while a node is killed, a node is paused
// past its lease, or etcd's leader is killed. It asserts what happened, never how fast.
package cluster

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	"github.com/concur-dev/concur/internal/e2e"
)

const (
	// The load is 50 workers x 1,000 increments; under -race on a two-core machine
	// the test runs a fifth of each worker's share, and bench/cluster.go the full load.
	workers   = 50
	perWorker = 200
	names     = 200
	lease     = 2 * time.Second
)

func TestMain(m *testing.M) { e2e.Main(m) }

// TestLoad: exact totals, every print job once, each counter's in order.
func TestLoad(t *testing.T) {
	c := startCluster(t)
	c.load(t, func(*cluster) {})
	c.check(t)
}

// TestNodeKilled: a node killed mid-load loses nothing acknowledged; its shards are owned
// again by the others, and retries of what it had applied are replays.
func TestNodeKilled(t *testing.T) {
	c := startCluster(t)
	c.load(t, func(c *cluster) {
		c.nodes[1].Signal(t, syscall.SIGKILL)
		c.dead[1].Store(true)
	})
	c.check(t)
	c.checkOwners(t, c.nodes[0].Addr, c.nodes[2].Addr)
}

// TestNodePaused: a node stopped past its lease wakes up to find its shards owned by the
// others; every commit it then tries is refused by the fence, and nothing is applied twice.
func TestNodePaused(t *testing.T) {
	c := startCluster(t)
	paused := c.nodes[2]
	c.load(t, func(c *cluster) {
		before := c.ownedBy(t, paused.Addr)
		paused.Signal(t, syscall.SIGSTOP)
		// Calls for the paused node's shards wait in its socket meanwhile: once it runs again,
		// its shards' owners apply them and try to commit.
		for i := range 20 {
			c.extra.Go(func() { c.increment(t, nameOf(before, i), fmt.Sprintf("paused-%d", i), 2) })
		}
		for len(c.ownedBy(t, paused.Addr)) > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		for c.free(t) > 0 { // the others took its shards
			time.Sleep(100 * time.Millisecond)
		}
		// A counter of its shards counts on at its new owner; a Get sent to the paused node
		// meanwhile must not answer the value the node still holds when it wakes up.
		name := nameOf(before, 0)
		c.increment(t, name, "moved", 0)
		current, err := c.counters[0].Get(t.Context(), &counterv1.GetRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		read := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			got, err := c.counters[2].Get(ctx, &counterv1.GetRequest{Name: name})
			switch {
			case status.Code(err) == codes.Unavailable:
				read <- nil
			case err != nil:
				read <- fmt.Errorf("Get from the paused node: %v, want an answer or UNAVAILABLE", err)
			case got.GetValue() < current.GetValue():
				read <- fmt.Errorf("the paused node answered Get of %s with %d, after the counter reached %d at its new owner: a stale value", name, got.GetValue(), current.GetValue())
			default:
				read <- nil
			}
		}()
		paused.Signal(t, syscall.SIGCONT)
		if err := <-read; err != nil {
			t.Error(err)
		}
	})
	if n := metric(t, paused.MetricsAddr, "concur_counter_fenced_commits_total"); n < 1 {
		t.Errorf("the paused node counted %v fenced commits, want at least 1\n%s", n, paused.Logs())
	}
	c.check(t)
}

// TestEtcdLeaderKilled: the cluster goes on after etcd elects another leader; nothing is lost.
func TestEtcdLeaderKilled(t *testing.T) {
	c := startCluster(t)
	c.load(t, func(c *cluster) { c.etcd.leader(t).kill(t) })
	c.check(t)
}

// cluster is the processes of one test and what its load did.
type cluster struct {
	etcd     *etcdCluster
	printer  *e2e.Process
	file     string
	nodes    []*e2e.Process
	counters []counterv1.CounterServiceClient
	dead     []atomic.Bool  // nodes killed: the workers call the others
	extra    sync.WaitGroup // increments an event sends

	mu     sync.Mutex
	values map[string][]int64 // the values answered to each counter's increments
	tries  atomic.Int64
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{etcd: startEtcd(t), file: filepath.Join(t.TempDir(), "printed.txt"), values: map[string][]int64{}}
	c.printer = e2e.StartConcurd(t, "--services=printer", "--printer-file="+c.file, "--printer-stdout=false")
	for range 3 {
		addr := e2e.FreeAddr(t)
		p := e2e.StartConcurd(t, "--services=counter", "--listen="+addr, "--metrics-listen=127.0.0.1:0",
			"--counter-etcd="+strings.Join(c.etcd.endpoints(), ","), "--counter-advertise="+addr,
			"--counter-lease="+lease.String(), "--printer-addr="+c.printer.Addr)
		c.nodes = append(c.nodes, p)
		c.counters = append(c.counters, counterv1.NewCounterServiceClient(e2e.Dial(t, p.Addr)))
	}
	c.dead = make([]atomic.Bool, len(c.nodes))
	for c.free(t) > 0 {
		time.Sleep(100 * time.Millisecond)
	}
	return c
}

// load runs the workers; event runs once half of the increments are answered.
func (c *cluster) load(t *testing.T, event func(*cluster)) {
	t.Helper()
	var answered atomic.Int64
	half := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				c.increment(t, fmt.Sprintf("c%03d", rand.IntN(names)), fmt.Sprintf("w%d-%d", w, i), -1)
				if answered.Add(1) == workers*perWorker/2 {
					close(half)
				}
			}
		})
	}
	<-half
	event(c)
	wg.Wait()
	c.extra.Wait()
}

// increment sends one increment, first to node first (-1: a random one), then to random live
// nodes with the same request_id until one answers, and records the answer.
func (c *cluster) increment(t *testing.T, name, id string, first int) {
	req := &counterv1.IncrementRequest{Name: name, RequestId: id}
	giveUp := time.Now().Add(time.Minute)
	for node := first; !t.Failed(); node = -1 {
		for node < 0 || c.dead[node].Load() {
			node = rand.IntN(len(c.nodes))
		}
		c.tries.Add(1)
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		resp, err := c.counters[node].Increment(ctx, req)
		cancel()
		if err == nil {
			c.mu.Lock()
			c.values[name] = append(c.values[name], resp.GetValue())
			c.mu.Unlock()
			return
		}
		if time.Now().After(giveUp) {
			t.Errorf("increment %s of %s failed for a minute: %v", id, name, err)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// check: each counter counted every increment once, and the answers to its increments were
// each of its values once; the printer's file holds each counter's jobs once, in order.
func (c *cluster) check(t *testing.T) {
	t.Helper()
	var client counterv1.CounterServiceClient
	for i := range c.dead {
		if !c.dead[i].Load() {
			client = c.counters[i]
		}
	}
	total := 0
	for name, vs := range c.values {
		total += len(vs)
		seen := map[int64]bool{}
		for _, v := range vs {
			if v < 1 || v > int64(len(vs)) || seen[v] {
				t.Fatalf("counter %s: answers %v are not 1..%d, each once", name, vs, len(vs))
			}
			seen[v] = true
		}
		g, err := client.Get(t.Context(), &counterv1.GetRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if g.GetValue() != int64(len(vs)) {
			t.Errorf("counter %s is %d, want %d", name, g.GetValue(), len(vs))
		}
	}
	if total < workers*perWorker {
		t.Fatalf("%d increments answered, want at least %d", total, workers*perWorker)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for {
		j, err := client.Join(ctx, &counterv1.JoinRequest{})
		if err == nil && j.GetPrinted() {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("counter Join = %v, %v", j, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := printerv1.NewPrinterServiceClient(e2e.Dial(t, c.printer.Addr)).Join(ctx, &printerv1.JoinRequest{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(c.file)
	if err != nil {
		t.Fatal(err)
	}
	printed := map[string]int64{}
	for line := range strings.Lines(string(b)) {
		var name string
		var v int64
		if _, err := fmt.Sscanf(line, "The count of %s is %d\n", &name, &v); err != nil {
			t.Fatalf("printed line %q: %v", line, err)
		}
		if v != printed[name]+1 {
			t.Fatalf("counter %s printed %d after %d", name, v, printed[name])
		}
		printed[name] = v
	}
	for name, vs := range c.values {
		if printed[name] != int64(len(vs)) {
			t.Errorf("counter %s printed up to %d, want %d", name, printed[name], len(vs))
		}
	}
	t.Logf("%d increments in %d calls", total, c.tries.Load())
}

// free is how many shards have no owner.
func (c *cluster) free(t *testing.T) int {
	t.Helper()
	owned := c.owners(t)
	return 64 - len(owned)
}

// owners are the owners of the owned shards, by owner key.
func (c *cluster) owners(t *testing.T) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp, err := c.etcd.client.Get(ctx, "/concur/counter/owner/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	o := map[string]string{}
	for _, kv := range resp.Kvs {
		o[string(kv.Key)] = string(kv.Value)
	}
	return o
}

// ownedBy lists the shards addr owns.
func (c *cluster) ownedBy(t *testing.T, addr string) []int {
	t.Helper()
	var shards []int
	for k, v := range c.owners(t) {
		if v == addr {
			n, _ := strconv.Atoi(strings.TrimPrefix(k, "/concur/counter/owner/"))
			shards = append(shards, n)
		}
	}
	return shards
}

// checkOwners: every shard is owned, by the given nodes only.
func (c *cluster) checkOwners(t *testing.T, addrs ...string) {
	t.Helper()
	owners := c.owners(t)
	if len(owners) != 64 {
		t.Errorf("%d shards owned, want 64", len(owners))
	}
	for k, v := range owners {
		if v != addrs[0] && v != addrs[1] {
			t.Errorf("%s is owned by %s", k, v)
		}
	}
}

// nameOf is the i-th counter name of the load whose shard is one of shards.
func nameOf(shards []int, i int) string {
	in := map[int]bool{}
	for _, s := range shards {
		in[s] = true
	}
	for n := 0; ; n = (n + 1) % names {
		name := fmt.Sprintf("c%03d", n)
		if in[shardOf(name)] {
			if i == 0 {
				return name
			}
			i--
		}
	}
}

// shardOf is the counter's hash of a name onto 64 shards, FNV-1a (docs/cluster.md).
func shardOf(name string) int {
	h := uint32(2166136261)
	for _, b := range []byte(name) {
		h = (h ^ uint32(b)) * 16777619
	}
	return int(h % 64)
}

// metric reads one counter's value off a process's /metrics.
func metric(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("%s has no %s", addr, name)
	return 0
}
