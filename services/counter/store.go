package counter

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// A store keeps the owner's state across restarts. The owner is its only user: it loads the
// state once, then commits one write set per batch (group commit) and closes it on shutdown.
type store interface {
	load(withOutbox bool) (*state, error)
	commit(*writes) error
	close() error
}

// state is what a store hands the owner at start.
type state struct {
	source   string // the printer source name of this database's print jobs
	seq      uint64 // the last sequence number handed out
	counters map[string]*counterState
	outbox   []printJob       // print jobs the printer has not acknowledged, in sequence order
	waiting  int              // print jobs kept on disk but not loaded, when no printer is configured
	requests []*requestRecord // remembered request ids, oldest first
}

// writes is what one batch changed, committed in one transaction.
type writes struct {
	seq       uint64          // the last sequence number, written with the counters
	counters  []*counterState // counters with new values
	jobs      []printJob      // print jobs added to the outbox
	printed   []uint64        // sequences of print jobs the printer acknowledged
	requests  []*requestRecord
	forgotten []string // request ids pruned
}

func (w *writes) empty() bool {
	return len(w.counters)+len(w.jobs)+len(w.printed)+len(w.requests)+len(w.forgotten) == 0
}

func (w *writes) reset() {
	clear(w.counters) // drop the pointers, keep the capacity
	*w = writes{counters: w.counters[:0], jobs: w.jobs[:0], printed: w.printed[:0], requests: w.requests[:0], forgotten: w.forgotten[:0]}
}

// newSource names the print jobs of a new database. The printer drops a job whose source
// sequence it has seen, so a fresh database (or :memory:) must not reuse the name of an old
// one: its sequences start again at 1 and would all be taken for duplicates.
func newSource() string { return "counter-" + rand.Text() }

func newState() *state {
	return &state{source: newSource(), counters: map[string]*counterState{}}
}

// memoryStore keeps nothing: --counter-db=:memory:.
type memoryStore struct{}

func (memoryStore) load(bool) (*state, error) { return newState(), nil }
func (memoryStore) commit(*writes) error      { return nil }
func (memoryStore) close() error              { return nil }

// boltStore keeps the state in a bbolt database: one bucket per kind of record, plus meta.
type boltStore struct {
	db   *bolt.DB
	path string
}

var (
	metaBucket     = []byte("meta")
	countersBucket = []byte("counters") // name -> value, sequence
	outboxBucket   = []byte("outbox")   // sequence -> value, name
	requestsBucket = []byte("requests") // request id -> time, sequence, value, delta, name
	versionKey     = []byte("version")
	sourceKey      = []byte("source")
	seqKey         = []byte("seq")
)

const formatVersion = 1

// lockTimeout bounds the wait for a database another process holds.
const lockTimeout = 3 * time.Second

func openBolt(path string) (*boltStore, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create the folder of --counter-db: %w", err)
	}
	// The freelist is not written on each commit (a commit then costs about half as much
	// here); after a crash bbolt rebuilds it by scanning the file on open.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout, FreelistType: bolt.FreelistMapType, NoFreelistSync: true})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open --counter-db %s: another process holds it (is another concurd using the same --counter-db?)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open --counter-db %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{metaBucket, countersBucket, outboxBucket, requestsBucket} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(metaBucket)
		switch v := meta.Get(versionKey); {
		case v == nil:
			if err := meta.Put(versionKey, binary.BigEndian.AppendUint64(nil, formatVersion)); err != nil {
				return err
			}
			return meta.Put(sourceKey, []byte(newSource()))
		case len(v) != 8 || binary.BigEndian.Uint64(v) != formatVersion:
			return fmt.Errorf("format version %x is not %d: it was written by another version of concur", v, formatVersion)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open --counter-db %s: %w", path, err)
	}
	return &boltStore{db: db, path: path}, nil
}

