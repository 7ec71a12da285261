package printer

import (
	"bytes"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	"github.com/concur-dev/concur/internal/testkit"
)

// testBatch builds a batch of jobs numbered from first, each of one line, the job numbered
// n coming from sources[n%len(sources)] ("" for none) with source_sequence n.
func testBatch(first uint64, jobs int, sources ...string) *batch {
	b := newBatch()
	for n := first; n < first+uint64(jobs); n++ {
		b.add(&printerv1.TailResponse{Sequence: new(n), Lines: []string{fmt.Sprintf("job %d", n)}})
		if s := sources[n%uint64(len(sources))]; s != "" {
			b.sources[s] = n
		}
	}
	return b
}

// writeBatch does what the writer does with b, but stops after n of its bytes when n is
// smaller than the batch: the printer crashing while writing it.
func writeBatch(t testing.TB, f *file, b *batch, n int) {
	t.Helper()
	if err := f.begin(b); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b.bytes[:min(n, len(b.bytes))]); err != nil {
		t.Fatal(err)
	}
	if n >= len(b.bytes) {
		if err := f.sync(); err != nil {
			t.Fatal(err)
		}
		f.commit(b)
	}
}

func reopen(t testing.TB, path string, log *slog.Logger) (*file, map[string]uint64) {
	t.Helper()
	f, sources, err := openFile(path, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.close() })
	return f, sources
}

// crash closes the file and its state the way a crash does: without a word.
func crash(f *file) {
	f.out.Close()
	f.db.Close()
}

// FuzzCrashRecovery writes batches to a file and crashes while writing the last one, after
// any number of its bytes; opening the file again must find exactly the batches that were
// written whole, their last sequence, and the sources they carried, and nothing of the
// incomplete one, so that resending it prints it once.
func FuzzCrashRecovery(f *testing.F) {
	f.Add([]byte{3, 1, 2}, uint16(5))
	f.Add([]byte{4, 4}, uint16(0))
	f.Add([]byte{7}, uint16(1000))
	f.Add([]byte{0, 9, 2, 5}, uint16(13))
	f.Fuzz(func(t *testing.T, shapes []byte, cut uint16) {
		if len(shapes) == 0 || len(shapes) > 8 {
			t.Skip()
		}
		path := filepath.Join(t.TempDir(), "out.txt")
		fl, _ := reopen(t, path, testkit.Quiet())
		var wantBytes []byte
		wantSources := map[string]uint64{}
		var wantLast uint64
		next := uint64(1)
		for i, shape := range shapes {
			b := testBatch(next, int(shape%4)+1, []string{"", "a", "b", "c"}[:shape%4+1]...)
			next += uint64(len(b.jobs))
			n := len(b.bytes)
			if i == len(shapes)-1 {
				n = int(cut) % (len(b.bytes) + 1)
			}
			writeBatch(t, fl, b, n)
			if n == len(b.bytes) {
				wantBytes = append(wantBytes, b.bytes...)
				maps.Copy(wantSources, b.sources)
				wantLast = b.last()
			}
		}
		crash(fl)

		reopened, sources := reopen(t, path, testkit.Quiet())
		last := reopened.last
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, wantBytes) || last != wantLast || !maps.Equal(sources, wantSources) {
			t.Fatalf("after the crash the file holds %q (last %d, sources %v); want %q (last %d, sources %v)",
				got, last, sources, wantBytes, wantLast, wantSources)
		}
	})
}

// Changes made to the file by someone else are reported, and the numbering goes on.
func TestOutsideChangesAreReported(t *testing.T) {
	for _, tt := range []struct {
		change func(path string) error
		says   string
	}{
		{func(path string) error { return appendTo(path, "someone else\n") }, "longer than the printer left it"},
		{func(path string) error { return os.Truncate(path, 0) }, "shorter than the printer left it"},
		{os.Remove, "shorter than the printer left it"},
	} {
		t.Run(tt.says, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.txt")
			f, _ := reopen(t, path, testkit.Quiet())
			writeBatch(t, f, testBatch(1, 3, "s"), 1<<20)
			f.close()
			if err := tt.change(path); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			reopened, sources := reopen(t, path, slog.New(slog.NewTextHandler(&logs, nil)))
			last := reopened.last
			if last != 3 || sources["s"] != 3 || !strings.Contains(logs.String(), tt.says) {
				t.Fatalf("after an outside change: last %d, sources %v, logs %q; want 3, s=3 and a warning saying %q", last, sources, logs.String(), tt.says)
			}
		})
	}
}

func appendTo(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(s)
	return err
}

// A damaged state stops the printer from starting, with an error that names the file.
func TestDamagedStateIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.txt")
	f, _ := reopen(t, path, testkit.Quiet())
	f.close()
	db, err := bolt.Open(path+".state", 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(metaBucket).Put(markKey, []byte("garbage")) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, _, err := openFile(path, testkit.Quiet()); err == nil || !strings.Contains(err.Error(), path+".state") || !strings.Contains(err.Error(), "the mark holds 7 bytes") {
		t.Fatalf("opening a damaged state: %v", err)
	}
}

// FuzzDecodeMark checks that any bytes decode as a mark exactly when they are 32 long, and
// that a mark encodes back to the bytes it came from.
func FuzzDecodeMark(f *testing.F) {
	f.Add(mark{1, 2, 3, 4}.encode())
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMark(b)
		if (err == nil) != (len(b) == 32) {
			t.Fatalf("decodeMark(%d bytes) = %v", len(b), err)
		}
		if err == nil && !bytes.Equal(m.encode(), b) {
			t.Fatalf("decodeMark(%x) = %+v, which encodes as %x", b, m, m.encode())
		}
	})
}
