package counter

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdStore keeps one shard in etcd (docs/cluster.md). Like every store it belongs to its
// shard's owner goroutine. Every commit is one transaction whose compare is the fence: the
// shard's owner key still has the create revision this node's claim made it with; the node's
// committer puts the commits of its shards that wait at the same time in one transaction.
type etcdStore struct {
	kv        clientv3.KV
	committer *committer // writes this node's commits, the fence of each in the transaction
	prefix    string     // the shard's keys: prefix+"m", prefix+"c/"+name, prefix+"b/"+seq
	ownerKey  string
	rev       int64 // the owner key's create revision when this node claimed the shard
	source    string
	timeout   time.Duration // the most one load or commit waits for etcd
	failed    func(error)   // told when a commit fails, errFenced when it failed its fence

	// The owner goroutine's: the last print job acknowledged, and the batch keys in etcd,
	// oldest first, so that a commit can delete those nothing needs any more.
	printed uint64
	batches []batchKey
}

// batchKey is what the store remembers of one batch key: its last print job, and how many of
// its request ids the ledger has not forgotten yet (the ledger forgets in the order it
// remembers, so a count is enough).
type batchKey struct {
	key      string
	lastJob  uint64
	requests int
}

// errFenced is a commit refused because this node no longer owns the shard.
var errFenced = errors.New("fenced: another node owns the shard now, this node's commit wrote nothing")

func (s *etcdStore) load(withOutbox bool) (*state, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	resp, err := s.kv.Get(ctx, s.prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("load shard %s from etcd: %w", s.prefix, err)
	}
	st := &state{source: s.source, counters: map[string]*counterState{}}
	for _, kv := range resp.Kvs {
		k := string(kv.Key[len(s.prefix):])
		switch {
		case k == "m":
			if len(kv.Value) != 16 {
				return nil, fmt.Errorf("load shard %s: meta of %d bytes, want 16", s.prefix, len(kv.Value))
			}
			st.seq, s.printed = binary.BigEndian.Uint64(kv.Value), binary.BigEndian.Uint64(kv.Value[8:])
		case strings.HasPrefix(k, "c/"):
			value, seq, err := decodeCounter(kv.Value)
			if err != nil {
				return nil, fmt.Errorf("load shard %s: counter %q: %w", s.prefix, k[2:], err)
			}
			st.counters[k[2:]] = &counterState{name: k[2:], value: value, seq: seq}
		case strings.HasPrefix(k, "b/"):
			jobs, reqs, err := decodeBatch(kv.Value)
			if err != nil {
				return nil, fmt.Errorf("load shard %s: batch %s: %w", s.prefix, k, err)
			}
			b := batchKey{key: string(kv.Key), requests: len(reqs)}
			if len(jobs) > 0 {
				b.lastJob = jobs[len(jobs)-1].seq
			}
			s.batches = append(s.batches, b)
			st.requests = append(st.requests, reqs...)
			for _, j := range jobs {
				if j.seq <= s.printed {
					continue
				}
				if withOutbox {
					st.outbox = append(st.outbox, j)
				} else {
					st.waiting++
				}
			}
		}
	}
	return st, nil
}

func (s *etcdStore) commit(w *writes) error {
	ops := make([]clientv3.Op, 0, len(w.counters)+3)
	for _, c := range w.counters {
		ops = append(ops, clientv3.OpPut(s.prefix+"c/"+c.name, string(encodeCounter(c.value, c.seq))))
	}
	for _, seq := range w.printed {
		s.printed = max(s.printed, seq)
	}
	meta := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(make([]byte, 0, 16), w.seq), s.printed)
	ops = append(ops, clientv3.OpPut(s.prefix+"m", string(meta)))
	if len(w.jobs)+len(w.requests) > 0 {
		b := batchKey{key: s.batchKey(w.seq), requests: len(w.requests)}
		if len(w.jobs) > 0 {
			b.lastJob = w.jobs[len(w.jobs)-1].seq
		}
		s.batches = append(s.batches, b)
		ops = append(ops, clientv3.OpPut(b.key, string(encodeBatch(w.jobs, w.requests))))
	}
	if del, ok := s.obsolete(len(w.forgotten)); ok {
		ops = append(ops, del)
	}
	err := s.committer.do(&commitReq{ownerKey: s.ownerKey, rev: s.rev, ops: ops, done: make(chan error, 1)})
	if err != nil {
		if !errors.Is(err, errFenced) {
			err = fmt.Errorf("commit shard %s to etcd: %w", s.prefix, err)
		}
		s.failed(err)
	}
	return err
}

