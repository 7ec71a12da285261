package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	"github.com/concur-dev/concur/internal/counterroute"
	"github.com/concur-dev/concur/internal/dial"
)

// counter-cluster runs the counter as a cluster (docs/cluster.md) of three concurd processes
// on one etcd, and measures what the cluster is for: increments per etcd transaction under
// load, unary Increment next to the naive design of one etcd transaction per increment on the
// same etcd, and the time a killed node's shards take to answer again.
func init() {
	register("counter-cluster", "a three-node counter cluster on etcd: increments per txn, Increment against one txn per increment, failover (needs etcd)", counterCluster)
}

const (
	clusterNodes  = 3
	clusterNames  = 200
	clusterShards = 64 // concurd's default --counter-shards
	clusterLease  = 2 * time.Second
	clusterKills  = 10
)

// clusterNode is one concurd of the cluster.
type clusterNode struct {
	addr, metrics string
	cmd           *exec.Cmd
	client        counterv1.CounterServiceClient
	conn          *grpc.ClientConn
}

func counterCluster(ctx context.Context, e *env) ([]figure, error) {
	bin, cleanup, err := buildConcurd()
	if err != nil {
		return nil, err
	}
	defer cleanup()
	endpoint, stopEtcd, err := startEtcdMember(ctx)
	if err != nil {
		return nil, err
	}
	defer stopEtcd()
	etcd, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	defer etcd.Close()
	nodes := make([]*clusterNode, clusterNodes)
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	for i := range nodes {
		if nodes[i], err = startNode(ctx, bin, endpoint, ""); err != nil {
			return nil, err
		}
	}
	if err := waitOwned(ctx, etcd, nodes); err != nil {
		return nil, err
	}

	naive := func() (float64, error) { return perSecond(oneTxnPerIncrement(ctx, e, etcd)) }
	routed, err := counterroute.New(counterroute.Config{Seed: dial.Config{Addr: nodes[0].addr}, Dial: func(c dial.Config) (*grpc.ClientConn, error) { return c.Dial() }})
	if err != nil {
		return nil, err
	}
	defer routed.Close()
	random := func(nodes []*clusterNode) func(context.Context) counterv1.CounterServiceClient {
		return func(context.Context) counterv1.CounterServiceClient { return nodes[rand.IntN(len(nodes))].client }
	}
	var stats3, statsRouted, stats1 loadStats
	ours3, yard3, ratio3, err := versus(e.rounds, clusterLoad(ctx, e, nodes, random(nodes), &stats3), naive)
	if err != nil {
		return nil, err
	}
	oursRouted, yardRouted, ratioRouted, err := versus(e.rounds, clusterLoad(ctx, e, nodes, func(context.Context) counterv1.CounterServiceClient { return routed }, &statsRouted), naive)
	if err != nil {
		return nil, err
	}
	failovers, err := failover(ctx, bin, endpoint, etcd, nodes)
	if err != nil {
		return nil, err
	}
	// One node: the others leave (SIGTERM gives their shards up at once) and it takes all 64,
	// so that the 50 callers share one committer, as they share three above.
	for i, n := range nodes[1:] {
		n.stop()
		nodes[i+1] = nil
	}
	if err := waitOwned(ctx, etcd, nodes[:1]); err != nil {
		return nil, err
	}
	ours1, yard1, ratio1, err := versus(e.rounds, clusterLoad(ctx, e, nodes[:1], random(nodes[:1]), &stats1), naive)
	if err != nil {
		return nil, err
	}
	// The no-op unary ceiling of one server in this process, against the yardstick: what a
	// gRPC call costs here, beside what one etcd transaction per increment reaches.
	ceiling, err := repeat(e.rounds, func() (float64, error) { return perSecond(e.ceiling(ctx, unaryCallers)) })
	if err != nil {
		return nil, err
	}
	ceilingRatio := spread{median: ceiling.median / yard1.median, min: ceiling.min / yard1.max, max: ceiling.max / yard1.min, n: ceiling.n}

	rate := func(what string, ours, yard, ratio spread) []figure {
		f := rateOf(fmt.Sprintf("cluster Increment, %s, %d callers", what, unaryCallers), ours, "increments")
		f.ratio, f.per, f.target, f.met = &ratio, "x one txn each", ">= 5x one txn each", new(ratio.median >= 5)
		return []figure{f, rateOf(fmt.Sprintf("one etcd txn per increment, %d callers (the yardstick)", unaryCallers), yard, "increments")}
	}
	perTxn := func(what string, st loadStats) []figure {
		per := spreadOf(st.perTxn)
		return []figure{
			{name: fmt.Sprintf("increments per etcd txn, %s, %d callers", what, unaryCallers), value: per, show: fixed(1), target: ">= 20", met: new(per.median >= 20)},
			{name: fmt.Sprintf("calls forwarded by a node, %s", what), value: spreadOf(st.forwarded), show: percent},
		}
	}
	const three, one, toOwners = "3 nodes, calls to random nodes", "1 node", "3 nodes, calls routed to owners"
	ceil := rateOf(fmt.Sprintf("no-op unary, %d callers, one server in the bench's process: the gRPC ceiling", unaryCallers), ceiling, "calls")
	ceil.ratio, ceil.per = &ceilingRatio, "x one txn each"
	return slices.Concat(rate(three, ours3, yard3, ratio3), perTxn(three, stats3),
		rate(toOwners, oursRouted, yardRouted, ratioRouted), perTxn(toOwners, statsRouted),
		rate(one, ours1, yard1, ratio1), perTxn(one, stats1), []figure{ceil,
			{name: fmt.Sprintf("failover: kill to the first answer on a moved shard, lease %v, over %d kills", clusterLease, len(failovers)),
				value: spreadOf(failovers), show: duration}}), nil
}

