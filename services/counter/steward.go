package counter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
)

const (
	// etcdTimeout bounds one etcd call of the steward or of a shard's store: longer than an
	// etcd leader election, so that a commit rides one out.
	etcdTimeout = 5 * time.Second
	// shardShutdown bounds a shard's drain when it moves away.
	shardShutdown = 10 * time.Second
	// reconcileEvery reads the shard map again even when no watch event came.
	reconcileEvery = time.Second
)

// table is the routing table: an immutable value that the steward replaces on every change
// and handlers read, so that they need no lock and never wait for the steward.
type table struct {
	owners []string         // by shard: the owner's address, "" while it has none
	local  map[int]*running // the shards this node serves; the node's outbox gauges add theirs up
	peers  map[string]counterv1.CounterServiceClient
}

// ownerRecord is one owner key as etcd holds it.
type ownerRecord struct {
	addr  string
	rev   int64 // its create revision: the fence
	lease clientv3.LeaseID
}

// claimed names one claim of a shard: the shard and its owner key's create revision. A
// shard claimed again after its node lost it is another claim, with another revision.
type claimed struct {
	shard int
	rev   int64
}

// running is a shard this node serves.
type running struct {
	shard   int
	svc     *Service
	rev     int64 // the owner key's create revision: the claim
	metrics *metrics
}

// steward is the goroutine that owns this node's place in the cluster (RR 1000): its lease
// session, the shards it serves and the connections to the other nodes. It takes its share
// of the shards, gives up what is above it, and publishes the routing table.
type steward struct {
	cfg       Config
	deps      Deps
	log       *slog.Logger
	metrics   *metrics
	fenced    prometheus.Counter
	client    *clientv3.Client
	committer *committer
	shards    int
	id        string // the cluster's id, in each shard's printer source
	self      string
	table     *atomic.Pointer[table]
	trouble   chan claimed // shards whose commit failed, from their stores

	// The steward goroutine's.
	session *concurrency.Session
	running map[int]*running
	// Claims whose commit failed other than by the fence, by shard: a transaction of the claim
	// may still reach etcd, so the shard is served again only under a new claim, whose fence
	// that transaction fails; the owner key is deleted first.
	failed map[int]int64
	conns  map[string]*grpc.ClientConn
}

func (s *steward) run(ctx context.Context) {
	nodes := s.watch(ctx, nodesPrefix)
	owners := s.watch(ctx, ownerPrefix)
	tick := time.NewTicker(reconcileEvery)
	defer tick.Stop()
	for {
		var lost <-chan struct{}
		if s.session != nil {
			lost = s.session.Done()
		}
		select { // a lost lease first: every moment this node serves without one is a stale read
		case <-lost:
			s.leaseLost()
			continue
		default:
		}
		s.reconcile(ctx)
		select {
		case <-ctx.Done():
			s.leave()
			return
		case _, ok := <-nodes:
			if !ok {
				nodes = s.watch(ctx, nodesPrefix)
			}
		case _, ok := <-owners:
			if !ok {
				owners = s.watch(ctx, ownerPrefix)
			}
		case t := <-s.trouble:
			if r := s.running[t.shard]; r != nil && r.rev == t.rev { // not a claim this node has since given up
				s.stop(t.shard, "a commit failed")
				s.failed[t.shard] = t.rev
			}
		case <-lost:
			s.leaseLost()
		case <-tick.C:
		}
	}
}

// leaseLost stops every shard: another node may own them from now on.
func (s *steward) leaseLost() {
	s.log.Warn("the counter node's etcd lease is lost: it stops serving every shard and joins again")
	s.session = nil
	s.stopAll()
	clear(s.failed) // the owner keys went with the lease
}

// watch tells of every change under prefix; a watch that etcd ends is made again by the
// caller, and the ticker covers what happened meanwhile.
func (s *steward) watch(ctx context.Context, prefix string) clientv3.WatchChan {
	return s.client.Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
}

