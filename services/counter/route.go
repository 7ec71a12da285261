package counter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
)

// forwardedKey marks a call one node forwarded to another: the second never forwards it
// again (one hop). Its value is the shard the call is for.
const forwardedKey = "concur-forwarded"

// route finds the shard of a call: the shard this node serves, if it does, else a client of
// its owner with a context that marks the call forwarded and keeps the caller's deadline.
func (c *Cluster) route(ctx context.Context, shard int) (*running, counterv1.CounterServiceClient, context.Context, error) {
	t := c.table.Load()
	if r := t.local[shard]; r != nil {
		return r, nil, ctx, nil
	}
	if forwarded(ctx) {
		return nil, nil, nil, status.Errorf(codes.Unavailable, "shard %d moved off this node while the call was forwarded: retry (with the same request_id, an increment is applied once)", shard)
	}
	peer := t.peers[t.owners[shard]]
	if peer == nil {
		return nil, nil, nil, status.Errorf(codes.Unavailable, "shard %d has no owner right now (it is moving to another node): retry (with the same request_id, an increment is applied once)", shard)
	}
	return nil, peer, metadata.AppendToOutgoingContext(ctx, forwardedKey, strconv.Itoa(shard)), nil
}

func forwarded(ctx context.Context) bool {
	return len(metadata.ValueFromIncomingContext(ctx, forwardedKey)) > 0
}

// Shards answers the routing table's owners: this node's latest view of the shard map, a
// shard it stopped serving already without an owner. A published table is never changed, so
// its owners can go out as they are.
func (c *Cluster) Shards(context.Context, *counterv1.ShardsRequest) (*counterv1.ShardsResponse, error) {
	return &counterv1.ShardsResponse{Shards: new(uint32(c.shards)), Owners: c.table.Load().owners}, nil
}

// Increment goes to the owner of the name's shard.
func (c *Cluster) Increment(ctx context.Context, req *counterv1.IncrementRequest) (*counterv1.IncrementResponse, error) {
	r, peer, ctx, err := c.route(ctx, counterv1.ShardOf(req.GetName(), c.shards))
	switch {
	case err != nil:
		return nil, err
	case r != nil:
		return r.svc.Increment(ctx, req)
	}
	return peer.Increment(ctx, req)
}

// Get goes to the owner of the name's shard.
func (c *Cluster) Get(ctx context.Context, req *counterv1.GetRequest) (*counterv1.GetResponse, error) {
	r, peer, ctx, err := c.route(ctx, counterv1.ShardOf(req.GetName(), c.shards))
	switch {
	case err != nil:
		return nil, err
	case r != nil:
		resp, err := r.svc.Get(ctx, req)
		if err == nil {
			err = c.stillOwns(ctx, r)
		}
		if err != nil {
			return nil, err
		}
		return resp, nil
	}
	return peer.Get(ctx, req)
}

// stillOwns proves, with a read of the shard's owner key, that this node owned the shard
// after it read a value from it, so that the value was the counter's at that moment: a node
// cut off from etcd serves its shards until it sees its lease lost, and by then another node
// may own them and have counted more. An increment needs no such read: its commit is fenced.
func (c *Cluster) stillOwns(ctx context.Context, r *running) error {
	ctx, cancel := context.WithTimeout(ctx, etcdTimeout) // an unreachable etcd: answer, do not hang
	defer cancel()
	resp, err := c.client.Get(ctx, ownerKey(r.shard))
	switch {
	case err != nil:
		return status.Errorf(codes.Unavailable, "shard %d: cannot confirm with etcd that this node still owns it, so its value may be stale: %v", r.shard, err)
	case len(resp.Kvs) != 1 || resp.Kvs[0].CreateRevision != r.rev:
		return status.Errorf(codes.Unavailable, "shard %d moved off this node: read it again", r.shard)
	}
	return nil
}

// Watch goes to the owner of the name's shard. When the shard moves, the owner's watch ends
// UNAVAILABLE, as at a shutdown, and the watcher watches again.
func (c *Cluster) Watch(req *counterv1.WatchRequest, stream counterv1.CounterService_WatchServer) error {
	r, peer, ctx, err := c.route(stream.Context(), counterv1.ShardOf(req.GetName(), c.shards))
	switch {
	case err != nil:
		return err
	case r != nil:
		return r.svc.Watch(req, stream)
	}
	values, err := peer.Watch(ctx, req)
	if err != nil {
		return err
	}
	for {
		v, err := values.Recv()
		if err != nil {
			return err
		}
		if err := stream.Send(v); err != nil {
			return err
		}
	}
}

