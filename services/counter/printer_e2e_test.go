package counter_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	"github.com/concur-dev/concur/internal/e2e"
)

// talkOutput is what the talk's demo prints for n workers.
func talkOutput(n int) string {
	var b strings.Builder
	b.WriteString("Starting up\n")
	for i := 1; i <= n; i++ {
		b.WriteString("The count is " + strconv.Itoa(i) + "\n---------------\n")
	}
	b.WriteString("Finishing up\n")
	return b.String()
}

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
		if got := printer.WaitStdout(t, before+len(talkOutput(10)))[before:]; got != talkOutput(10) {
			t.Fatalf("run %d printed:\n%s\nwant:\n%s", run, got, talkOutput(10))
		}
		stop(t, ctr)
	}
}

// stop ends a concurd with SIGTERM and checks it drained cleanly.
func stop(t *testing.T, p *e2e.Process) {
	t.Helper()
	p.Signal(t, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if code := p.Wait(ctx, t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM\n%s", code, p.Logs())
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
		stop(t, printer)
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

// The README's grpcurl examples, run the way a user runs them: one concurd with the printer
// and the counter, the real grpcurl, IncrementStream fed through -d @.
func TestReadmeExamples(t *testing.T) {
	p := e2e.StartConcurd(t, "--counter-db="+filepath.Join(t.TempDir(), "counter.db"))
	grpcurl := e2e.Grpcurl(t)
	call := func(stdin string, args ...string) string {
		t.Helper()
		out, _ := e2e.Run(t, stdin, grpcurl, append([]string{"-plaintext"}, args...)...)
		return out
	}
	fails := func(args ...string) string {
		t.Helper()
		_, errOut, err := e2e.RunErr(t, "", grpcurl, append([]string{"-plaintext"}, args...)...)
		if err == nil {
			t.Fatalf("grpcurl %v succeeded", args)
		}
		return errOut
	}
	const svc = "concur.counter.v1.CounterService/"
	var inc counterv1.IncrementResponse
	decode := func(out string, m proto.Message) {
		t.Helper()
		if err := protojson.Unmarshal([]byte(out), m); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}

	decode(call("", p.Addr, svc+"Increment"), &inc)
	if inc.GetName() != "default" || inc.GetValue() != 1 || inc.GetSequence() != 1 {
		t.Fatalf("Increment: %v", &inc)
	}
	apples := `{"name": "apples", "delta": 5, "request_id": "order-1042"}`
	decode(call("", "-d", apples, p.Addr, svc+"Increment"), &inc)
	decode(call("", "-d", apples, p.Addr, svc+"Increment"), &inc)
	if inc.GetValue() != 5 || inc.GetSequence() != 2 || !inc.GetReplayed() {
		t.Fatalf("retried Increment: %v", &inc)
	}
	if out := fails("-d", `{"name": "apples", "delta": 7, "request_id": "order-1042"}`, p.Addr, svc+"Increment"); !strings.Contains(out, "Code: InvalidArgument") || !strings.Contains(out, `"field": "request_id"`) {
		t.Fatalf("reused request_id: %s", out)
	}

	var sum counterv1.IncrementStreamResponse
	decode(call(`{"increments": [{"name": "apples"}, {"name": "pears", "delta": 2}]}
{"increments": [{}, {}, {"name": "apples", "delta": -3}]}
`, "-d", "@", p.Addr, svc+"IncrementStream"), &sum)
	if got := fmt.Sprint(sum.GetApplied(), sum.GetCounters()); got != fmt.Sprint(uint64(5), []*counterv1.CounterValue{
		{Name: "apples", Value: new(int64(3))}, {Name: "pears", Value: new(int64(2))}, {Name: "default", Value: new(int64(3))}}) {
		t.Fatalf("IncrementStream: %s", got)
	}

	var get counterv1.GetResponse
	decode(call("", "-d", `{"name": "apples"}`, p.Addr, svc+"Get"), &get)
	var join counterv1.JoinResponse
	decode(call("", p.Addr, svc+"Join"), &join)
	if get.GetValue() != 3 || join.GetSequence() != 7 || !join.GetPrinted() {
		t.Fatalf("Get %v, Join %v", &get, &join)
	}
	out, _, _ := e2e.RunErr(t, "", grpcurl, "-plaintext", "-max-time", "1", "-d", `{"name": "apples"}`, p.Addr, svc+"Watch")
	if !strings.Contains(out, `"value": "3"`) || !strings.Contains(out, `"sequence": "7"`) {
		t.Fatalf("Watch: %s", out)
	}

	decode(call("", "-d", `{"name": "big", "delta": "9223372036854775807"}`, p.Addr, svc+"Increment"), &inc)
	if out := fails("-d", `{"name": "big"}`, p.Addr, svc+"Increment"); !strings.Contains(out, "Code: OutOfRange") {
		t.Fatalf("overflow: %s", out)
	}
	if out := fails("-d", `{"delta": 0}`, p.Addr, svc+"Increment"); !strings.Contains(out, "Code: InvalidArgument") || !strings.Contains(out, `"field": "delta"`) {
		t.Fatalf("zero delta: %s", out)
	}

	// The printer of the same concurd printed every increment's print job, in order.
	if _, err := printerv1.NewPrinterServiceClient(e2e.Dial(t, p.Addr)).Join(t.Context(), &printerv1.JoinRequest{}); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{"The count is 1", "---------------", "The count of apples is 5", "The count of apples is 6",
		"The count of pears is 2", "The count is 2", "---------------", "The count is 3", "---------------",
		"The count of apples is 3", "The count of big is 9223372036854775807", ""}, "\n")
	if got := p.WaitStdout(t, len(want)); got != want {
		t.Fatalf("concurd printed:\n%s\nwant:\n%s", got, want)
	}
}
