package printer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	"github.com/concur-dev/concur/internal/e2e"
	"github.com/concur-dev/concur/internal/testkit"
)

// jobID names a job of the tests below: the client that sent it and its number there.
type jobID struct{ client, job int }

func jobLine(id jobID, line int) string {
	return fmt.Sprintf("client %03d job %03d line %d", id.client, id.job, line)
}

// readJobs parses output made of jobs of perJob lines written by jobLine. It fails the test
// unless each job's lines are contiguous and in order, each job appears once, and each
// client's jobs appear in the order it sent them; it returns the jobs in output order.
func readJobs(t *testing.T, lines []string, perJob int) []jobID {
	t.Helper()
	if len(lines)%perJob != 0 {
		t.Fatalf("%d lines is not a whole number of %d-line jobs", len(lines), perJob)
	}
	var order []jobID
	next := map[int]int{} // client -> the job expected next
	for i := 0; i < len(lines); i += perJob {
		var id jobID
		if _, err := fmt.Sscanf(lines[i], "client %d job %d line 1", &id.client, &id.job); err != nil {
			t.Fatalf("line %d, %q, does not start a job: %v", i+1, lines[i], err)
		}
		for k := 1; k < perJob; k++ {
			if lines[i+k] != jobLine(id, k+1) {
				t.Fatalf("line %d is %q: the lines of client %d's job %d are not contiguous", i+k+1, lines[i+k], id.client, id.job)
			}
		}
		if id.job != next[id.client] {
			t.Fatalf("line %d: client %d's job %d, but its job %d was expected next (a job repeated, lost or out of order)", i+1, id.client, id.job, next[id.client])
		}
		next[id.client]++
		order = append(order, id)
	}
	return order
}

func readFile(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("%s ends inside a line", path)
	}
	return testkit.Lines(string(b))
}