// Join is a barrier over every shard: it joins each at its owner, all at once, and answers
// when all did, with the sum of their sequences. A forwarded Join joins its one shard.
func (c *Cluster) Join(ctx context.Context, req *counterv1.JoinRequest) (*counterv1.JoinResponse, error) {
	if v := metadata.ValueFromIncomingContext(ctx, forwardedKey); len(v) > 0 {
		shard, err := strconv.Atoi(v[0])
		if err != nil || shard < 0 || shard >= c.shards {
			return nil, status.Errorf(codes.InvalidArgument, "%s %q names no shard", forwardedKey, v[0])
		}
		return c.joinShard(ctx, shard, req)
	}
	answers := make(chan error, c.shards)
	resps := make([]*counterv1.JoinResponse, c.shards)
	for shard := range c.shards {
		go func() {
			var err error
			resps[shard], err = c.joinShard(ctx, shard, req)
			answers <- err
		}()
	}
	var errs []error
	for range c.shards {
		if err := <-answers; err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, withMessage(errs[0], fmt.Sprintf(" (%d of %d shards did not join)", len(errs), c.shards))
	}
	var seq uint64
	printed := true
	for _, r := range resps {
		seq += r.GetSequence()
		printed = printed && r.GetPrinted()
	}
	return &counterv1.JoinResponse{Sequence: &seq, Printed: printed}, nil
}

func (c *Cluster) joinShard(ctx context.Context, shard int, req *counterv1.JoinRequest) (*counterv1.JoinResponse, error) {
	r, peer, ctx, err := c.route(ctx, shard)
	switch {
	case err != nil:
		return nil, err
	case r != nil:
		return r.svc.Join(ctx, req)
	}
	return peer.Join(ctx, req)
}

// IncrementStream goes to the owner of the shard of its first message's counters. A message
// applies whole or not at all, which one etcd transaction of one shard can promise and no
// more: each message's counters must be of that shard, at most maxStreamIncrements of them.
func (c *Cluster) IncrementStream(stream counterv1.CounterService_IncrementStreamServer) error {
	first, err := stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&counterv1.IncrementStreamResponse{Applied: new(uint64(0))})
		}
		return err
	}
	shard, err := c.shardOfMessage(first, -1)
	if err != nil {
		return err
	}
	r, peer, ctx, err := c.route(stream.Context(), shard)
	switch {
	case err != nil:
		return err
	case r != nil:
		return r.svc.IncrementStream(&oneShardStream{CounterService_IncrementStreamServer: stream, c: c, shard: shard, first: first})
	}
	out, err := peer.IncrementStream(ctx)
	if err != nil {
		return err
	}
	for req := first; ; {
		if err := out.Send(req); err != nil {
			break // the owner ended the call: CloseAndRecv says why
		}
		if req, err = stream.Recv(); err == nil {
			_, err = c.shardOfMessage(req, shard)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			out.CloseSend()
			sum, endErr := out.CloseAndRecv()
			if endErr != nil {
				return endErr
			}
			return withMessage(err, fmt.Sprintf("; the %d increments in the messages before it were applied", sum.GetApplied()))
		}
	}
	sum, err := out.CloseAndRecv()
	if err != nil {
		return err
	}
	return stream.SendAndClose(sum)
}

// shardOfMessage is the one shard of a stream message's counters, which must be want unless
// want is -1.
func (c *Cluster) shardOfMessage(req *counterv1.IncrementStreamRequest, want int) (int, error) {
	incs := req.GetIncrements()
	if len(incs) > maxStreamIncrements {
		return 0, fieldError("increments", fmt.Sprintf("holds %d increments; a counter cluster takes at most %d per message", len(incs), maxStreamIncrements))
	}
	for _, inc := range incs {
		shard := counterv1.ShardOf(inc.GetName(), c.shards)
		if want == -1 {
			want = shard
		}
		if shard != want {
			return 0, fieldError("increments", fmt.Sprintf("names counters of shards %d and %d: in a counter cluster a stream's counters must all be of one shard, so that each message applies whole", want, shard))
		}
	}
	return want, nil
}

// oneShardStream hands a shard's IncrementStream handler the first message again, then the
// rest, refusing a message for another shard as a message that failed validation.
type oneShardStream struct {
	counterv1.CounterService_IncrementStreamServer
	c     *Cluster
	shard int
	first *counterv1.IncrementStreamRequest
}

func (s *oneShardStream) Recv() (*counterv1.IncrementStreamRequest, error) {
	if req := s.first; req != nil {
		s.first = nil
		return req, nil
	}
	req, err := s.CounterService_IncrementStreamServer.Recv()
	if err != nil {
		return nil, err
	}
	if _, err := s.c.shardOfMessage(req, s.shard); err != nil {
		return nil, err
	}
	return req, nil
}
