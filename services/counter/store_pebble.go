package counter

import (
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

// pebbleStore keeps the state in a pebble database, a folder: each commit is one batch
// appended to pebble's write-ahead log and made durable with one fdatasync. Every record
// lives in one key space, the kind of record in the first byte of its key.
type pebbleStore struct {
	db   *pebble.DB
	lock *pebble.Lock
	path string
}

const (
	metaPrefix     = 'm' // meta, then the name of the field: version, source, seq
	countersPrefix = 'c' // then the name -> value, sequence
	outboxPrefix   = 'o' // then the sequence, big-endian -> value, name
	requestsPrefix = 'r' // then the request id -> time, sequence, value, delta, name
)

var (
	pebbleVersionKey = append([]byte{metaPrefix}, versionKey...)
	pebbleSourceKey  = append([]byte{metaPrefix}, sourceKey...)
	pebbleSeqKey     = append([]byte{metaPrefix}, seqKey...)
)

func prefixed(prefix byte, rest []byte) []byte {
	return append(append(make([]byte, 0, 1+len(rest)), prefix), rest...)
}

func prefixedString(prefix byte, rest string) []byte {
	return append(append(make([]byte, 0, 1+len(rest)), prefix), rest...)
}

// pebbleOptions sizes pebble for the counter: a small database (at most some hundred
// thousand counters and request ids, and the outbox) written in small synced batches by one
// goroutine and read whole only at start.
func pebbleOptions(lock *pebble.Lock) *pebble.Options {
	o := &pebble.Options{
		Lock:         lock,
		MemTableSize: 4 << 20, // a flush to a table file every 4 MiB of records
		CacheSize:    1 << 20, // reads happen at start only
		MaxOpenFiles: 64,
		Logger:       quietLogger{pebble.DefaultLogger},
	}
	o.EnsureDefaults()
	return o
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
	v, closer, err := db.Get(pebbleVersionKey)
	if err == nil {
		if len(v) != 8 || binary.BigEndian.Uint64(v) != formatVersion {
			err = fmt.Errorf("format version %x is not %d: it was written by another version of concur", v, formatVersion)
		}
		closer.Close()
	}
	if errors.Is(err, pebble.ErrNotFound) {
		err = errors.New("the folder holds a pebble database but not the counter's (it has no format version)")
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
	b.Set(pebbleVersionKey, binary.BigEndian.AppendUint64(nil, formatVersion), nil)
	b.Set(pebbleSourceKey, []byte(newSource()), nil)
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
	slices.SortFunc(st.requests, func(a, b *requestRecord) int { return compareUint(a.seq, b.seq) })
	return st, nil
}

func (s *pebbleStore) loadInto(st *state, withOutbox bool) error {
	err := s.scan(metaPrefix, func(k, v []byte) error {
		switch string(k) {
		case string(sourceKey):
			st.source = string(v)
		case string(seqKey):
			if len(v) != 8 {
				return fmt.Errorf("meta seq: %d bytes, want 8", len(v))
			}
			st.seq = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	if err != nil {
		return err
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
		b.Set(pebbleSeqKey, binary.BigEndian.AppendUint64(nil, w.seq), nil)
		for _, c := range w.counters {
			b.Set(prefixedString(countersPrefix, c.name), encodeCounter(c.value, c.seq), nil)
		}
	}
	for _, j := range w.jobs {
		b.Set(prefixed(outboxPrefix, seqKeyOf(j.seq)), encodeJob(j), nil)
	}
	for _, seq := range w.printed {
		b.Delete(prefixed(outboxPrefix, seqKeyOf(seq)), nil)
	}
	// Forget before remembering, as in boltStore.commit: a batch applies in order.
	for _, id := range w.forgotten {
		b.Delete(prefixedString(requestsPrefix, id), nil)
	}
	for _, r := range w.requests {
		b.Set(prefixedString(requestsPrefix, r.id), encodeRequest(r), nil)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("commit to --counter-db %s: %w", s.path, err)
	}
	return nil
}

func (s *pebbleStore) close() error {
	if err := errors.Join(s.db.Close(), s.lock.Close()); err != nil {
		return fmt.Errorf("close --counter-db %s: %w", s.path, err)
	}
	return nil
}
