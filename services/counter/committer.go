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

func (c *committer) run(ctx context.Context) {
	defer close(c.stopped)
	var next []*commitReq
	for {
		if len(next) == 0 {
			select {
			case r := <-c.inbox:
				next = append(next, r)
			case <-ctx.Done():
				return
			}
		}
		ops := 0
		for _, r := range next {
			ops += len(r.ops)
		}
	drain:
		for len(next) < maxTxnOps {
			select {
			case r := <-c.inbox:
				next = append(next, r)
				ops += len(r.ops)
				if ops >= maxTxnOps {
					break drain
				}
			default:
				break drain
			}
		}
		next = c.commit(next)
	}
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
