package counter_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	"github.com/concur-dev/concur/internal/e2e"
	"github.com/concur-dev/concur/services/counter"
)

// The counter and the printer on disk, under load from many clients that retry with
// request_ids, and one of their processes killed (SIGKILL) at a random moment ten times in a
// row, restarted on the same files each time. After every restart, counter Join answers
// printed only when the printer's file already holds every count it covers; at the end,
// every acknowledged increment is counted once and every count is in the file once, in order.
// The jitter spreads the kills over the owners' steps.
func TestSIGKILLLosesNoCount(t *testing.T) {
	for _, kill := range []string{"printer", "counter", "one concurd"} {
		t.Run(strings.ReplaceAll(kill, " ", "-"), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			file := filepath.Join(dir, "printed.txt")
			printerAddr, counterAddr := e2e.FreeAddr(t), e2e.FreeAddr(t)
			printerArgs := []string{"--services=printer", "--listen=" + printerAddr, "--jitter=200us",
				"--printer-file=" + file, "--printer-stdout=false"}
			counterArgs := []string{"--services=counter", "--listen=" + counterAddr, "--jitter=200us",
				"--counter-db=" + filepath.Join(dir, "counter.db"), "--printer-addr=" + printerAddr}
			var restart func() *e2e.Process
			switch kill {
			case "one concurd":
				counterArgs = []string{"--services=printer,counter", "--listen=" + counterAddr, "--jitter=200us",
					"--printer-file=" + file, "--printer-stdout=false", "--counter-db=" + filepath.Join(dir, "counter.db")}
				restart = func() *e2e.Process { return e2e.StartConcurd(t, counterArgs...) }
			case "printer":
				e2e.StartConcurd(t, counterArgs...)
				restart = func() *e2e.Process { return e2e.StartConcurd(t, printerArgs...) }
			case "counter":
				e2e.StartConcurd(t, printerArgs...)
				restart = func() *e2e.Process { return e2e.StartConcurd(t, counterArgs...) }
			}
			victim := restart()
			// Reconnect soon after a restart, as the counter does to its printer.
			c := counterv1.NewCounterServiceClient(e2e.Dial(t, counterAddr, counter.PrinterDialOptions()...))
			var acked int64
			for round := range 10 {
				// A round of load with a kill at a random moment in it; the clients finish
				// once the process is back, so the outbox Join waits for stays bounded.
				load := startLoad(c, 20, fmt.Sprintf("round%d", round))
				time.Sleep(time.Duration(50+rand.IntN(350)) * time.Millisecond)
				victim.Signal(t, syscall.SIGKILL)
				victim.Wait(t.Context(), t) // its locks on the files go with it
				victim = restart()
				acked += load.stop(t)
				checkJoin(t, c, file, fmt.Sprintf("after kill %d", round+1))
			}
			j := checkJoin(t, c, file, "at the end")
			if j.GetSequence() != uint64(acked) {
				t.Fatalf("Join covers %d increments; %d were acknowledged, each exactly once", j.GetSequence(), acked)
			}
			g, err := c.Get(t.Context(), &counterv1.GetRequest{})
			if err != nil || g.GetValue() != acked {
				t.Fatalf("Get = %v, %v; %d increments were acknowledged", g, err, acked)
			}
			if counts := printedCounts(t, file); len(counts) != int(acked) {
				t.Fatalf("the file holds %d counts, want the %d acknowledged", len(counts), acked)
			}
			t.Logf("%d increments acknowledged, counted and printed once across 10 kills of the %s", acked, kill)
		})
	}
}

// load is clients incrementing the default counter, each retrying its current request_id
// until it is answered. Its request_ids begin with its name.
type load struct {
	stopping atomic.Bool
	acked    atomic.Int64
	wg       sync.WaitGroup
}

func startLoad(c counterv1.CounterServiceClient, clients int, name string) *load {
	l := &load{}
	for cl := range clients {
		l.wg.Go(func() {
			for i := 0; !l.stopping.Load(); i++ {
				req := &counterv1.IncrementRequest{RequestId: fmt.Sprintf("%s-client%d-%d", name, cl, i)}
				// The outcome of a failed call is unknown: the same request_id is sent again
				// until it is answered, so it counts once either way.
				for {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					_, err := c.Increment(ctx, req)
					cancel()
					if err == nil {
						l.acked.Add(1)
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
	return l
}

// stop waits for every client's last increment to be answered and returns how many were.
func (l *load) stop(t *testing.T) int64 {
	t.Helper()
	l.stopping.Store(true)
	l.wg.Wait()
	return l.acked.Load()
}

// checkJoin calls counter Join and checks its promise: when it answers printed, the printer's
// file already holds the counts 1 to its sequence, once each and in order (and perhaps more).
func checkJoin(t *testing.T, c counterv1.CounterServiceClient, file, when string) *counterv1.JoinResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	j, err := c.Join(ctx, &counterv1.JoinRequest{}, grpc.WaitForReady(true))
	if err != nil || !j.GetPrinted() {
		t.Fatalf("%s: counter Join = %v, %v", when, j, err)
	}
	if counts := printedCounts(t, file); uint64(len(counts)) < j.GetSequence() {
		t.Fatalf("%s: Join answered printed through %d, but the file holds only the counts to %d", when, j.GetSequence(), len(counts))
	}
	return j
}

// printedCounts reads the talk's jobs from the printer's file ("The count is N" and a rule)
// and checks they are the counts 1, 2, 3, ... with none missing or twice. A job still being
// written at the end of the file is left out.
func printedCounts(t *testing.T, file string) []int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var counts []int
	for i := 0; i+2 < len(lines); i += 2 { // the last element is after the last newline
		n, err := strconv.Atoi(strings.TrimPrefix(lines[i], "The count is "))
		if err != nil || lines[i+1] != "---------------" {
			t.Fatalf("line %d of the file: %q, %q is not a job of the talk", i+1, lines[i], lines[i+1])
		}
		if n != len(counts)+1 {
			t.Fatalf("line %d of the file: count %d after %d: counts are missing or printed twice", i+1, n, len(counts))
		}
		counts = append(counts, n)
	}
	return counts
}
