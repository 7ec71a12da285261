package counter

import (
	"cmp"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// A store keeps the owner's state across restarts. The owner is its only user: it loads the
// state once, then commits one write set per batch (group commit) and closes it on shutdown.
type store interface {
	load(withOutbox bool) (*state, error)
	commit(*writes) error
	close() error
	// afterFailure says what follows a failed commit, for the callers and the log: the
	// counter refuses everything from then on, and this is how it comes back.
	afterFailure() string
}

// restartIt is what follows a failed commit of a counter in one process.
const restartIt = "restart the counter"

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
func (memoryStore) afterFailure() string      { return restartIt }

// pebbleStore keeps the state in a pebble database, a folder: each commit is one batch
// appended to pebble's write-ahead log and made durable with one fdatasync. Every record
// lives in one key space, the kind of record in the first byte of its key.
type pebbleStore struct {
	db   *pebble.DB
	lock *pebble.Lock
	path string
}

const (
	metaPrefix     = 'm' // then the name of the field: version, source, seq
	countersPrefix = 'c' // then the name -> value, sequence
	outboxPrefix   = 'o' // then the sequence, big-endian -> value, name
	requestsPrefix = 'r' // then the request id -> time, sequence, value, delta, name
)

var (
	versionKey = key(metaPrefix, "version")
	sourceKey  = key(metaPrefix, "source")
	seqKey     = key(metaPrefix, "seq")
)

const formatVersion = 1

// lockTimeout bounds the wait for a database another process holds.
const lockTimeout = 3 * time.Second

// key is the key of a record: its kind, then the rest.
func key[T string | []byte](prefix byte, rest T) []byte {
	return append(append(make([]byte, 0, 1+len(rest)), prefix), rest...)
}

// pebbleOptions sizes pebble for the counter: a small database (at most some hundred
// thousand counters and request ids, and the outbox) written in small synced batches by one
// goroutine and read whole only at start.
func pebbleOptions(lock *pebble.Lock) *pebble.Options {
	return &pebble.Options{
		Lock:         lock,
		MemTableSize: 4 << 20, // a flush to a table file every 4 MiB of records
		CacheSize:    1 << 20, // reads happen at start only
		MaxOpenFiles: 64,
		Logger:       quietLogger{pebble.DefaultLogger},
	}
}

// quietLogger drops pebble's informational messages; its errors still reach the log.
type quietLogger struct{ pebble.Logger }

func (quietLogger) Infof(string, ...any) {}

func openPebble(path string) (*pebbleStore, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := createPebble(path); err != nil {
			return nil, fmt.Errorf("create --counter-db %s: %w", path, err)
		}
	case err != nil:
		return nil, fmt.Errorf("open --counter-db %s: %w", path, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("open --counter-db %s: it is a file, and the counter's database is now a folder: "+
			"if it is the bbolt file of an earlier concur, its counts are not carried over; move it away, or name another path", path)
	}
	lock, err := lockPebble(path)
	if err != nil {
		return nil, err
	}
	opts := pebbleOptions(lock)
	opts.ErrorIfNotExists = true
	db, err := pebble.Open(path, opts)
	if err != nil {
		lock.Close()
		if errors.Is(err, pebble.ErrDBDoesNotExist) {
			return nil, fmt.Errorf("open --counter-db %s: the folder holds no counter database: name a path that does not exist yet, or the folder of one", path)
		}
		return nil, fmt.Errorf("open --counter-db %s: %w", path, err)
	}
	s := &pebbleStore{db: db, lock: lock, path: path}
	v, err := s.get(versionKey)
	switch {
	case err != nil:
	case v == nil:
		err = errors.New("the folder holds a pebble database but not the counter's (it has no format version)")
	case len(v) != 8 || binary.BigEndian.Uint64(v) != formatVersion:
		err = fmt.Errorf("format version %x is not %d: it was written by another version of concur", v, formatVersion)
	}
	if err != nil {
		s.close()
		return nil, fmt.Errorf("open --counter-db %s: %w", path, err)
	}
	return s, nil
}

// lockPebble takes the folder's lock, waiting up to lockTimeout for a process that is
// letting it go.
func lockPebble(path string) (*pebble.Lock, error) {
	deadline := time.Now().Add(lockTimeout)
	for {
		lock, err := pebble.LockDirectory(path, vfs.Default)
		if err == nil {
			return lock, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("open --counter-db %s: another process holds it (is another concurd using the same --counter-db?): %w", path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// createPebble makes a new database in a folder beside path, with its format version and
// source, and renames it to path: a start that dies halfway leaves no half-made database at
// path, only a folder named path.new-* to remove.
func createPebble(path string) error {
	parent := filepath.Dir(path)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, filepath.Base(path)+".new-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // nothing is left there once the rename succeeds
	db, err := pebble.Open(tmp, pebbleOptions(nil))
	if err != nil {
		return err
	}
	b := db.NewBatch()
	b.Set(versionKey, binary.BigEndian.AppendUint64(nil, formatVersion), nil)
	b.Set(sourceKey, []byte(newSource()), nil)
	err = errors.Join(b.Commit(pebble.Sync), b.Close(), db.Close())
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(parent)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

func (s *pebbleStore) load(withOutbox bool) (*state, error) {
	st := &state{counters: map[string]*counterState{}}
	if err := s.loadInto(st, withOutbox); err != nil {
		return nil, fmt.Errorf("load --counter-db %s: %w", s.path, err)
	}
	slices.SortFunc(st.requests, func(a, b *requestRecord) int { return cmp.Compare(a.seq, b.seq) })
	return st, nil
}

func (s *pebbleStore) loadInto(st *state, withOutbox bool) error {
	source, err := s.get(sourceKey)
	if err != nil {
		return err
	}
	st.source = string(source)
	switch seq, err := s.get(seqKey); {
	case err != nil:
		return err
	case seq == nil: // no increment yet
	case len(seq) != 8:
		return fmt.Errorf("meta seq: %d bytes, want 8", len(seq))
	default:
		st.seq = binary.BigEndian.Uint64(seq)
	}
	err = s.scan(countersPrefix, func(k, v []byte) error {
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
	err = s.scan(outboxPrefix, func(k, v []byte) error {
		if !withOutbox {
			st.waiting++
			return nil
		}
		j, err := decodeJob(k, v)
		if err != nil {
			return fmt.Errorf("print job %x: %w", k, err)
		}
		if c := st.counters[j.name]; c != nil {
			j.name = c.name // share the counter's string
		}
		st.outbox = append(st.outbox, j)
		return nil
	})
	if err != nil {
		return err
	}
	return s.scan(requestsPrefix, func(k, v []byte) error {
		r, err := decodeRequest(k, v)
		if err != nil {
			return fmt.Errorf("request id %q: %w", k, err)
		}
		st.requests = append(st.requests, r)
		return nil
	})
}

// get returns a copy of the value of key, nil if there is none.
func (s *pebbleStore) get(key []byte) ([]byte, error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return slices.Clone(v), nil
}

// scan calls f with every record of one kind, in key order, its key without the prefix.
func (s *pebbleStore) scan(prefix byte, f func(k, v []byte) error) (err error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefix}, UpperBound: []byte{prefix + 1}})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, it.Close()) }()
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if err := f(it.Key()[1:], v); err != nil {
			return err
		}
	}
	return nil
}

func (s *pebbleStore) commit(w *writes) error {
	b := s.db.NewBatch()
	defer b.Close()
	if len(w.counters) > 0 {
		b.Set(seqKey, binary.BigEndian.AppendUint64(nil, w.seq), nil)
		for _, c := range w.counters {
			b.Set(key(countersPrefix, c.name), encodeCounter(c.value, c.seq), nil)
		}
	}
	for _, j := range w.jobs {
		b.Set(key(outboxPrefix, seqKeyOf(j.seq)), encodeJob(j), nil)
	}
	for _, seq := range w.printed {
		b.Delete(key(outboxPrefix, seqKeyOf(seq)), nil)
	}
	// Forget before remembering (a batch applies in order): an id pruned in an earlier batch
	// (its deletion waited for this commit) may have been used again since. The other way
	// round, an id both remembered and pruned since the last commit stays on disk, true but
	// old, until it is pruned again after a restart.
	for _, id := range w.forgotten {
		b.Delete(key(requestsPrefix, id), nil)
	}
	for _, r := range w.requests {
		b.Set(key(requestsPrefix, r.id), encodeRequest(r), nil)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("commit to --counter-db %s: %w", s.path, err)
	}
	return nil
}

func (s *pebbleStore) afterFailure() string { return restartIt }

func (s *pebbleStore) close() error {
	if err := errors.Join(s.db.Close(), s.lock.Close()); err != nil {
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
