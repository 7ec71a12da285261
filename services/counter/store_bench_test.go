package counter

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkStoreCommit measures one durable commit of a batch of n increments, each with a
// request id and a print job, the print jobs of the batch before acknowledged, on each
// store, one after the other in the same run; run it a few times over to see the noise:
//
//	for i in 1 2 3; do go test -run '^$' -bench StoreCommit ./services/counter; done
func BenchmarkStoreCommit(b *testing.B) {
	stores := []struct {
		name string
		open func(path string) (store, error)
	}{
		{"bolt", func(p string) (store, error) { return openBolt(p) }},
		{"pebble", func(p string) (store, error) { return openPebble(p) }},
	}
	for _, n := range []int{1, 8, 64} {
		for _, s := range stores {
			b.Run(fmt.Sprintf("increments=%d/store=%s", n, s.name), func(b *testing.B) {
				st, err := s.open(filepath.Join(b.TempDir(), "counter.db"))
				if err != nil {
					b.Fatal(err)
				}
				defer st.close()
				benchmarkCommits(b, st, n)
			})
		}
	}
}

func benchmarkCommits(b *testing.B, st store, n int) {
	counters := make([]*counterState, 8)
	for i := range counters {
		counters[i] = &counterState{name: fmt.Sprintf("counter-%d", i)}
	}
	var seq uint64
	var w writes
	var printed []uint64
	at := time.Now()
	for b.Loop() {
		w.reset()
		w.printed = append(w.printed, printed...)
		printed = printed[:0]
		for i := range n {
			seq++
			c := counters[i%len(counters)]
			c.value++
			c.seq = seq
			if i < len(counters) {
				w.counters = append(w.counters, c)
			}
			w.jobs = append(w.jobs, printJob{seq: seq, name: c.name, value: c.value})
			printed = append(printed, seq)
			w.requests = append(w.requests, &requestRecord{id: fmt.Sprintf("request-%d", seq), name: c.name, delta: 1, value: c.value, seq: seq, at: at})
			if seq > 1000 {
				w.forgotten = append(w.forgotten, fmt.Sprintf("request-%d", seq-1000))
			}
		}
		w.seq = seq
		if err := st.commit(&w); err != nil {
			b.Fatal(err)
		}
	}
}