// loadStats is what the nodes' metrics say of a load's rounds: increments per etcd
// transaction, and the share of the Increment calls a node forwarded to another (each
// forwarded call is handled twice).
type loadStats struct{ perTxn, forwarded []float64 }

// clusterLoad is a round of unary Increments from 50 callers, each through the client that
// client picks, on 200 counters; it records the round's stats over nodes in st.
func clusterLoad(ctx context.Context, e *env, nodes []*clusterNode, client func(context.Context) counterv1.CounterServiceClient, st *loadStats) func() (float64, error) {
	return func() (float64, error) {
		incs0, txns0, handled0, err := clusterCommits(nodes)
		if err != nil {
			return 0, err
		}
		r, err := closedLoop(ctx, unaryCallers, e.duration, func(ctx context.Context) error {
			_, err := client(ctx).Increment(ctx, &counterv1.IncrementRequest{Name: fmt.Sprintf("c%03d", rand.IntN(clusterNames))})
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("load of the cluster's Increment: %w", err)
		}
		incs1, txns1, handled1, err := clusterCommits(nodes)
		if err != nil {
			return 0, err
		}
		st.perTxn = append(st.perTxn, (incs1-incs0)/(txns1-txns0))
		st.forwarded = append(st.forwarded, (handled1-handled0)/(incs1-incs0)-1)
		return r.perSecond(), nil
	}
}

// oneTxnPerIncrement is the naive design: each increment its own fenced etcd transaction,
// with its counter and its request id, each caller on a counter of its own so that it needs
// no read.
func oneTxnPerIncrement(ctx context.Context, e *env, etcd *clientv3.Client) (loadResult, error) {
	fence := "/bench/fence"
	resp, err := etcd.Put(ctx, fence, "me")
	if err != nil {
		return loadResult{}, err
	}
	rev := resp.Header.Revision
	return closedLoop(ctx, unaryCallers, e.duration, func(ctx context.Context) error {
		n := rand.Uint64()
		_, err := etcd.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(fence), "=", rev)).
			Then(clientv3.OpPut(fmt.Sprintf("/bench/c/%d", n%clusterNames), strconv.FormatUint(n, 10)),
				clientv3.OpPut(fmt.Sprintf("/bench/r/%d", n), "1")).Commit()
		return err
	})
}

// failover kills a node, clusterKills times in turn, and measures from the kill to the first
// answered Increment of a counter in a shard the node owned; it restarts the node and waits
// for the shards to be shared again before the next kill.
func failover(ctx context.Context, bin, endpoint string, etcd *clientv3.Client, nodes []*clusterNode) ([]float64, error) {
	var times []float64
	for k := range clusterKills {
		victim := nodes[k%len(nodes)]
		other := nodes[(k+1)%len(nodes)]
		owners, err := shardOwners(ctx, etcd)
		if err != nil {
			return nil, err
		}
		name := ""
		for i := 0; name == ""; i++ {
			if n := fmt.Sprintf("c%03d", i); owners[counterv1.ShardOf(n, clusterShards)] == victim.addr {
				name = n
			}
		}
		victim.cmd.Process.Signal(syscall.SIGKILL)
		victim.cmd.Wait()
		start := time.Now()
		for {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			_, err := other.client.Increment(cctx, &counterv1.IncrementRequest{Name: name})
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			time.Sleep(10 * time.Millisecond)
		}
		times = append(times, float64(time.Since(start)))
		victim.conn.Close()
		restarted, err := startNode(ctx, bin, endpoint, victim.addr)
		if err != nil {
			return nil, err
		}
		*victim = *restarted
		if err := waitOwned(ctx, etcd, nodes); err != nil {
			return nil, err
		}
	}
	return times, nil
}

