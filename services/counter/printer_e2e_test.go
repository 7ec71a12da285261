package counter_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	"github.com/concur-dev/concur/internal/e2e"
)

// The talk's demo over real TCP, with the counter and the printer in separate concurd
// processes and the race amplifier on: print "Starting up", 10 workers increment once each,
// Join the counter, print "Finishing up", Join the printer. The output is the talk's, exactly,
// 20 times in a row: one printer, and a new counter with a new database for each run.
func TestTalkDemo(t *testing.T) {
	printer := e2e.StartConcurd(t, "--services=printer", "--jitter=2ms")
	p := printerv1.NewPrinterServiceClient(e2e.Dial(t, printer.Addr))
	for run := range 20 {
		ctr := e2e.StartConcurd(t, "--services=counter", "--jitter=2ms",
			"--counter-db="+filepath.Join(t.TempDir(), "counter.db"), "--printer-addr="+printer.Addr)
		c := counterv1.NewCounterServiceClient(e2e.Dial(t, ctr.Addr))
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		before := len(printer.Stdout())

		if _, err := p.Print(ctx, &printerv1.PrintRequest{Lines: []string{"Starting up"}}); err != nil {
			t.Fatal(err)
		}
		var workers sync.WaitGroup
		for range 10 {
			workers.Go(func() {
				if _, err := c.Increment(ctx, &counterv1.IncrementRequest{}); err != nil {
					t.Error(err)
				}
			})
		}
		workers.Wait()
		if j, err := c.Join(ctx, &counterv1.JoinRequest{}); err != nil || j.GetSequence() != 10 || !j.GetPrinted() {
			t.Fatalf("run %d: counter Join = %v, %v", run, j, err)
		}
		if _, err := p.Print(ctx, &printerv1.PrintRequest{Lines: []string{"Finishing up"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Join(ctx, &printerv1.JoinRequest{}); err != nil {
			t.Fatal(err)
		}
		cancel()
		if got := printer.WaitStdout(t, before+len(e2e.TalkOutput(1, 10)))[before:]; got != e2e.TalkOutput(1, 10) {
			t.Fatalf("run %d printed:\n%s\nwant:\n%s", run, got, e2e.TalkOutput(1, 10))
		}
		ctr.Stop(t)
	}
}

// Stop the printer process while increments go on, start it again on the same address, twice:
// every print job reaches the printer's file exactly once, in order. (A printer killed with
// SIGKILL loses the jobs it had acknowledged but not yet written, as its contract says; the
// counter's side of a crash is proved against the printer double, TestPrinterRestartsUnderLoad.)
func TestPrinterProcessRestarts(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "printed.txt")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	startPrinter := func() *e2e.Process {
		return e2e.StartConcurd(t, "--services=printer", "--listen="+addr, "--printer-file="+file, "--printer-stdout=false")
	}
	printer := startPrinter()
	ctr := e2e.StartConcurd(t, "--services=counter", "--jitter=100us",
		"--counter-db="+filepath.Join(dir, "counter.db"), "--printer-addr="+addr)
	c := counterv1.NewCounterServiceClient(e2e.Dial(t, ctr.Addr))

	var stopping atomic.Bool // stop between calls: a cancelled call may still be applied
	var workers sync.WaitGroup
	for range 8 {
		workers.Go(func() {
			for !stopping.Load() {
				if _, err := c.Increment(t.Context(), &counterv1.IncrementRequest{}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	waitForValue := func(n int64) {
		for {
			g, err := c.Get(t.Context(), &counterv1.GetRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if g.GetValue() >= n {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for round := range 2 {
		waitForValue(int64(600*round + 300))
		printer.Stop(t)
		waitForValue(int64(600*round + 600)) // the counter counts on meanwhile
		printer = startPrinter()
	}
	waitForValue(1500)
	stopping.Store(true)
	workers.Wait()

	j, err := c.Join(t.Context(), &counterv1.JoinRequest{})
	if err != nil || !j.GetPrinted() {
		t.Fatalf("counter Join = %v, %v", j, err)
	}
	if _, err := printerv1.NewPrinterServiceClient(e2e.Dial(t, addr)).Join(t.Context(), &printerv1.JoinRequest{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	checkTalkOutput(t, lines, 1, int(j.GetSequence()))
}
