package counter

import (
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// recoveryBatches commits a few batches to a new pebble store at path, closes it, and
// returns what load must give after each: states[i] after the first i batches.
func recoveryBatches(t testing.TB, path string) (states []string) {
	st, err := openPebble(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	loaded := func() string {
		got, err := st.load(true)
		if err != nil {
			t.Fatal(err)
		}
		return describe(got)
	}
	states = append(states, loaded())
	at := time.Unix(1700000000, 0)
	var seq uint64
	for i := range 5 {
		w := &writes{}
		for j := range 2 {
			seq++
			name := fmt.Sprintf("c%d", j)
			w.counters = append(w.counters, &counterState{name: name, value: int64(seq) * 10, seq: seq})
			w.jobs = append(w.jobs, printJob{seq: seq, name: name, value: int64(seq) * 10})
			w.requests = append(w.requests, &requestRecord{id: fmt.Sprint("r", seq), name: name, delta: 10, value: int64(seq) * 10, seq: seq, at: at})
		}
		if i > 0 {
			w.printed = []uint64{seq - 3, seq - 2} // the last batch's
			w.forgotten = []string{fmt.Sprint("r", seq-3)}
		}
		w.seq = seq
		if err := st.commit(w); err != nil {
			t.Fatal(err)
		}
		states = append(states, loaded())
	}
	return states
}

// describe writes a loaded state as text, to compare.
func describe(st *state) string {
	var b strings.Builder
	fmt.Fprintf(&b, "source %s seq %d\n", st.source, st.seq)
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for name := range st.counters {
			if !yield(name) {
				return
			}
		}
	}) {
		c := st.counters[name]
		fmt.Fprintf(&b, "counter %s %d %d\n", c.name, c.value, c.seq)
	}
	fmt.Fprintf(&b, "outbox %v waiting %d\n", st.outbox, st.waiting)
	for _, r := range st.requests {
		fmt.Fprintf(&b, "request %+v\n", *r)
	}
	return b.String()
}

// newestWAL is the path of the write-ahead log the last commits went to.
func newestWAL(t testing.TB, dir string) string {
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no write-ahead log in %s: %v", dir, err)
	}
	slices.Sort(logs) // the names are zero-padded numbers
	return logs[len(logs)-1]
}

// crashCopy copies the database at src to a new folder with its newest write-ahead log cut
// to its first n bytes, then one byte flipped at flip (if not negative): what a crash (or a
// torn or corrupt write) could leave on disk.
func crashCopy(t testing.TB, src, wal string, n int64, flip int) (string, error) {
	dst := filepath.Join(t.TempDir(), "crashed.db")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		return "", err
	}
	f, err := os.OpenFile(filepath.Join(dst, filepath.Base(wal)), os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := f.Truncate(n); err != nil {
		return "", err
	}
	if flip >= 0 && int64(flip) < n {
		b := make([]byte, 1)
		if _, err := f.ReadAt(b, int64(flip)); err != nil && err != io.EOF {
			return "", err
		}
		b[0] ^= 0x5a
		if _, err := f.WriteAt(b, int64(flip)); err != nil {
			return "", err
		}
	}
	return dst, f.Close()
}

// recovered opens a crashCopy of the database and returns which of states it loads (-1 if
// none, with the state it loaded), or an error if open or load refuses it.
func recovered(t testing.TB, src, wal string, n int64, flip int, states []string) (int, string, error) {
	dir, err := crashCopy(t, src, wal, n, flip)
	if err != nil {
		return 0, "", fmt.Errorf("copy: %w", err)
	}
	st, err := openPebble(dir)
	if err != nil {
		return 0, "", err
	}
	defer st.close()
	got, err := st.load(true)
	if err != nil {
		return 0, "", err
	}
	d := describe(got)
	return slices.Index(states, d), d, nil
}

// TestPebbleRecoveryAtEveryByte cuts the write-ahead log of committed batches at every byte,
// as a crash mid-commit could, and opens what is left: load gives the state after a prefix of
// the batches, never less as more of the log survives, and all of them with the whole log.
func TestPebbleRecoveryAtEveryByte(t *testing.T) {
	src := filepath.Join(t.TempDir(), "counter.db")
	states := recoveryBatches(t, src)
	wal := newestWAL(t, src)
	fi, err := os.Stat(wal)
	if err != nil {
		t.Fatal(err)
	}
	step := int64(1)
	if testing.Short() {
		step = 7
	}
	type result struct {
		batches int
		loaded  string
		err     error
	}
	results := make([]result, fi.Size()+1)
	cuts := make(chan int64)
	var wg sync.WaitGroup
	for range 4 { // opening a copy mostly waits for the disk
		wg.Go(func() {
			for n := range cuts {
				r := &results[n]
				r.batches, r.loaded, r.err = recovered(t, src, wal, n, -1, states)
			}
		})
	}
	for n := int64(0); n <= fi.Size(); n += step {
		cuts <- n
	}
	close(cuts)
	wg.Wait()
	last, reached := 0, map[int]bool{}
	for n := int64(0); n <= fi.Size(); n += step {
		switch r := results[n]; {
		case r.err != nil:
			t.Fatalf("the log cut at %d of %d bytes: %v", n, fi.Size(), r.err)
		case r.batches < 0:
			t.Fatalf("the log cut at %d bytes loads a state that no prefix of the commits made:\n%s", n, r.loaded)
		case r.batches < last:
			t.Fatalf("the log cut at %d bytes gives the state after %d batches; a shorter cut gave %d", n, r.batches, last)
		default:
			last = r.batches
			reached[r.batches] = true
		}
	}
	if len(reached) != len(states) {
		t.Errorf("the cuts of a log of %d bytes reached the states after %v batches, not each of 0 to %d", fi.Size(), slices.Sorted(maps.Keys(reached)), len(states)-1)
	}
	if i, _, err := recovered(t, src, wal, fi.Size(), -1, states); err != nil || i != len(states)-1 {
		t.Fatalf("the whole log gives the state after %d of %d batches: %v", i, len(states)-1, err)
	}
}

// FuzzPebbleRecovery cuts the write-ahead log anywhere and flips a byte anywhere in what is
// left: opening and loading either refuse it with an error or give the state after a prefix
// of the committed batches, never anything else, and never panic.
func FuzzPebbleRecovery(f *testing.F) {
	f.Add(uint16(0), -1)
	f.Add(uint16(100), 50)
	f.Add(uint16(1000), 999)
	f.Add(uint16(65535), 20)
	src := filepath.Join(f.TempDir(), "counter.db")
	states := recoveryBatches(f, src)
	wal := newestWAL(f, src)
	fi, err := os.Stat(wal)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, cut uint16, flip int) {
		n := int64(cut) % (fi.Size() + 1)
		if i, loaded, err := recovered(t, src, wal, n, flip, states); err == nil && i < 0 {
			t.Fatalf("the log cut at %d bytes, byte %d flipped, loads a state that no prefix of the commits made:\n%s", n, flip, loaded)
		}
	})
}