// reconcile brings the shards this node serves to its fair share and publishes the table. It
// gives up as soon as the lease is lost: an etcd that does not answer must not keep the
// steward from seeing that the lease is gone.
func (s *steward) reconcile(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	if s.session != nil {
		defer context.AfterFunc(s.session.Ctx(), cancel)() // the session's context ends with the lease
	}
	if s.session == nil {
		if err := s.join(ctx); err != nil {
			s.log.Warn("the counter node cannot join the cluster yet", "err", err)
			return
		}
	}
	nodes, owners, err := s.read(ctx)
	if err != nil {
		s.log.Warn("reading the counter cluster's shard map failed", "err", err)
		return
	}
	lease := s.session.Lease()
	var mine []int
	for shard := range s.running {
		if o := owners[shard]; o.lease != lease || o.rev != s.running[shard].rev {
			s.stop(shard, "its owner key is not this node's claim any more")
		}
	}
	for shard, o := range owners {
		switch {
		case o.lease != lease:
		case s.failed[shard] == o.rev:
			if err := s.giveUp(ctx, shard, o.rev); err != nil {
				s.log.Warn("giving up the claim of a shard whose commit failed failed: it is not served until that succeeds", "shard", shard, "err", err)
				owners[shard] = ownerRecord{} // neither served nor claimed again this round
				continue
			}
			delete(s.failed, shard)
			delete(owners, shard) // free: claimed again below, under a new revision
		default:
			mine = append(mine, shard)
		}
	}
	slices.Sort(mine)
	share := fairShare(nodes, s.self, s.shards)
	for len(mine) > share {
		shard := mine[len(mine)-1]
		mine = mine[:len(mine)-1]
		s.release(ctx, shard, owners[shard].rev)
		delete(owners, shard)
	}
	for shard := 0; shard < s.shards && len(mine) < share; shard++ {
		if _, taken := owners[shard]; taken {
			continue
		}
		rev, err := s.claim(ctx, shard)
		if err != nil {
			s.log.Warn("claiming a shard failed", "shard", shard, "err", err)
			break
		}
		if rev != 0 {
			owners[shard] = ownerRecord{addr: s.self, rev: rev, lease: lease}
			mine = append(mine, shard)
		}
	}
	for _, shard := range mine {
		if s.running[shard] == nil {
			if err := s.start(shard, owners[shard].rev); err != nil {
				s.log.Error("starting a shard failed: it is released", "shard", shard, "err", err)
				s.release(ctx, shard, owners[shard].rev)
				delete(owners, shard)
			}
		}
	}
	s.publish(nodes, owners)
}

// join opens a lease session and puts this node's key on it. The lease is granted within ctx:
// the session would grant it without a deadline, and wait for an etcd that is away.
func (s *steward) join(ctx context.Context) error {
	ttl := int(s.cfg.Cluster.Lease.Seconds())
	lease, err := s.client.Grant(ctx, int64(ttl))
	if err != nil {
		return err
	}
	session, err := concurrency.NewSession(s.client, concurrency.WithLease(lease.ID), concurrency.WithTTL(ttl))
	if err != nil {
		return err
	}
	if _, err := s.client.Put(ctx, nodesPrefix+s.self, s.self, clientv3.WithLease(session.Lease())); err != nil {
		session.Orphan()
		return err
	}
	s.session = session
	s.log.Info("the counter node joined the cluster", "advertise", s.self, "lease", fmt.Sprintf("%x", session.Lease()))
	return nil
}

// read returns the nodes, sorted, and the owner of each owned shard.
func (s *steward) read(ctx context.Context) ([]string, map[int]ownerRecord, error) {
	resp, err := s.client.Txn(ctx).Then(clientv3.OpGet(nodesPrefix, clientv3.WithPrefix()), clientv3.OpGet(ownerPrefix, clientv3.WithPrefix())).Commit()
	if err != nil {
		return nil, nil, err
	}
	var nodes []string
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		nodes = append(nodes, strings.TrimPrefix(string(kv.Key), nodesPrefix))
	}
	slices.Sort(nodes)
	owners := map[int]ownerRecord{}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		if shard := shardOfKey(string(kv.Key)); shard >= 0 && shard < s.shards {
			owners[shard] = ownerRecord{addr: string(kv.Value), rev: kv.CreateRevision, lease: clientv3.LeaseID(kv.Lease)}
		}
	}
	return nodes, owners, nil
}

// claim takes a free shard; it returns the owner key's create revision, 0 if another node
// took it first.
func (s *steward) claim(ctx context.Context, shard int) (int64, error) {
	key := ownerKey(shard)
	resp, err := s.client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, s.self, clientv3.WithLease(s.session.Lease()))).Commit()
	if err != nil || !resp.Succeeded {
		return 0, err
	}
	return resp.Header.Revision, nil
}

// release stops serving a shard, then gives up its owner key, so that the next owner loads
// everything this one committed.
func (s *steward) release(ctx context.Context, shard int, rev int64) {
	s.stop(shard, "it is above this node's fair share")
	if err := s.giveUp(ctx, shard, rev); err != nil {
		s.log.Warn("releasing a shard failed: it goes when the lease does", "shard", shard, "err", err)
	}
}