// obsolete drops the batch keys whose print jobs are all acknowledged and whose request ids
// are all forgotten, after counting forgotten more ids as forgotten; they are the oldest, so
// one range delete removes them.
func (s *etcdStore) obsolete(forgotten int) (clientv3.Op, bool) {
	for i := 0; forgotten > 0 && i < len(s.batches); i++ {
		n := min(forgotten, s.batches[i].requests)
		s.batches[i].requests -= n
		forgotten -= n
	}
	n := 0
	for n < len(s.batches) && s.batches[n].requests == 0 && s.batches[n].lastJob <= s.printed {
		n++
	}
	if n == 0 {
		return clientv3.Op{}, false
	}
	end := clientv3.GetPrefixRangeEnd(s.prefix + "b/")
	if n < len(s.batches) {
		end = s.batches[n].key
	}
	s.batches = s.batches[n:]
	return clientv3.OpDelete(s.prefix+"b/", clientv3.WithRange(end)), true
}

func (s *etcdStore) batchKey(seq uint64) string { return fmt.Sprintf("%sb/%016x", s.prefix, seq) }

func (s *etcdStore) close() error { return nil }

// afterFailure: the node stops serving the shard and gives its claim up, and the shard is
// claimed again, so no restart is needed; a commit that timed out may still have been applied,
// which a retry with the same request_id finds.
func (s *etcdStore) afterFailure() string {
	return "this node gives the shard up and it is claimed anew: retry; an increment with a request_id is applied once, one without may have been applied"
}

// encodeBatch writes a batch's print jobs and request records, each behind its length.
func encodeBatch(jobs []printJob, reqs []*requestRecord) []byte {
	b := binary.AppendUvarint(nil, uint64(len(jobs)))
	for _, j := range jobs {
		b = binary.AppendUvarint(b, j.seq)
		b = appendBytes(b, encodeJob(j))
	}
	b = binary.AppendUvarint(b, uint64(len(reqs)))
	for _, r := range reqs {
		b = appendBytes(b, []byte(r.id))
		b = appendBytes(b, encodeRequest(r))
	}
	return b
}

func decodeBatch(b []byte) ([]printJob, []*requestRecord, error) {
	d := decoder{b: b}
	jobs := make([]printJob, d.count())
	for i := range jobs {
		seq := d.uvarint()
		j, err := decodeJob(binary.BigEndian.AppendUint64(nil, seq), d.bytes())
		if err != nil {
			return nil, nil, err
		}
		jobs[i] = j
	}
	reqs := make([]*requestRecord, d.count())
	for i := range reqs {
		id := d.bytes()
		r, err := decodeRequest(id, d.bytes())
		if err != nil {
			return nil, nil, err
		}
		reqs[i] = r
	}
	if d.bad || len(d.b) > 0 {
		return nil, nil, errors.New("malformed batch")
	}
	return jobs, reqs, nil
}

func appendBytes(b, v []byte) []byte { return append(binary.AppendUvarint(b, uint64(len(v))), v...) }

// count reads a number of items, each at least a byte long, so never more than the bytes left.
func (d *decoder) count() int {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.b)) {
		d.bad = true
		return 0
	}
	return int(n)
}

// bytes reads a length and that many bytes off the front of d.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.b)) {
		d.bad = true
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}
