package printer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// file is the append-only output file and, beside it, the printer's state in a bbolt
// database (path + ".state"): the last sequence per source, so that a resent job is not
// printed twice even after a restart, and the printer's own last sequence, so that numbering
// goes on.
//
// The state and the file must agree, and no single write can update both. So before each
// batch the writer records in the state what the batch will do: the file's length and last
// sequence before and after it, the sources' new last sequences, and their old ones to undo
// them. Then it appends the batch and flushes it to disk. The file's length says how far the
// last batch got: on opening, a file that ends inside the last batch recorded (a crash while
// writing it) is cut back to where the batch began and the batch's sources are undone, as if
// it had never been accepted; its sender resends it. Every batch is on disk (fsync) before
// the next one is recorded, and the state commits synchronously, so this holds after a power
// failure too.
type file struct {
	path string
	out  *os.File
	db   *bolt.DB
	size uint64 // bytes the printer has written: the file's length unless someone else writes to it
	last uint64 // the sequence of the last job in the file
}

var (
	metaBucket    = []byte("printer")
	sourcesBucket = []byte("sources") // source name -> last source_sequence written
	undoBucket    = []byte("undo")    // source name -> its value before the last batch (0: none)
	markKey       = []byte("mark")    // the last batch's mark
)

// mark records the last batch: the file's last sequence and length before and after it.
type mark struct {
	lastBefore, sizeBefore, lastAfter, sizeAfter uint64
}

func (m mark) encode() []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil,
		m.lastBefore), m.sizeBefore), m.lastAfter), m.sizeAfter)
}

func decodeMark(b []byte) (mark, error) {
	if len(b) != 32 {
		return mark{}, fmt.Errorf("the mark holds %d bytes, not 32", len(b))
	}
	u := func(i int) uint64 { return binary.BigEndian.Uint64(b[8*i:]) }
	return mark{u(0), u(1), u(2), u(3)}, nil
}

func encodeSeq(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func decodeSeq(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("a sequence holds %d bytes, not 8", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// recovery is what opening the file found, decided by reconcile.
type recovery struct {
	last    uint64 // the last sequence in the file: numbering goes on after it
	undo    bool   // the last batch is incomplete: cut the file to cut and undo its sources
	cut     uint64
	warning string // something the operator should know, or empty
}

// reconcile decides, from the last batch's mark (found is false for a new state) and the
// file's length, where the file stands.
func reconcile(m mark, found bool, size uint64) recovery {
	switch {
	case !found:
		return recovery{}
	case size >= m.sizeBefore && size < m.sizeAfter:
		return recovery{last: m.lastBefore, undo: true, cut: m.sizeBefore}
	case size > m.sizeAfter:
		return recovery{last: m.lastAfter,
			warning: "the output file is longer than the printer left it: something else wrote to it; the printer appends after it"}
	case size < m.sizeAfter:
		return recovery{last: m.lastAfter,
			warning: "the output file is shorter than the printer left it: it was truncated, rotated or replaced; the printer goes on numbering and remembering sources where it was"}
	}
	return recovery{last: m.lastAfter}
}

// openFile opens the output file at path and its state, reconciles them, and returns the
// file (its last is the last sequence in it) and the last source_sequence of each source in it.
func openFile(path string, log *slog.Logger) (*file, map[string]uint64, error) {
	f := &file{path: path}
	var err error
	f.db, err = bolt.Open(f.statePath(), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, nil, fmt.Errorf("open the printer's state %s (is another printer using --printer-file %s?): %w", f.statePath(), path, err)
	}
	sources := map[string]uint64{}
	err = f.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		src, err := tx.CreateBucketIfNotExists(sourcesBucket)
		if err != nil {
			return err
		}
		undo, err := tx.CreateBucketIfNotExists(undoBucket)
		if err != nil {
			return err
		}
		var size uint64
		switch info, err := os.Stat(path); {
		case err == nil:
			size = uint64(info.Size())
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
		var m mark
		b := meta.Get(markKey)
		if b != nil {
			if m, err = decodeMark(b); err != nil {
				return err
			}
		}
		r := reconcile(m, b != nil, size)
		if r.undo {
			if err := os.Truncate(path, int64(r.cut)); err != nil {
				return fmt.Errorf("cut the incomplete batch off --printer-file: %w", err)
			}
			if err := undoBatch(src, undo); err != nil {
				return err
			}
			log.Warn("the printer stopped while writing its last batch of jobs to --printer-file; that batch was cut off the file and is treated as never accepted, so that its senders may resend it",
				"file", path, "bytes_cut", size-r.cut, "sequences_cut", fmt.Sprintf("%d-%d", m.lastBefore+1, m.lastAfter))
			size = r.cut
		}
		if r.warning != "" {
			log.Warn(r.warning, "file", path, "length", size, "expected_length", m.sizeAfter)
		}
		f.size, f.last = size, r.last
		if err := meta.Put(markKey, mark{f.last, f.size, f.last, f.size}.encode()); err != nil {
			return err
		}
		return src.ForEach(func(k, v []byte) error {
			n, err := decodeSeq(v)
			if err != nil {
				return fmt.Errorf("source %q: %w", k, err)
			}
			sources[string(k)] = n
			return nil
		})
	})
	if err != nil {
		f.db.Close()
		return nil, nil, fmt.Errorf("recover the printer's state %s: %w", f.statePath(), err)
	}
	if f.out, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err != nil {
		f.db.Close()
		return nil, nil, fmt.Errorf("open --printer-file: %w", err)
	}
	return f, sources, nil
}

// undoBatch puts back the sources' values from before the last batch.
func undoBatch(src, undo *bolt.Bucket) error {
	return undo.ForEach(func(k, v []byte) error {
		n, err := decodeSeq(v)
		if err != nil {
			return fmt.Errorf("undo of source %q: %w", k, err)
		}
		if n == 0 {
			return src.Delete(bytes.Clone(k))
		}
		return src.Put(bytes.Clone(k), bytes.Clone(v))
	})
}

func (f *file) statePath() string { return f.path + ".state" }

// begin records batch b in the state before it is written: its mark, its sources' new last
// sequences and their old ones.
func (f *file) begin(b *batch) error {
	return f.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(undoBucket); err != nil {
			return err
		}
		undo, err := tx.CreateBucket(undoBucket)
		if err != nil {
			return err
		}
		src := tx.Bucket(sourcesBucket)
		for name, seq := range b.sources {
			old := bytes.Clone(src.Get([]byte(name)))
			if old == nil {
				old = encodeSeq(0)
			}
			if err := undo.Put([]byte(name), old); err != nil {
				return err
			}
			if err := src.Put([]byte(name), encodeSeq(seq)); err != nil {
				return err
			}
		}
		return tx.Bucket(metaBucket).Put(markKey, mark{f.last, f.size, b.last(), f.size + uint64(len(b.bytes))}.encode())
	})
}

// Write appends p to the file.
func (f *file) Write(p []byte) (int, error) { return f.out.Write(p) }

// sync flushes the file to disk.
func (f *file) sync() error { return f.out.Sync() }

// commit notes that b is in the file, on disk.
func (f *file) commit(b *batch) {
	f.size += uint64(len(b.bytes))
	f.last = b.last()
}

// close records that the last batch is complete, so that a file truncated or replaced while
// the printer is down is not taken for a batch that was cut short, and closes both files.
func (f *file) close() error {
	settled := f.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(metaBucket).Put(markKey, mark{f.last, f.size, f.last, f.size}.encode())
	})
	return errors.Join(settled, f.out.Close(), f.db.Close())
}
