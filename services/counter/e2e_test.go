package counter_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	"github.com/concur-dev/concur/internal/e2e"
)

// SIGKILL the counter process in the middle of a load from many clients. After a restart,
// every answered increment is counted, a retry of any request_id applies nothing, and the
// printer receives every increment's print job exactly once, in order.
func TestKilledMidLoad(t *testing.T) {
	p := startPrinterDouble(t)
	args := []string{"--services=counter", "--counter-db=" + filepath.Join(t.TempDir(), "counter.db"), "--printer-addr=" + p.addr}
	proc := e2e.StartConcurd(t, args...)
	c := counterv1.NewCounterServiceClient(e2e.Dial(t, proc.Addr))

	const clients = 20
	sent := make([][]string, clients)
	answered := make([]map[string]*counterv1.IncrementResponse, clients)
	var count atomic.Int64
	var wg sync.WaitGroup
	for cl := range clients {
		answered[cl] = map[string]*counterv1.IncrementResponse{}
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("client%d-%d", cl, i)
				sent[cl] = append(sent[cl], id)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				r, err := c.Increment(ctx, &counterv1.IncrementRequest{Name: "load", RequestId: id})
				cancel()
				if err != nil {
					return // the process is gone
				}
				answered[cl][id] = r
				count.Add(1)
			}
		})
	}
	for count.Load() < 2000 {
		time.Sleep(time.Millisecond)
	}
	proc.Signal(t, syscall.SIGKILL)
	proc.Wait(t.Context(), t) // its lock on the database goes with it
	wg.Wait()
	var all []string
	var nAnswered int
	for cl := range clients {
		all = append(all, sent[cl]...)
		nAnswered += len(answered[cl])
	}

	proc = e2e.StartConcurd(t, args...)
	c = counterv1.NewCounterServiceClient(e2e.Dial(t, proc.Addr))
	ctx := t.Context()
	get := func() int64 {
		g, err := c.Get(ctx, &counterv1.GetRequest{Name: "load"})
		if err != nil {
			t.Fatal(err)
		}
		return g.GetValue()
	}
	if v := get(); v < int64(nAnswered) || v > int64(len(all)) {
		t.Fatalf("after the restart load = %d; %d increments were answered, %d sent", v, nAnswered, len(all))
	}
	// Retry everything, answered or not, from many clients: each increment counts once.
	retry := func(check func(id string, r *counterv1.IncrementResponse)) {
		var wg sync.WaitGroup
		for cl := range clients {
			wg.Go(func() {
				for _, id := range sent[cl] {
					r, err := c.Increment(ctx, &counterv1.IncrementRequest{Name: "load", RequestId: id})
					if err != nil {
						t.Errorf("retry %s: %v", id, err)
						return
					}
					check(id, r)
				}
			})
		}
		wg.Wait()
	}
	var firstRetry sync.Map
	retry(func(id string, r *counterv1.IncrementResponse) {
		cl, _ := strconv.Atoi(strings.TrimPrefix(strings.Split(id, "-")[0], "client"))
		if first, ok := answered[cl][id]; ok && (!r.GetReplayed() || r.GetValue() != first.GetValue() || r.GetSequence() != first.GetSequence()) {
			t.Errorf("retry of answered %s = %v, want the first answer %v replayed", id, r, first)
		}
		firstRetry.Store(id, r)
	})
	if v := get(); v != int64(len(all)) {
		t.Fatalf("after retrying every request, load = %d, want %d", v, len(all))
	}
	retry(func(id string, r *counterv1.IncrementResponse) {
		first, _ := firstRetry.Load(id)
		if !r.GetReplayed() || r.GetSequence() != first.(*counterv1.IncrementResponse).GetSequence() {
			t.Errorf("second retry of %s = %v, want replayed", id, r)
		}
	})
	if v := get(); v != int64(len(all)) {
		t.Fatalf("a second retry changed load to %d", v)
	}

	j, err := c.Join(ctx, &counterv1.JoinRequest{})
	if err != nil || !j.GetPrinted() || j.GetSequence() != uint64(len(all)) {
		t.Fatalf("Join = %v, %v; want %d printed", j, err, len(all))
	}
	want := make([]string, len(all))
	for i := range want {
		want[i] = fmt.Sprintf("The count of load is %d", i+1)
	}
	if got := p.lines(); !slices.Equal(got, want) {
		t.Fatalf("the printer got %d lines, want %d, The count of load is 1 to %d, each once", len(got), len(want), len(want))
	}
}