func (s *boltStore) load(withOutbox bool) (*state, error) {
	st := &state{counters: map[string]*counterState{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(metaBucket)
		st.source = string(meta.Get(sourceKey))
		if v := meta.Get(seqKey); v != nil {
			if len(v) != 8 {
				return fmt.Errorf("meta seq: %d bytes, want 8", len(v))
			}
			st.seq = binary.BigEndian.Uint64(v)
		}
		err := tx.Bucket(countersBucket).ForEach(func(k, v []byte) error {
			value, seq, err := decodeCounter(v)
			if err != nil {
				return fmt.Errorf("counter %q: %w", k, err)
			}
			name := string(k)
			st.counters[name] = &counterState{name: name, value: value, seq: seq}
			return nil
		})
		if err != nil {
			return err
		}
		outbox := tx.Bucket(outboxBucket)
		if !withOutbox {
			st.waiting = outbox.Stats().KeyN
		} else if err := outbox.ForEach(func(k, v []byte) error {
			j, err := decodeJob(k, v)
			if err != nil {
				return fmt.Errorf("print job %x: %w", k, err)
			}
			if c := st.counters[j.name]; c != nil {
				j.name = c.name // share the counter's string
			}
			st.outbox = append(st.outbox, j)
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(requestsBucket).ForEach(func(k, v []byte) error {
			r, err := decodeRequest(k, v)
			if err != nil {
				return fmt.Errorf("request id %q: %w", k, err)
			}
			st.requests = append(st.requests, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load --counter-db %s: %w", s.path, err)
	}
	slices.SortFunc(st.requests, func(a, b *requestRecord) int { return compareUint(a.seq, b.seq) })
	return st, nil
}

func compareUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *boltStore) commit(w *writes) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		if len(w.counters) > 0 {
			if err := tx.Bucket(metaBucket).Put(seqKey, binary.BigEndian.AppendUint64(nil, w.seq)); err != nil {
				return err
			}
			counters := tx.Bucket(countersBucket)
			for _, c := range w.counters {
				if err := counters.Put([]byte(c.name), encodeCounter(c.value, c.seq)); err != nil {
					return err
				}
			}
		}
		outbox := tx.Bucket(outboxBucket)
		outbox.FillPercent = 0.9 // keys only ever grow: pack the pages
		for _, j := range w.jobs {
			if err := outbox.Put(seqKeyOf(j.seq), encodeJob(j)); err != nil {
				return err
			}
		}
		for _, seq := range w.printed {
			if err := outbox.Delete(seqKeyOf(seq)); err != nil {
				return err
			}
		}
		// Forget before remembering: an id pruned in an earlier batch (its deletion waited
		// for this commit) may have been used again since. The other way round, an id both
		// remembered and pruned since the last commit stays on disk, true but old, until it
		// is pruned again after a restart.
		requests := tx.Bucket(requestsBucket)
		for _, id := range w.forgotten {
			if err := requests.Delete([]byte(id)); err != nil {
				return err
			}
		}
		for _, r := range w.requests {
			if err := requests.Put([]byte(r.id), encodeRequest(r)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("commit to --counter-db %s: %w", s.path, err)
	}
	return nil
}

func (s *boltStore) close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close --counter-db %s: %w", s.path, err)
	}
	return nil
}

// The record encodings. Decoders refuse anything malformed rather than guess.

func seqKeyOf(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func encodeCounter(value int64, seq uint64) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(value))
	return binary.BigEndian.AppendUint64(b, seq)
}

func decodeCounter(b []byte) (value int64, seq uint64, err error) {
	if len(b) != 16 {
		return 0, 0, fmt.Errorf("%d bytes, want 16", len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), binary.BigEndian.Uint64(b[8:]), nil
}

func encodeJob(j printJob) []byte {
	return append(binary.AppendVarint(make([]byte, 0, 10+len(j.name)), j.value), j.name...)
}

func decodeJob(key, b []byte) (printJob, error) {
	if len(key) != 8 {
		return printJob{}, fmt.Errorf("key of %d bytes, want 8", len(key))
	}
	d := decoder{b: b}
	j := printJob{seq: binary.BigEndian.Uint64(key), value: d.varint()}
	if d.bad {
		return printJob{}, errors.New("malformed value")
	}
	j.name = string(d.b)
	return j, nil
}

func encodeRequest(r *requestRecord) []byte {
	b := make([]byte, 0, 40+len(r.name))
	b = binary.AppendVarint(b, r.at.UnixNano())
	b = binary.AppendUvarint(b, r.seq)
	b = binary.AppendVarint(b, r.value)
	b = binary.AppendVarint(b, r.delta)
	return append(b, r.name...)
}

func decodeRequest(key, b []byte) (*requestRecord, error) {
	d := decoder{b: b}
	r := &requestRecord{id: string(key), at: time.Unix(0, d.varint()), seq: d.uvarint(), value: d.varint(), delta: d.varint()}
	if d.bad {
		return nil, errors.New("malformed record")
	}
	r.name = string(d.b)
	return r, nil
}

// decoder reads varints off the front of b; bad records that one was malformed.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	d.advance(n)
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	d.advance(n)
	return v
}

func (d *decoder) advance(n int) {
	if n <= 0 {
		d.bad = true
		return
	}
	d.b = d.b[n:]
}
