package counter

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
)

// Cluster is the counter as a node of a cluster on etcd (docs/cluster.md): it serves the
// shards its steward owns, each with its own owner, and forwards every other call to the
// shard's owner. Call Shutdown to release it.
type Cluster struct {
	counterv1.UnimplementedCounterServiceServer
	shards int
	table  atomic.Pointer[table]
	client *clientv3.Client
	stop   context.CancelFunc
	done   chan struct{} // closed when the steward has left the cluster
}

// NewCluster joins the cluster at cfg.Cluster.Etcd, creating it if there is none, and starts
// the steward, which takes this node's share of the shards.
func NewCluster(cfg Config, d Deps) (*Cluster, error) {
	if err := errors.Join(cfg.check(), cfg.Cluster.check()); err != nil {
		return nil, err
	}
	log := d.logger()
	c := &Cluster{shards: cfg.Cluster.Shards, done: make(chan struct{})}
	c.table.Store(&table{owners: make([]string, c.shards)})
	m := makeMetrics()
	if err := m.register(d.Metrics, cfg.OutboxMax, c.outboxes); err != nil {
		return nil, err
	}
	fenced := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "concur_counter_fenced_commits_total",
		Help: "Commits etcd refused because another node owns the shard now: this node had lost its lease.",
	})
	txns := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "concur_counter_etcd_txns_total",
		Help: "etcd transactions that committed the shards' batches: each holds every commit that waited for it.",
	})
	if d.Metrics != nil {
		for _, c := range []prometheus.Collector{fenced, txns} {
			if err := d.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("register counter metrics: %w", err)
			}
		}
	}
	tlsConf, err := cfg.Cluster.tls()
	if err != nil {
		return nil, err
	}
	client, err := clientv3.New(clientv3.Config{Endpoints: cfg.Cluster.endpoints(), DialTimeout: etcdTimeout, TLS: tlsConf, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("--counter-etcd: %w", err)
	}
	id, err := createOrCheck(client, cfg.Cluster.Shards)
	if err != nil {
		client.Close()
		return nil, err
	}
	c.client = client
	w := &committer{kv: client, timeout: etcdTimeout, inbox: make(chan *commitReq, c.shards), stopped: make(chan struct{}), txns: txns}
	s := &steward{cfg: cfg, deps: d, log: log, metrics: m, fenced: fenced, client: client, committer: w, shards: c.shards, id: id,
		self: cfg.Cluster.Advertise, table: &c.table, trouble: make(chan claimed, c.shards),
		running: map[int]*running{}, failed: map[int]int64{}, conns: map[string]*grpc.ClientConn{}}
	ctx, stop := context.WithCancel(context.Background())
	wctx, stopCommitter := context.WithCancel(context.Background())
	c.stop = stop
	go w.run(wctx)
	go func() {
		defer close(c.done)
		defer stopCommitter() // once the shards have made their last commits
		s.run(ctx)
	}()
	log.Info("counter node started", "etcd", cfg.Cluster.Etcd, "advertise", s.self, "shards", c.shards, "cluster", id)
	return c, nil
}

// createOrCheck creates the cluster's record with its number of shards and a new id, unless
// there is one, and refuses another number of shards than the record's. It returns the id.
func createOrCheck(client *clientv3.Client, shards int) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), etcdTimeout)
	defer cancel()
	record := fmt.Sprintf("%d %s", shards, strings.ToLower(rand.Text()[:10]))
	resp, err := client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(clusterKey), "=", 0)).
		Then(clientv3.OpPut(clusterKey, record)).Else(clientv3.OpGet(clusterKey)).Commit()
	if err != nil {
		return "", fmt.Errorf("--counter-etcd: reading the cluster's record: %w", err)
	}
	if !resp.Succeeded {
		record = string(resp.Responses[0].GetResponseRange().Kvs[0].Value)
	}
	n, id, _ := strings.Cut(record, " ")
	if n != strconv.Itoa(shards) {
		return "", fmt.Errorf("--counter-shards %d: the cluster in etcd was created with %s shards; a node must use the same number", shards, n)
	}
	return id, nil
}

// outboxes are the metrics of the shards this node serves now, as its steward published them.
func (c *Cluster) outboxes() []*metrics {
	var ms []*metrics
	for _, r := range c.table.Load().local {
		ms = append(ms, r.metrics)
	}
	return ms
}

// Name is the gRPC service name.
func (c *Cluster) Name() string { return counterv1.CounterService_ServiceDesc.ServiceName }

// Register adds the cluster's handlers to r.
func (c *Cluster) Register(r grpc.ServiceRegistrar) { counterv1.RegisterCounterServiceServer(r, c) }

// Shutdown drains every shard this node serves, gives up its lease so that the other nodes
// take its shards at once, and closes the connection to etcd.
func (c *Cluster) Shutdown(ctx context.Context) error {
	c.stop()
	select {
	case <-c.done:
	case <-ctx.Done():
		c.client.Close() // ends the steward's etcd calls: it leaves as its lease expires
		return fmt.Errorf("the counter node did not leave the cluster in time: %w", ctx.Err())
	}
	return c.client.Close()
}
