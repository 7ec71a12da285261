package counter

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
)

func TestStoreRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	st, err := openPebble(path)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1700000000, 123)
	a, b := &counterState{name: "a", value: -3, seq: 2}, &counterState{name: "default", value: 9, seq: 3}
	w := &writes{
		seq:      3,
		counters: []*counterState{a, b},
		jobs:     []printJob{{seq: 1, name: "a", value: -2}, {seq: 2, name: "a", value: -3}, {seq: 3, name: "default", value: 9}},
		requests: []*requestRecord{{id: "r2", name: "a", delta: -1, value: -3, seq: 2, at: at}, {id: "r1", name: "a", delta: -2, value: -2, seq: 1, at: at}, {id: "gone", seq: 3}},
	}
	if err := st.commit(w); err != nil {
		t.Fatal(err)
	}
	if err := st.commit(&writes{printed: []uint64{1}, forgotten: []string{"gone"}}); err != nil {
		t.Fatal(err)
	}
	st.close()

	if st, err = openPebble(path); err != nil {
		t.Fatal(err)
	}
	defer func() { // the store open at the end
		if st != nil {
			st.close()
		}
	}()
	got, err := st.load(true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got.source, "counter-") || got.seq != 3 || len(got.counters) != 2 ||
		got.counters["a"].value != -3 || got.counters["a"].seq != 2 || got.counters["default"].value != 9 {
		t.Fatalf("loaded %+v", got)
	}
	// A loaded job has no link to a span: links live in memory only.
	if fmt.Sprint(got.outbox) != "[{2 a -3 <nil>} {3 default 9 <nil>}]" {
		t.Fatalf("outbox %v", got.outbox)
	}
	if len(got.requests) != 2 || *got.requests[0] != *w.requests[1] || *got.requests[1] != (requestRecord{id: "r2", name: "a", delta: -1, value: -3, seq: 2, at: at}) {
		t.Fatalf("requests %+v %+v, want oldest first", got.requests[0], got.requests[1])
	}
	if got, _ := st.load(false); got.outbox != nil || got.waiting != 2 {
		t.Fatalf("without a printer: outbox %v, waiting %d; want none loaded, 2 waiting", got.outbox, got.waiting)
	}
	source := got.source
	st.close()
	if st, err = openPebble(path); err != nil {
		t.Fatal(err)
	}
	if again, _ := st.load(false); again.source != source {
		t.Fatalf("the source changed across a restart: %q then %q", source, again.source)
	}
}

func TestStoreRefusesOtherFormats(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	st, err := openPebble(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.db.Set(versionKey, binary.BigEndian.AppendUint64(nil, 2), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	st.close()
	if _, err := openPebble(path); err == nil || !strings.Contains(err.Error(), "another version of concur") {
		t.Fatalf("opening a database of format 2: %v", err)
	}
}

func TestStoreRefuses(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "old.db")
	if err := os.WriteFile(file, []byte("a bbolt file"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openPebble(file); err == nil || !strings.Contains(err.Error(), "move it away") {
		t.Errorf("opening a file: %v", err)
	}
	if _, err := openPebble(dir); err == nil || !strings.Contains(err.Error(), "holds no counter database") {
		t.Errorf("opening a folder that is not a database: %v", err)
	}
	path := filepath.Join(dir, "counter.db")
	st, err := openPebble(path)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := openPebble(path); err == nil || !strings.Contains(err.Error(), "another process holds it") {
		t.Errorf("opening it twice: %v", err)
	}
	if d := time.Since(start); d < lockTimeout {
		t.Errorf("refused after %v, before the lock timeout %v", d, lockTimeout)
	}
	st.close()
	if st, err = openPebble(path); err != nil {
		t.Fatalf("reopening once closed: %v", err)
	}
	st.close()
	if leftovers, _ := filepath.Glob(path + ".new-*"); len(leftovers) > 0 {
		t.Errorf("creating the database left %v", leftovers)
	}
}

// FuzzRecords checks the database records: what is encoded decodes to the same, and the
// decoders, which read whatever the file holds, never panic and are stable on what they
// accept.
func FuzzRecords(f *testing.F) {
	f.Add("default", int64(10), uint64(10), int64(1), int64(1700000000000000000), []byte("k"), []byte{0x14, 'x'})
	f.Add("", int64(-1), uint64(0), int64(-5), int64(-1), []byte{0, 0, 0, 0, 0, 0, 0, 1}, []byte{0x80})
	f.Fuzz(func(t *testing.T, name string, value int64, seq uint64, delta, at int64, key, junk []byte) {
		if v, s, err := decodeCounter(encodeCounter(value, seq)); err != nil || v != value || s != seq {
			t.Fatalf("counter %d %d: %d %d %v", value, seq, v, s, err)
		}
		j := printJob{seq: seq, name: name, value: value}
		if got, err := decodeJob(seqKeyOf(seq), encodeJob(j)); err != nil || got != j {
			t.Fatalf("job %+v: %+v %v", j, got, err)
		}
		r := requestRecord{id: string(key), name: name, delta: delta, value: value, seq: seq, at: time.Unix(0, at)}
		if got, err := decodeRequest(key, encodeRequest(&r)); err != nil || *got != r {
			t.Fatalf("request %+v: %+v %v", r, got, err)
		}

		if v, s, err := decodeCounter(junk); err == nil {
			if v2, s2, _ := decodeCounter(encodeCounter(v, s)); v2 != v || s2 != s {
				t.Fatal("counter decoding is not stable")
			}
		}
		if j, err := decodeJob(key, junk); err == nil {
			if j2, _ := decodeJob(key, encodeJob(j)); j2 != j {
				t.Fatal("job decoding is not stable")
			}
		}
		if r, err := decodeRequest(key, junk); err == nil {
			if r2, _ := decodeRequest(key, encodeRequest(r)); *r2 != *r {
				t.Fatal("request decoding is not stable")
			}
		}
	})
}

// FuzzPrintJobLines checks the counter against the printer's contract: every counter name
// the counter accepts makes print jobs that the printer's validation accepts too, so that no
// print job can be refused and block the outbox.
func FuzzPrintJobLines(f *testing.F) {
	f.Add("default", int64(1))
	f.Add("apples", int64(-9223372036854775808))
	f.Add("tab\there", int64(7))
	f.Fuzz(func(t *testing.T, name string, value int64) {
		if (&counterv1.IncrementRequest{Name: name}).Validate() != nil {
			return
		}
		j := printJob{seq: 1, name: counterv1.NameOrDefault(name), value: value}
		req := &printerv1.PrintStreamRequest{Jobs: []*printerv1.PrintJob{{Lines: j.lines(), Source: newSource(), SourceSequence: j.seq}}}
		if err := req.Validate(); err != nil {
			t.Fatalf("the printer would refuse the print job for %q: %v", name, err)
		}
	})
}
