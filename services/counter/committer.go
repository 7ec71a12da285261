package counter

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// maxTxnOps is etcd's default limit on the operations of a transaction, and on its compares.
const maxTxnOps = 128

// commitReq is one shard's commit, handed to the node's committer.
type commitReq struct {
	ownerKey string
	rev      int64
	ops      []clientv3.Op
	done     chan error // buffered: the committer never waits for the shard
}

// committer is the goroutine that owns this node's writes to etcd (RR 1000): the shards' owners
// each commit about one increment at a time when callers are spread over many shards, so it
// takes every commit waiting, puts them in one transaction whose compares are every one of
// their fences, and answers each. A transaction refused by a fence reads the owner keys in
// its else branch: the commits whose fence failed are refused, the others go in the next
// transaction.
type committer struct {
	kv      clientv3.KV
	timeout time.Duration
	inbox   chan *commitReq
	stopped chan struct{} // closed when run returns
	txns    prometheus.Counter
}

var errCommitterStopped = errors.New("the node's etcd committer stopped")

// do commits r and returns what etcd said, errFenced if r's fence failed.
func (c *committer) do(r *commitReq) error {
	select {
	case c.inbox <- r:
	case <-c.stopped:
		return errCommitterStopped
	}
	select {
	case err := <-r.done:
		return err
	case <-c.stopped:
		return errCommitterStopped
	}
}

// maxLinger bounds the wait of the committer for the commits that follow a transaction.
const maxLinger = time.Millisecond

// run takes the commits waiting, writes them in one transaction, and again. A shard's owner
// commits one batch at a time, so the shards a transaction answers take their next batches,
// which queued behind it, and hand them over a moment after: a transaction started at once
// would go without them, and they would wait for the next. So while the committer holds fewer
// commits than the last transaction carried, it waits for more, up to half that transaction's
// time and maxLinger. At a light load (one commit at a time) it never waits.
func (c *committer) run(ctx context.Context) {
	defer close(c.stopped)
	var next []*commitReq
	last, took := 0, time.Duration(0) // the commits of the last transaction, and its time
	for {
		if len(next) == 0 {
			select {
			case r := <-c.inbox:
				next = append(next, r)
			case <-ctx.Done():
				return
			}
		}
		next = c.gather(next, last, min(maxLinger, took/2))
		last = len(next)
		start := time.Now()
		next = c.commit(next)
		took = time.Since(start)
	}
}

// gather adds the commits waiting to next, and those that come within linger while next holds
// fewer than want, until a transaction is full.
func (c *committer) gather(next []*commitReq, want int, linger time.Duration) []*commitReq {
	ops := 0
	for _, r := range next {
		ops += len(r.ops)
	}
	var timeout <-chan time.Time
	for len(next) < maxTxnOps && ops < maxTxnOps {
		var r *commitReq
		select {
		case r = <-c.inbox:
		default:
			if len(next) >= want || linger <= 0 {
				return next
			}
			if timeout == nil {
				t := time.NewTimer(linger)
				defer t.Stop()
				timeout = t.C
			}
			select {
			case r = <-c.inbox:
			case <-timeout:
				return next
			}
		}
		next = append(next, r)
		ops += len(r.ops)
	}
	return next
}

// commit writes as many of reqs as fit in one transaction and returns those to try again.
func (c *committer) commit(reqs []*commitReq) []*commitReq {
	n, ops := 0, 0
	for n < len(reqs) && (n == 0 || ops+len(reqs[n].ops) <= maxTxnOps) {
		ops += len(reqs[n].ops)
		n++
	}
	batch, rest := reqs[:n], reqs[n:]
	cmps := make([]clientv3.Cmp, len(batch))
	var then, els []clientv3.Op
	for i, r := range batch {
		cmps[i] = clientv3.Compare(clientv3.CreateRevision(r.ownerKey), "=", r.rev)
		then = append(then, r.ops...)
		els = append(els, clientv3.OpGet(r.ownerKey, clientv3.WithKeysOnly()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	resp, err := c.kv.Txn(ctx).If(cmps...).Then(then...).Else(els...).Commit()
	cancel()
	c.txns.Inc()
	var retry []*commitReq
	for i, r := range batch {
		switch {
		case err != nil:
			r.done <- err
		case resp.Succeeded:
			r.done <- nil
		case owns(resp.Responses[i].GetResponseRange().Kvs, r.rev):
			retry = append(retry, r) // another shard's fence failed, not this one's
		default:
			r.done <- errFenced
		}
	}
	return append(retry, rest...)
}

func owns(kvs []*mvccpb.KeyValue, rev int64) bool {
	return len(kvs) == 1 && kvs[0].CreateRevision == rev
}