// 100 clients send 100 jobs of 3 lines each at once, half by Print, half by PrintStream, to
// a real concurd with the race amplifier on. Every job is printed once, its lines together,
// each client's jobs in its order, numbered in the order they were printed; a Join then a
// Tail from 0 agree with the file line for line.
func TestHundredClientsWithJitter(t *testing.T) {
	testkit.NoLeaks(t)
	path := filepath.Join(t.TempDir(), "out.txt")
	p := e2e.StartConcurd(t, "--services=printer", "--jitter=50us", "--printer-stdout=false", "--printer-file="+path)
	const clients, jobs, perJob = 100, 100, 3
	job := func(id jobID) []string {
		lines := make([]string, perJob)
		for k := range lines {
			lines[k] = jobLine(id, k+1)
		}
		return lines
	}
	receipts := make([][]uint64, clients) // client -> job -> sequence
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for c := range clients {
		client := printerv1.NewPrinterServiceClient(e2e.Dial(t, p.Addr))
		wg.Go(func() {
			if c%2 == 0 {
				receipts[c], errs[c] = printEach(client, c, jobs, job)
			} else {
				receipts[c], errs[c] = printStreamed(client, c, jobs, job)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}

	client := printerv1.NewPrinterServiceClient(e2e.Dial(t, p.Addr))
	joined, err := client.Join(context.Background(), &printerv1.JoinRequest{})
	if err != nil || joined.GetSequence() != clients*jobs {
		t.Fatalf("Join = %v, %v; want %d", joined, err, clients*jobs)
	}
	file := readFile(t, path)
	order := readJobs(t, file, perJob)
	if len(order) != clients*jobs {
		t.Fatalf("the file holds %d jobs, want %d", len(order), clients*jobs)
	}
	for i, id := range order {
		if seq := receipts[id.client][id.job]; seq != uint64(i+1) {
			t.Fatalf("job %d of the file is client %d's job %d, whose receipt says sequence %d", i+1, id.client, id.job, seq)
		}
	}
	tail := tailAll(t, client, 0)
	for i, j := range tail {
		if j.GetSequence() != uint64(i+1) {
			t.Fatalf("Tail's job %d has sequence %d", i+1, j.GetSequence())
		}
	}
	if got := tailLines(tail); !slices.Equal(got, file) {
		t.Fatalf("Tail from 0 (%d lines) and the file (%d lines) differ", len(got), len(file))
	}
	p.Stop(t)
}

// printEach sends a client's jobs one Print at a time and returns their sequences.
func printEach(client printerv1.PrinterServiceClient, c, jobs int, job func(jobID) []string) ([]uint64, error) {
	seqs := make([]uint64, jobs)
	for j := range jobs {
		resp, err := client.Print(context.Background(), &printerv1.PrintRequest{Lines: job(jobID{c, j})})
		if err != nil {
			return nil, fmt.Errorf("client %d job %d: %w", c, j, err)
		}
		seqs[j] = resp.GetSequence()
	}
	return seqs, nil
}

// printStreamed sends a client's jobs on one PrintStream, ten messages of ten without waiting
// for the receipts, then reads the receipts.
func printStreamed(client printerv1.PrinterServiceClient, c, jobs int, job func(jobID) []string) ([]uint64, error) {
	stream, err := client.PrintStream(context.Background())
	if err != nil {
		return nil, err
	}
	for first := 0; first < jobs; first += 10 {
		req := &printerv1.PrintStreamRequest{}
		for j := first; j < first+10; j++ {
			req.Jobs = append(req.Jobs, &printerv1.PrintJob{Lines: job(jobID{c, j})})
		}
		if err := stream.Send(req); err != nil {
			return nil, fmt.Errorf("client %d: send: %w", c, err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	var seqs []uint64
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("client %d: receive: %w", c, err)
		}
		for _, r := range resp.GetReceipts() {
			seqs = append(seqs, r.GetSequence())
		}
	}
	if len(seqs) != jobs {
		return nil, fmt.Errorf("client %d: %d receipts for %d jobs", c, len(seqs), jobs)
	}
	return seqs, nil
}

// SIGTERM to concurd while most of 10,000 accepted jobs still wait to be written: every
// accepted job is in the file when the process exits, and its receipt reached the sender
// before the stream ended.
func TestSIGTERMWritesEveryAcceptedJob(t *testing.T) {
	testkit.NoLeaks(t)
	path := filepath.Join(t.TempDir(), "out.txt")
	// Jitter slows the writer (a pause after each job) far more than acceptance (a pause per
	// message), so that most jobs are still queued at SIGTERM.
	p := e2e.StartConcurd(t, "--services=printer", "--jitter=100us", "--printer-stdout=false", "--printer-queue=10000", "--shutdown-timeout=2m", "--printer-file="+path)
	client := printerv1.NewPrinterServiceClient(e2e.Dial(t, p.Addr))
	const jobs, perJob = 10000, 3
	job := func(n int) []string {
		return []string{jobLine(jobID{0, n}, 1), jobLine(jobID{0, n}, 2), jobLine(jobID{0, n}, 3)}
	}
	stream, err := client.PrintStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for first := 0; first < jobs; first += 1000 {
		req := &printerv1.PrintStreamRequest{}
		for n := first; n < first+1000; n++ {
			req.Jobs = append(req.Jobs, &printerv1.PrintJob{Lines: job(n)})
		}
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	stream.CloseSend()
	receipts := func() int {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("receipts: %v", err)
		}
		return len(resp.GetReceipts())
	}
	// The first receipt says the first message is written, and so that the stream was
	// taken: SIGTERM now.
	before := receipts()
	p.Signal(t, syscall.SIGTERM)
	acked := before
	for {
		resp, err := stream.Recv()
		if err != nil {
			if status.Code(err) != codes.Unavailable && !errors.Is(err, io.EOF) {
				t.Fatalf("the stream ended with %v, want UNAVAILABLE or its end", err)
			}
			break
		}
		acked += len(resp.GetReceipts())
	}
	if acked == before {
		t.Fatalf("no receipt came after SIGTERM: nothing accepted was still queued, so the test proves nothing (raise --jitter)")
	}
	t.Logf("%d jobs acknowledged before SIGTERM, %d while the printer drained", before, acked-before)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if code := p.Wait(ctx, t); code != 0 {
		t.Fatalf("concurd exited %d after SIGTERM, want 0", code)
	}
	if order := readJobs(t, readFile(t, path), perJob); len(order) != acked {
		t.Fatalf("the file holds %d jobs after SIGTERM, want the %d acknowledged", len(order), acked)
	}
}

// concurd killed (SIGKILL) while it streams a source's jobs to its file, then restarted:
// the sender resends everything from its first job, and the file ends up with every job
// exactly once, in order. The state beside the file never disagrees with it: a job the file
// holds is recognised as a duplicate, and one it lost (cut off with an incomplete batch, or
// accepted but never written) is printed.
func TestKilledThenResentPrintsEveryJobOnce(t *testing.T) {
	testkit.NoLeaks(t)
	path := filepath.Join(t.TempDir(), "out.txt")
	const jobs = 3000
	send := func(p *e2e.Process, upTo int) (duplicates int, err error) {
		client := printerv1.NewPrinterServiceClient(e2e.Dial(t, p.Addr))
		stream, err := client.PrintStream(context.Background())
		if err != nil {
			return 0, err
		}
		for first := 0; first < upTo; first += 20 {
			req := &printerv1.PrintStreamRequest{}
			for n := first; n < first+20; n++ {
				req.Jobs = append(req.Jobs, &printerv1.PrintJob{Lines: []string{jobLine(jobID{7, n}, 1), jobLine(jobID{7, n}, 2)}, Source: "sender", SourceSequence: uint64(n + 1)})
			}
			if err := stream.Send(req); err != nil {
				return 0, err
			}
			resp, err := stream.Recv()
			if err != nil {
				return 0, err
			}
			for _, r := range resp.GetReceipts() {
				if r.GetDuplicate() {
					duplicates++
				}
			}
		}
		return duplicates, stream.CloseSend()
	}
	for round := range 2 { // crash twice, at different points
		p := e2e.StartConcurd(t, "--services=printer", "--jitter=200us", "--printer-stdout=false", "--printer-file="+path)
		if _, err := send(p, (round+1)*jobs/3); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		p.Signal(t, syscall.SIGKILL)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		p.Wait(ctx, t)
		cancel()
	}
	p := e2e.StartConcurd(t, "--services=printer", "--printer-stdout=false", "--printer-file="+path)
	kept := readJobs(t, readFile(t, path), 2) // as recovery left the file
	t.Logf("after two crashes the file holds %d jobs (an incomplete batch was cut off: %v)", len(kept), strings.Contains(p.Logs(), "cut off the file"))
	duplicates, err := send(p, jobs)
	if err != nil {
		t.Fatal(err)
	}
	if duplicates != len(kept) {
		t.Fatalf("%d resent jobs were acknowledged as duplicates, but the file held %d: the state and the file disagree", duplicates, len(kept))
	}
	p.Stop(t)
	if order := readJobs(t, readFile(t, path), 2); len(order) != jobs {
		t.Fatalf("the file holds %d jobs after resending all %d", len(order), jobs)
	}
}

// concurd refuses to start on a bad printer flag, or on a file another concurd prints to,
// saying why.
func TestConcurdRefusesToStart(t *testing.T) {
	testkit.NoLeaks(t)
	path := filepath.Join(t.TempDir(), "out.txt")
	e2e.StartConcurd(t, "--services=printer", "--printer-file="+path)
	for _, tt := range []struct {
		args []string
		says string
	}{
		{[]string{"--printer-queue=0"}, "--printer-queue is 0; it must be 1 or more"},
		{[]string{"--printer-flush-interval=-1s"}, "--printer-flush-interval is -1s"},
		{[]string{"--printer-file=" + path}, "is another printer using --printer-file " + path},
	} {
		t.Run(strings.SplitN(tt.args[0], "=", 2)[0], func(t *testing.T) {
			_, stderr, err := e2e.RunErr(t, "", e2e.Concurd(t), append([]string{"--listen=127.0.0.1:0"}, tt.args...)...)
			if e2e.ExitCode(err) != 1 || !strings.Contains(stderr, tt.says) {
				t.Errorf("concurd %v: %v, stderr %q; want exit 1 saying %q", tt.args, err, stderr, tt.says)
			}
		})
	}
}

// What clients can make the printer hold is bounded: with the default flags, a message of the
// most jobs is accepted and one more job is refused naming jobs, a message over gRPC's 4 MiB
// is refused, and three senders streaming messages at the limits at once keep concurd's peak
// resident memory under 256 MiB. concurd is built without the race detector here, which
// multiplies memory.
func TestMemoryIsBounded(t *testing.T) {
	testkit.NoLeaks(t)
	path := filepath.Join(t.TempDir(), "out.txt")
	p := e2e.Start(t, e2e.BuildWithoutRace(t, "./cmd/concurd"), "--listen=127.0.0.1:0", "--log-format=json",
		"--services=printer", "--printer-stdout=false", "--printer-file="+path)
	client := printerv1.NewPrinterServiceClient(e2e.Dial(t, p.Addr))
	// 10,000 jobs of one 400-byte line: 3.9 MiB on the wire, under the 4 MiB limit.
	message := func(jobs, lineBytes int) *printerv1.PrintStreamRequest {
		req := &printerv1.PrintStreamRequest{Jobs: make([]*printerv1.PrintJob, jobs)}
		line := strings.Repeat("x", lineBytes)
		for i := range req.Jobs {
			req.Jobs[i] = &printerv1.PrintJob{Lines: []string{line}}
		}
		return req
	}
	// send streams req times over, reading receipts as they come: a sender that stops reading
	// stops the printer's answers, and so its own stream.
	send := func(req *printerv1.PrintStreamRequest, times int) (receipts int, err error) {
		stream, err := client.PrintStream(context.Background())
		if err != nil {
			return 0, err
		}
		go func() {
			for range times {
				if stream.Send(req) != nil {
					return // the stream's status comes from Recv
				}
			}
			stream.CloseSend()
		}()
		for {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return receipts, nil
			}
			if err != nil {
				return receipts, err
			}
			receipts += len(resp.GetReceipts())
		}
	}
	if n, err := send(message(10000, 400), 1); err != nil || n != 10000 {
		t.Fatalf("a message of 10,000 jobs (--printer-max-jobs): %d receipts, %v", n, err)
	}
	if _, err := send(message(10001, 1), 1); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "jobs: holds 10001 jobs") {
		t.Fatalf("a message of 10,001 jobs: %v, want INVALID_ARGUMENT naming jobs", err)
	}
	if _, err := send(message(10000, 420), 1); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a message over 4 MiB: %v, want RESOURCE_EXHAUSTED", err)
	}
	const senders, messages = 3, 8
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			if n, err := send(message(10000, 400), messages); err != nil || n != messages*10000 {
				t.Errorf("a sender of %d messages at the limits: %d receipts, %v", messages, n, err)
			}
		})
	}
	wg.Wait()
	peak := p.PeakRSS(t)
	t.Logf("peak resident memory of concurd: %.1f MiB", float64(peak)/(1<<20))
	if peak >= 256<<20 {
		t.Fatalf("concurd's peak resident memory is %.1f MiB, over 256 MiB", float64(peak)/(1<<20))
	}
	p.Stop(t)
}