// startEtcdMember starts a one-member etcd on loopback ports in a temporary folder.
func startEtcdMember(ctx context.Context) (string, func(), error) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		return "", nil, fmt.Errorf("etcd is missing: install Debian's etcd-server package")
	}
	dir, err := os.MkdirTemp("", "concur-bench-etcd-")
	if err != nil {
		return "", nil, err
	}
	client, peer := "http://"+freeLoopback(), "http://"+freeLoopback()
	cmd := exec.CommandContext(ctx, bin, "--name=bench", "--data-dir="+dir, "--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer, "--initial-cluster=bench="+peer)
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return client, func() {
		cmd.Process.Kill()
		cmd.Wait()
		os.RemoveAll(dir)
	}, nil
}

// startNode starts a concurd counter node on addr (a free port if empty) and waits until it
// serves.
func startNode(ctx context.Context, bin, endpoint, addr string) (*clusterNode, error) {
	if addr == "" {
		addr = freeLoopback()
	}
	cmd := exec.CommandContext(ctx, bin, "--services=counter", "--listen="+addr, "--metrics-listen=127.0.0.1:0", "--log-format=json",
		"--counter-etcd="+endpoint, "--counter-advertise="+addr, "--counter-lease="+clusterLease.String())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n := &clusterNode{addr: addr, cmd: cmd}
	sc := bufio.NewScanner(stderr)
	for n.metrics == "" && sc.Scan() {
		var rec struct{ Msg, Metrics string }
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "serving" {
			n.metrics = rec.Metrics
		}
	}
	if n.metrics == "" {
		n.stop()
		return nil, fmt.Errorf("concurd did not start serving: %v", sc.Err())
	}
	go func() {
		for sc.Scan() { // keep draining, so that concurd never blocks on its log
		}
	}()
	if n.conn, err = grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		n.stop()
		return nil, err
	}
	n.client = counterv1.NewCounterServiceClient(n.conn)
	return n, nil
}

func (n *clusterNode) stop() {
	if n == nil {
		return
	}
	if n.conn != nil {
		n.conn.Close()
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	n.cmd.Wait()
}

// waitOwned waits until every shard has an owner and, given the nodes, each owns its share.
func waitOwned(ctx context.Context, etcd *clientv3.Client, nodes []*clusterNode) error {
	for {
		owners, err := shardOwners(ctx, etcd)
		if err != nil {
			return err
		}
		per := map[string]int{}
		for _, o := range owners {
			per[o]++
		}
		fair := len(owners) == clusterShards
		for _, n := range nodes {
			fair = fair && per[n.addr] >= clusterShards/len(nodes)
		}
		if fair {
			return waitRouted(ctx, nodes)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitRouted waits until every node routes every counter of the load: a node learns of a
// shard's new owner from etcd's watch, a moment after etcd knows.
func waitRouted(ctx context.Context, nodes []*clusterNode) error {
	for _, n := range nodes {
		for i := range clusterNames {
			for {
				_, err := n.client.Get(ctx, &counterv1.GetRequest{Name: fmt.Sprintf("c%03d", i)})
				if err == nil {
					break
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(20 * time.Millisecond):
				}
			}
		}
	}
	return nil
}

// shardOwners reads the owner of each owned shard from etcd.
func shardOwners(ctx context.Context, etcd *clientv3.Client) (map[int]string, error) {
	resp, err := etcd.Get(ctx, "/concur/counter/owner/", clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	owners := map[int]string{}
	for _, kv := range resp.Kvs {
		shard, err := strconv.Atoi(strings.TrimPrefix(string(kv.Key), "/concur/counter/owner/"))
		if err != nil {
			return nil, err
		}
		owners[shard] = string(kv.Value)
	}
	return owners, nil
}

// clusterCommits sums the nodes' increments, commits (etcd transactions) and Increment calls
// handled so far.
func clusterCommits(nodes []*clusterNode) (incs, txns, handled float64, err error) {
	for _, n := range nodes {
		resp, err := http.Get("http://" + n.metrics + "/metrics")
		if err != nil {
			return 0, 0, 0, err
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			name, v, ok := strings.Cut(sc.Text(), " ")
			if !ok {
				continue
			}
			f, _ := strconv.ParseFloat(v, 64)
			switch name {
			case "concur_counter_increments_total":
				incs += f
			case "concur_counter_etcd_txns_total":
				txns += f
			default:
				if strings.HasPrefix(name, `grpc_server_handled_total{`) && strings.Contains(name, `grpc_method="Increment"`) {
					handled += f
				}
			}
		}
		resp.Body.Close()
	}
	return incs, txns, handled, nil
}

// freeLoopback is a loopback address whose port is free now.
func freeLoopback() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}