// giveUp deletes the owner key of this node's claim rev of shard, if it is still that claim's.
func (s *steward) giveUp(ctx context.Context, shard int, rev int64) error {
	key := ownerKey(shard)
	_, err := s.client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", rev)).Then(clientv3.OpDelete(key)).Commit()
	return err
}

// start serves a shard this node has claimed: it loads it from etcd and runs its owner.
func (s *steward) start(shard int, rev int64) error {
	st := &etcdStore{
		kv:        s.client,
		committer: s.committer,
		prefix:    shardPrefix(shard),
		ownerKey:  ownerKey(shard),
		rev:       rev,
		source:    fmt.Sprintf("counter-%s-%03d", s.id, shard),
		timeout:   etcdTimeout,
		failed: func(err error) {
			if errors.Is(err, errFenced) {
				s.fenced.Inc()
			}
			select { // never wait: the steward may be waiting for this shard's owner
			case s.trouble <- claimed{shard, rev}:
			default:
			}
		},
	}
	d := s.deps
	d.Log = s.log.With("shard", shard)
	// The counters of increments, commits and resends are shared; the outbox's measures are
	// published by the shard's owner, so each shard has its own, which the node's gauges read
	// through the table.
	m := &metrics{increments: s.metrics.increments, commitSeconds: s.metrics.commitSeconds, resent: s.metrics.resent}
	svc, err := start(s.cfg, d, st, d.Log, m, shardBatch)
	if err != nil {
		return err
	}
	s.running[shard] = &running{shard: shard, svc: svc, rev: rev, metrics: m}
	return nil
}

// stop ends serving a shard: the table stops routing to it first, then its owner drains.
func (s *steward) stop(shard int, why string) {
	r := s.running[shard]
	if r == nil {
		return
	}
	delete(s.running, shard)
	s.unroute(shard)
	s.log.Warn("the counter node stops serving a shard", "shard", shard, "why", why)
	ctx, cancel := context.WithTimeout(context.Background(), shardShutdown)
	defer cancel()
	if err := r.svc.Shutdown(ctx); err != nil && !errors.Is(err, errFenced) {
		s.log.Warn("a shard's shutdown failed", "shard", shard, "err", err)
	}
}

// stopAll stops every shard at once, each draining in parallel.
func (s *steward) stopAll() {
	t := s.table.Load()
	s.table.Store(&table{owners: make([]string, s.shards), peers: t.peers})
	var wg sync.WaitGroup
	for shard, r := range s.running {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), shardShutdown)
			defer cancel()
			if err := r.svc.Shutdown(ctx); err != nil && !errors.Is(err, errFenced) {
				s.log.Warn("a shard's shutdown failed", "shard", shard, "err", err)
			}
		})
	}
	wg.Wait()
	clear(s.running)
}

// leave stops every shard, then gives up the lease, which deletes this node's keys, so that
// the other nodes take its shards at once rather than after the lease's TTL.
func (s *steward) leave() {
	s.stopAll()
	if s.session != nil {
		if err := s.session.Close(); err != nil {
			s.log.Warn("giving up the counter node's lease failed: its shards move when it expires", "err", err)
		}
	}
	for _, c := range s.conns {
		c.Close()
	}
}

// unroute takes a shard out of the table.
func (s *steward) unroute(shard int) {
	t := s.table.Load()
	next := &table{owners: slices.Clone(t.owners), local: maps.Clone(t.local), peers: t.peers}
	next.owners[shard] = ""
	delete(next.local, shard)
	s.table.Store(next)
}

// publish makes the table from the shard map, with a connection to every other node.
func (s *steward) publish(nodes []string, owners map[int]ownerRecord) {
	t := &table{owners: make([]string, s.shards), local: map[int]*running{}, peers: map[string]counterv1.CounterServiceClient{}}
	for shard, o := range owners {
		t.owners[shard] = o.addr
	}
	for shard, r := range s.running {
		t.local[shard] = r
	}
	want := map[string]bool{}
	for _, addr := range slices.Concat(nodes, t.owners) {
		if addr != "" && addr != s.self {
			want[addr] = true
		}
	}
	for addr, c := range s.conns {
		if !want[addr] {
			c.Close()
			delete(s.conns, addr)
		}
	}
	for addr := range want {
		c := s.conns[addr]
		if c == nil {
			var err error
			if c, err = s.deps.Peers.Dial(addr); err != nil {
				s.log.Warn("a counter node's address is unusable", "addr", addr, "err", err)
				continue
			}
			s.conns[addr] = c
		}
		t.peers[addr] = counterv1.NewCounterServiceClient(c)
	}
	s.table.Store(t)
}
