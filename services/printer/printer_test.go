package printer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	"github.com/concur-dev/concur/api/violation"
	"github.com/concur-dev/concur/internal/jitter"
	"github.com/concur-dev/concur/internal/testkit"
	"github.com/concur-dev/concur/services/printer"
)

// The talk's example, printed through the service: Join is print_queue.join(), and it
// answers with the last sequence written.
func TestPrintThenJoin(t *testing.T) {
	testkit.NoLeaks(t)
	var out testkit.Buffer
	r := start(t, config(t), &out, jitter.New(0))
	if got := r.join(t); got != 0 {
		t.Fatalf("Join on a new printer = %d, want 0", got)
	}
	want := []string{"Starting up"}
	r.print(t, "Starting up")
	for i := 1; i <= 10; i++ {
		line := fmt.Sprintf("The count is %d", i)
		if seq := r.print(t, line, "---------------"); seq != uint64(i+1) {
			t.Fatalf("sequence of job %d = %d", i+1, seq)
		}
		want = append(want, line, "---------------")
	}
	r.print(t, "Finishing up")
	want = append(want, "Finishing up")
	if got := r.join(t); got != 12 {
		t.Fatalf("Join = %d, want 12", got)
	}
	if got := out.Lines(); !slices.Equal(got, want) {
		t.Fatalf("printed:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Tail from 0 after 10 jobs yields those 10, then follows new ones live.
func TestTailFollows(t *testing.T) {
	testkit.NoLeaks(t)
	r := start(t, config(t), io.Discard, jitter.New(0))
	for i := 1; i <= 10; i++ {
		r.print(t, fmt.Sprintf("job %d", i))
	}
	r.join(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := r.client.Tail(ctx, &printerv1.TailRequest{})
	if err != nil {
		t.Fatal(err)
	}
	expect := func(seq int) {
		t.Helper()
		got, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv for job %d: %v", seq, err)
		}
		if got.GetSequence() != uint64(seq) || !slices.Equal(got.GetLines(), []string{fmt.Sprintf("job %d", seq)}) || got.GetWrittenAt() == nil {
			t.Fatalf("Tail sent %v, want job %d with its time", got, seq)
		}
	}
	for i := 1; i <= 10; i++ {
		expect(i)
	}
	for i := 11; i <= 15; i++ {
		r.print(t, fmt.Sprintf("job %d", i))
		expect(i)
	}
}

func TestTailHistoryOnlyAndFromSequence(t *testing.T) {
	testkit.NoLeaks(t)
	r := start(t, config(t), io.Discard, jitter.New(0))
	if got := tailAll(t, r.client, 0); len(got) != 0 {
		t.Fatalf("history of a new printer: %v", got)
	}
	for i := 1; i <= 7; i++ {
		r.print(t, fmt.Sprintf("job %d", i))
	}
	r.join(t)
	got := tailLines(tailAll(t, r.client, 5))
	if want := []string{"job 5", "job 6", "job 7"}; !slices.Equal(got, want) {
		t.Fatalf("history from 5 = %q, want %q", got, want)
	}
	if got := tailAll(t, r.client, 8); len(got) != 0 {
		t.Fatalf("history from beyond the last written = %v, want nothing", got)
	}
}

// A sequence older than the ring is OUT_OF_RANGE naming the oldest kept; 0 starts there.
func TestTailOlderThanHistory(t *testing.T) {
	testkit.NoLeaks(t)
	r := start(t, config(t, "--printer-history=5"), io.Discard, jitter.New(0))
	for i := 1; i <= 12; i++ {
		r.print(t, fmt.Sprintf("job %d", i))
	}
	r.join(t)
	stream, err := r.client.Tail(context.Background(), &printerv1.TailRequest{FromSequence: 3})
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	if c, reason, meta := code(err); c != codes.OutOfRange || reason != "SEQUENCE_NOT_KEPT" || meta["oldest_sequence"] != "8" || meta["requested_sequence"] != "3" ||
		meta["max_jobs"] != "5" || meta["max_jobs_flag"] != "--printer-history" || meta["max_bytes_flag"] != "--printer-history-bytes" ||
		!strings.Contains(err.Error(), "the oldest kept is 8") {
		t.Fatalf("Tail from 3 with jobs 8-12 kept: %v (%s %v)", err, reason, meta)
	}
	got := tailAll(t, r.client, 0)
	if len(got) != 5 || got[0].GetSequence() != 8 || got[4].GetSequence() != 12 {
		t.Fatalf("Tail from 0 = %v, want jobs 8 to 12", got)
	}
}

// A reader that never reads does not slow printing; when it reads again it gets what was on
// its way, contiguous, then RESOURCE_EXHAUSTED telling it where it was and where to go on.
func TestSlowReaderIsCutOff(t *testing.T) {
	testkit.NoLeaks(t)
	// Small fixed windows (they turn off window growth), so the server's sends block soon.
	r := start(t, config(t, "--printer-history=50", "--printer-max-line-bytes=2000"), io.Discard, jitter.New(0),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := r.client.Tail(ctx, &printerv1.TailRequest{FromSequence: 1})
	if err != nil {
		t.Fatal(err)
	}
	const jobs = 3000 // 3000 jobs of 1 KB: far more than the windows and the ring hold
	line := strings.Repeat("x", 1000)
	for i := 1; i <= jobs; i++ {
		r.print(t, strconv.Itoa(i)+line)
	}
	if got := r.join(t); got != jobs {
		t.Fatalf("Join while a reader does not read = %d, want %d", got, jobs)
	}
	var last uint64
	for {
		got, err := stream.Recv()
		if err != nil {
			c, reason, meta := code(err)
			if c != codes.ResourceExhausted || reason != "READER_FELL_BEHIND" {
				t.Fatalf("after %d jobs the reader got %v; want RESOURCE_EXHAUSTED", last, err)
			}
			if meta["requested_sequence"] != strconv.FormatUint(last+1, 10) || meta["oldest_sequence"] != strconv.Itoa(jobs-49) || meta["max_jobs"] != "50" ||
				!strings.Contains(err.Error(), fmt.Sprintf("call Tail again from %d", jobs-49)) {
				t.Fatalf("cut off after job %d with %v %v; want requested %d, oldest %d", last, err, meta, last+1, jobs-49)
			}
			break
		}
		if got.GetSequence() != last+1 || got.GetLines()[0] != strconv.FormatUint(last+1, 10)+line {
			t.Fatalf("after job %d the reader got job %d", last, got.GetSequence())
		}
		last = got.GetSequence()
	}
	if last >= jobs-50 {
		t.Fatalf("the reader got %d jobs before it was cut off: it never fell out of the ring", last)
	}
	if got := tailAll(t, r.client, jobs-49); len(got) != 50 {
		t.Fatalf("resuming from the oldest kept gave %d jobs, want 50", len(got))
	}
}

// When the queue is full, Print waits for room until its deadline, then answers
// RESOURCE_EXHAUSTED; that job is not printed, and a Print without a deadline waits for room.
func TestBackpressure(t *testing.T) {
	testkit.NoLeaks(t)
	stdout := newGate()
	defer stdout.unblock()
	r := start(t, config(t, "--printer-queue=2"), stdout, jitter.New(0))
	r.print(t, "one") // the writer takes it and is stuck writing it
	r.print(t, "two") // two accepted jobs are waiting: the queue is full
	// The printer answers 250ms before this deadline: time enough on a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := r.client.Print(ctx, &printerv1.PrintRequest{Lines: []string{"three"}})
	if c, reason, meta := code(err); c != codes.ResourceExhausted || reason != "QUEUE_FULL" || !strings.Contains(err.Error(), "not accepted") ||
		meta["max_jobs"] != "2" || meta["max_jobs_flag"] != "--printer-queue" || meta["max_bytes_flag"] != "--printer-queue-bytes" {
		t.Fatalf("Print into a full queue: %v %v, want RESOURCE_EXHAUSTED (QUEUE_FULL) with the queue's limits", err, meta)
	}
	four := make(chan error, 1)
	go func() {
		_, err := r.client.Print(context.Background(), &printerv1.PrintRequest{Lines: []string{"four"}})
		four <- err
	}()
	stdout.unblock()
	if err := <-four; err != nil {
		t.Fatalf("Print waiting for room: %v", err)
	}
	if got := r.join(t); got != 3 {
		t.Fatalf("Join = %d, want 3", got)
	}
	if got, want := stdout.Lines(), []string{"one", "two", "four"}; !slices.Equal(got, want) {
		t.Fatalf("printed %q, want %q", got, want)
	}
}

// A PrintStream message is accepted whole or not at all: one that does not fit beside what
// waits in the queue waits for room, whole, and is refused at its deadline without a job of it
// printed; one that fits once room is made is accepted whole. A receipt comes only once its
// job is written.
func TestMessageWaitsForRoomWhole(t *testing.T) {
	testkit.NoLeaks(t)
	stdout := newGate()
	defer stdout.unblock()
	r := start(t, config(t, "--printer-queue=10"), stdout, jitter.New(0))
	for i := range 6 { // accepted: the writer is stuck on the first, five wait
		r.print(t, fmt.Sprintf("a %d", i))
	}
	message := func(name string, n int) *printerv1.PrintStreamRequest {
		req := &printerv1.PrintStreamRequest{}
		for i := range n {
			req.Jobs = append(req.Jobs, &printerv1.PrintJob{Lines: []string{fmt.Sprintf("%s %d", name, i)}})
		}
		return req
	}
	// Six more do not fit beside six: the message waits, then is refused at its deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	refused, err := r.client.PrintStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := refused.Send(message("b", 6)); err != nil {
		t.Fatal(err)
	}
	if _, err := refused.Recv(); !isQueueFull(err) {
		t.Fatalf("a message that does not fit: %v, want RESOURCE_EXHAUSTED (QUEUE_FULL)", err)
	}
	// Four fit; six more wait for room, without a deadline, and get it once the writer goes on.
	stream, err := r.client.PrintStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*printerv1.PrintStreamRequest{message("c", 4), message("d", 6)} {
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	stream.CloseSend()
	stdout.unblock()
	var sequences []uint64
	for range 2 {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		written := tailAll(t, r.client, 0)
		for _, rc := range resp.GetReceipts() {
			if rc.GetSequence() > written[len(written)-1].GetSequence() {
				t.Fatalf("the receipt of job %d came before it was written (written up to %d)", rc.GetSequence(), written[len(written)-1].GetSequence())
			}
			sequences = append(sequences, rc.GetSequence())
		}
	}
	if want := []uint64{7, 8, 9, 10, 11, 12, 13, 14, 15, 16}; !slices.Equal(sequences, want) {
		t.Fatalf("receipts for sequences %v, want %v", sequences, want)
	}
	r.join(t)
	var want []string
	for _, m := range []struct {
		name string
		n    int
	}{{"a", 6}, {"c", 4}, {"d", 6}} {
		for i := range m.n {
			want = append(want, fmt.Sprintf("%s %d", m.name, i))
		}
	}
	if got := stdout.Lines(); !slices.Equal(got, want) {
		t.Fatalf("printed %q, want %q (the refused message not at all)", got, want)
	}
}

// What one message may hold is limited, and what could never fit in the queue is refused at
// once, naming jobs: a message of --printer-max-jobs is accepted, one more job is refused.
func TestMessageLimits(t *testing.T) {
	testkit.NoLeaks(t)
	r := start(t, config(t, "--printer-max-jobs=100", "--printer-queue=200", "--printer-queue-bytes=102500",
		"--printer-stdout=false"), io.Discard, jitter.New(0))
	send := func(jobs, lines int) error {
		req := &printerv1.PrintStreamRequest{}
		for range jobs {
			req.Jobs = append(req.Jobs, &printerv1.PrintJob{Lines: slices.Repeat([]string{strings.Repeat("x", 1024)}, lines)})
		}
		stream, err := r.client.PrintStream(context.Background())
		if err != nil {
			return err
		}
		if err := stream.Send(req); err != nil {
			return err
		}
		resp, err := stream.Recv()
		if err == nil && len(resp.GetReceipts()) != jobs {
			return fmt.Errorf("%d receipts for %d jobs", len(resp.GetReceipts()), jobs)
		}
		return err
	}
	if err := send(100, 1); err != nil { // 100 jobs and 102,500 bytes: the whole queue
		t.Fatalf("a message of --printer-max-jobs jobs: %v", err)
	}
	for _, tt := range []struct {
		jobs, lines int
		says        string
	}{
		{101, 1, "at most 100 jobs per message (--printer-max-jobs)"},
		{51, 2, "queue holds at most 200 jobs and 102500 bytes"},
	} {
		t.Run(fmt.Sprintf("%d jobs of %d lines", tt.jobs, tt.lines), func(t *testing.T) {
			err := send(tt.jobs, tt.lines)
			if status.Code(err) != codes.InvalidArgument || !slices.Equal(violation.Fields(err), []string{"jobs"}) || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("a message of %d jobs of %d lines: %v; want INVALID_ARGUMENT naming jobs, saying %q", tt.jobs, tt.lines, err, tt.says)
			}
		})
	}
}

// The history keeps at most --printer-history-bytes of lines: older jobs are forgotten first.
func TestHistoryBytes(t *testing.T) {
	testkit.NoLeaks(t)
	r := start(t, config(t, "--printer-history-bytes=30", "--printer-max-lines=1", "--printer-max-line-bytes=9", "--printer-queue-bytes=10"), io.Discard, jitter.New(0))
	for i := range 5 {
		r.print(t, fmt.Sprintf("job %d...", i)) // 10 bytes with its newline
	}
	r.join(t)
	if got, want := tailLines(tailAll(t, r.client, 0)), []string{"job 2...", "job 3...", "job 4..."}; !slices.Equal(got, want) {
		t.Fatalf("the history holds %q, want the last 30 bytes' worth %q", got, want)
	}
}

func isQueueFull(err error) bool {
	c, reason, _ := code(err)
	return c == codes.ResourceExhausted && reason == "QUEUE_FULL"
}

// A sink that fails is retried from where it stopped: nothing is lost or written twice.
func TestFailingSinkIsRetried(t *testing.T) {
	testkit.NoLeaks(t)
	sink := &flaky{failures: 3}
	r := start(t, config(t), sink, jitter.New(0))
	var want []string
	for i := 1; i <= 20; i++ {
		want = append(want, fmt.Sprintf("job %d", i))
		r.print(t, want[i-1])
	}
	if got := r.join(t); got != 20 {
		t.Fatalf("Join = %d, want 20", got)
	}
	if got := sink.Lines(); !slices.Equal(got, want) || sink.failures != 0 {
		t.Fatalf("printed %q through a failing sink (failures left %d), want %q", got, sink.failures, want)
	}
}

// flaky writes half of what it is given and fails, its first few times.
type flaky struct {
	testkit.Buffer
	failures int // touched only by the printer's writer goroutine, and read after Join
}

func (f *flaky) Write(p []byte) (int, error) {
	if f.failures > 0 {
		f.failures--
		n, _ := f.Buffer.Write(p[:len(p)/2])
		return n, errors.New("disk on fire")
	}
	return f.Buffer.Write(p)
}

// Shutdown refuses new and waiting jobs with UNAVAILABLE, ends idle PrintStreams, writes every
// accepted job, and ends Tails once they have everything, telling them where to resume.
func TestShutdownDrains(t *testing.T) {
	testkit.NoLeaks(t)
	stdout := newGate()
	defer stdout.unblock()
	r := start(t, config(t, "--printer-queue=1"), stdout, jitter.New(0))
	r.print(t, "accepted") // stuck in the writer: the queue is full

	stream, err := r.client.PrintStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tail, err := r.client.Tail(context.Background(), &printerv1.TailRequest{})
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan error, 1)
	go func() {
		_, err := r.client.Print(context.Background(), &printerv1.PrintRequest{Lines: []string{"waiting"}})
		waiting <- err
	}()
	shutdown := make(chan error, 1)
	go func() { shutdown <- r.printer.Shutdown(context.Background()) }()

	for _, err := range []error{<-waiting, printErr(r, "new")} {
		if c, _, _ := code(err); c != codes.Unavailable || !strings.Contains(err.Error(), "shutting down") {
			t.Fatalf("Print during shutdown: %v, want UNAVAILABLE", err)
		}
	}
	if _, err := stream.Recv(); codeOf(err) != codes.Unavailable {
		t.Fatalf("idle PrintStream during shutdown: %v, want UNAVAILABLE", err)
	}
	stdout.unblock()
	if err := <-shutdown; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := stdout.Lines(); !slices.Equal(got, []string{"accepted"}) {
		t.Fatalf("printed %q, want only the accepted job", got)
	}
	if got, err := tail.Recv(); err != nil || got.GetSequence() != 1 {
		t.Fatalf("Tail during shutdown: %v, %v; want job 1", got, err)
	}
	_, err = tail.Recv()
	if c, _, meta := code(err); c != codes.Unavailable || meta["resume_sequence"] != "2" {
		t.Fatalf("Tail at the end of a shutdown: %v %v, want UNAVAILABLE resuming from 2", err, meta)
	}
	if got := r.join(t); got != 1 {
		t.Fatalf("Join after shutdown = %d, want 1", got)
	}
}

func printErr(r *rig, line string) error {
	_, err := r.client.Print(context.Background(), &printerv1.PrintRequest{Lines: []string{line}})
	return err
}

func codeOf(err error) codes.Code { c, _, _ := code(err); return c }

// A PrintStream broken half-way and resent from its start prints every job once, in order.
func TestPrintStreamResentAfterABreak(t *testing.T) {
	testkit.NoLeaks(t)
	var out testkit.Buffer
	r := start(t, config(t), &out, jitter.New(0))
	job := func(n int) *printerv1.PrintJob {
		return &printerv1.PrintJob{Lines: []string{fmt.Sprintf("job %d", n), "---"}, Source: "sender", SourceSequence: uint64(n)}
	}
	message := func(m int) *printerv1.PrintStreamRequest { // message m carries jobs 10m+1 to 10m+10
		req := &printerv1.PrintStreamRequest{}
		for n := 10*m + 1; n <= 10*m+10; n++ {
			req.Jobs = append(req.Jobs, job(n))
		}
		return req
	}

	exchange := func(stream printerv1.PrinterService_PrintStreamClient, m int) []*printerv1.PrintReceipt {
		t.Helper()
		if err := stream.Send(message(m)); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetReceipts()
	}

	ctx, cancel := context.WithCancel(context.Background())
	stream, err := r.client.PrintStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for m := range 5 {
		for i, rc := range exchange(stream, m) {
			n := 10*m + i + 1
			if rc.GetSequence() != uint64(n) || rc.GetSource() != "sender" || rc.GetSourceSequence() != uint64(n) || rc.GetDuplicate() {
				t.Fatalf("receipt for job %d: %v", n, rc)
			}
		}
	}
	stream.Send(message(5)) // on its way, or not, when the stream breaks
	cancel()

	stream, err = r.client.PrintStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	duplicates := 0
	for m := range 10 {
		for i, rc := range exchange(stream, m) {
			if n := 10*m + i + 1; rc.GetSourceSequence() != uint64(n) || rc.GetDuplicate() == (rc.Sequence != nil) {
				t.Fatalf("receipt for resent job %d: %v", n, rc)
			}
			if rc.GetDuplicate() {
				duplicates++
			}
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("end of stream: %v", err)
	}
	if duplicates != 50 && duplicates != 60 {
		t.Fatalf("%d resent jobs were duplicates, want 50 (or 60 if the last message before the break got through)", duplicates)
	}
	if got := r.join(t); got != 100 {
		t.Fatalf("Join = %d, want 100", got)
	}
	var want []string
	for n := 1; n <= 100; n++ {
		want = append(want, job(n).Lines...)
	}
	if got := out.Lines(); !slices.Equal(got, want) {
		t.Fatalf("printed:\n%s", strings.Join(got, "\n"))
	}
}

// A source's jobs are deduplicated on unary Print too, and the number of sources is bounded.
func TestSources(t *testing.T) {
	testkit.NoLeaks(t)
	var out testkit.Buffer
	r := start(t, config(t, "--printer-max-sources=2"), &out, jitter.New(0))
	send := func(source string, seq uint64) (*printerv1.PrintResponse, error) {
		return r.client.Print(context.Background(), &printerv1.PrintRequest{Lines: []string{fmt.Sprintf("%s %d", source, seq)}, Source: source, SourceSequence: seq})
	}
	for _, step := range []struct {
		source string
		seq    uint64
		want   uint64 // sequence; 0 for a duplicate
	}{{"a", 1, 1}, {"a", 1, 0}, {"b", 5, 2}, {"b", 3, 0}, {"a", 2, 3}, {"b", 6, 4}} {
		resp, err := send(step.source, step.seq)
		if err != nil || resp.GetSequence() != step.want || resp.GetDuplicate() != (step.want == 0) {
			t.Fatalf("Print from %s #%d: %v, %v; want sequence %d", step.source, step.seq, resp, err, step.want)
		}
	}
	_, err := send("c", 1)
	if c, reason, meta := code(err); c != codes.ResourceExhausted || reason != "TOO_MANY_SOURCES" || meta["max_sources"] != "2" || meta["max_sources_flag"] != "--printer-max-sources" {
		t.Fatalf("a third source with --printer-max-sources=2: %v %v", err, meta)
	}
	r.join(t)
	if got, want := out.Lines(), []string{"a 1", "b 5", "a 2", "b 6"}; !slices.Equal(got, want) {
		t.Fatalf("printed %q, want %q", got, want)
	}
}

// Every bad input gets INVALID_ARGUMENT naming its field, and nothing of it is printed.
func TestBadInput(t *testing.T) {
	testkit.NoLeaks(t)
	var out testkit.Buffer
	r := start(t, config(t, "--printer-max-lines=3", "--printer-max-line-bytes=10"), &out, jitter.New(0))
	for _, tt := range []struct {
		name   string
		lines  []string
		source string
		seq    uint64
		fields []string
	}{
		{"empty job", nil, "", 0, []string{"lines"}},
		{"newline", []string{"ok", "a\nb"}, "", 0, []string{"lines[1]"}},
		{"carriage return", []string{"a\rb"}, "", 0, []string{"lines[0]"}},
		{"escape sequence", []string{"\x1b[2J"}, "", 0, []string{"lines[0]"}},
		{"other control", []string{"ok", "ok", "\x00"}, "", 0, []string{"lines[2]"}},
		{"too many lines", []string{"1", "2", "3", "4"}, "", 0, []string{"lines"}},
		{"line too long", []string{"ok", "12345678901"}, "", 0, []string{"lines[1]"}},
		{"source without sequence", []string{"x"}, "s", 0, []string{"source_sequence"}},
		{"sequence without source", []string{"x"}, "", 4, []string{"source"}},
		{"unprintable source", []string{"x"}, "s\t", 1, []string{"source"}},
		{"every violation, in field order, whoever found it", []string{"12345678901", "\x00", "3", "4"}, "s\t", 1,
			[]string{"lines", "lines[0]", "lines[1]", "source"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.client.Print(context.Background(), &printerv1.PrintRequest{Lines: tt.lines, Source: tt.source, SourceSequence: tt.seq})
			if codeOf(err) != codes.InvalidArgument || !slices.Equal(violation.Fields(err), tt.fields) {
				t.Errorf("%s: Print answered %v, fields %v; want INVALID_ARGUMENT on %v", tt.name, err, violation.Fields(err), tt.fields)
			}
		})
	}
	for _, tt := range []struct {
		name   string
		jobs   [][]string
		fields []string
	}{
		{"no jobs", nil, []string{"jobs"}},
		{"bad line in second job", [][]string{{"ok"}, {"ok", "bad\n"}}, []string{"jobs[1].lines[1]"}},
		{"long line in second job", [][]string{{"ok"}, {"12345678901"}}, []string{"jobs[1].lines[0]"}},
		{"too many lines in first job", [][]string{{"1", "2", "3", "4"}}, []string{"jobs[0].lines"}},
		{"every violation, in field order", [][]string{{"12345678901", "\x00"}, {"1", "2", "3", "bad\n"}},
			[]string{"jobs[0].lines[0]", "jobs[0].lines[1]", "jobs[1].lines", "jobs[1].lines[3]"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stream, err := r.client.PrintStream(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			req := &printerv1.PrintStreamRequest{}
			for _, lines := range tt.jobs {
				req.Jobs = append(req.Jobs, &printerv1.PrintJob{Lines: lines})
			}
			stream.Send(req)
			_, err = stream.Recv()
			if codeOf(err) != codes.InvalidArgument || !slices.Equal(violation.Fields(err), tt.fields) {
				t.Errorf("%s: PrintStream answered %v, fields %v; want INVALID_ARGUMENT on %v", tt.name, err, violation.Fields(err), tt.fields)
			}
		})
	}
	if got := r.join(t); got != 0 || len(out.Lines()) != 0 {
		t.Fatalf("after bad input only: Join = %d, printed %q", got, out.Lines())
	}
}

// A bad message on a PrintStream ends it; the messages before it stay accepted, and their
// receipts come before the error, even when the bad one was sent before they were written.
func TestPrintStreamBadMessageKeepsEarlierOnes(t *testing.T) {
	testkit.NoLeaks(t)
	var out testkit.Buffer
	r := start(t, config(t), &out, jitter.New(0))
	stream, err := r.client.PrintStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&printerv1.PrintStreamRequest{Jobs: []*printerv1.PrintJob{{Lines: []string{"first"}}}})
	stream.Send(&printerv1.PrintStreamRequest{Jobs: []*printerv1.PrintJob{{Lines: []string{"second"}}, {Lines: []string{"bad\r"}}}})
	if resp, err := stream.Recv(); err != nil || len(resp.GetReceipts()) != 1 || resp.GetReceipts()[0].GetSequence() != 1 {
		t.Fatalf("the good message's receipts: %v, %v", resp, err)
	}
	if _, err := stream.Recv(); !slices.Equal(violation.Fields(err), []string{"jobs[1].lines[0]"}) {
		t.Fatalf("bad message: %v", err)
	}
	r.join(t)
	if got := out.Lines(); !slices.Equal(got, []string{"first"}) {
		t.Fatalf("printed %q, want only the job of the good message", got)
	}
}

// With a file, numbering and the sources survive a restart, and both sinks get every line.
func TestRestartWithFile(t *testing.T) {
	testkit.NoLeaks(t)
	path := filepath.Join(t.TempDir(), "out.txt")
	var out testkit.Buffer
	r := start(t, config(t, "--printer-file="+path), &out, jitter.New(0))
	for n := uint64(1); n <= 3; n++ {
		if _, err := r.client.Print(context.Background(), &printerv1.PrintRequest{Lines: []string{fmt.Sprint("counter ", n)}, Source: "counter", SourceSequence: n}); err != nil {
			t.Fatal(err)
		}
	}
	r.print(t, "plain")
	if err := r.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	r = start(t, config(t, "--printer-file="+path), &out, jitter.New(0))
	resp, err := r.client.Print(context.Background(), &printerv1.PrintRequest{Lines: []string{"counter 3"}, Source: "counter", SourceSequence: 3})
	if err != nil || !resp.GetDuplicate() {
		t.Fatalf("resending counter 3 after a restart: %v, %v; want a duplicate", resp, err)
	}
	resp, err = r.client.Print(context.Background(), &printerv1.PrintRequest{Lines: []string{"counter 4"}, Source: "counter", SourceSequence: 4})
	if err != nil || resp.GetSequence() != 5 {
		t.Fatalf("counter 4 after a restart: %v, %v; want sequence 5", resp, err)
	}
	if got := r.join(t); got != 5 {
		t.Fatalf("Join after a restart = %d, want 5", got)
	}
	want := []string{"counter 1", "counter 2", "counter 3", "plain", "counter 4"}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := testkit.Lines(string(b)); !slices.Equal(got, want) {
		t.Fatalf("file holds %q, want %q", got, want)
	}
	if got := out.Lines(); !slices.Equal(got, want) {
		t.Fatalf("stdout got %q, want %q", got, want)
	}
}

func TestConfigErrors(t *testing.T) {
	testkit.NoLeaks(t)
	dir := t.TempDir()
	held, err := printer.New(config(t, "--printer-file="+filepath.Join(dir, "held.txt")), printer.Deps{Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Shutdown(context.Background())
	for _, tt := range []struct {
		args []string
		says string
	}{
		{[]string{"--printer-queue=0"}, "--printer-queue is 0; it must be 1 or more"},
		{[]string{"--printer-history=-1", "--printer-max-lines=0"}, "--printer-max-lines is 0"},
		{[]string{"--printer-max-jobs=16385"}, "--printer-max-jobs is 16385; it must be at most 16384"},
		{[]string{"--printer-queue-bytes=102499"}, "--printer-queue-bytes is 102499; it must hold the largest job"},
		{[]string{"--printer-history-bytes=100", "--printer-max-lines=10", "--printer-max-line-bytes=10"}, "--printer-history-bytes is 100; it must hold the largest job, --printer-max-lines × (--printer-max-line-bytes + 1) = 110 bytes"},
		{[]string{"--printer-file=" + filepath.Join(dir, "no", "such", "dir", "out.txt")}, "no such file or directory"},
		{[]string{"--printer-file=" + filepath.Join(dir, "held.txt")}, "is another printer using --printer-file"},
	} {
		t.Run(tt.says, func(t *testing.T) {
			p, err := printer.New(config(t, tt.args...), printer.Deps{Stdout: io.Discard})
			if err == nil {
				p.Shutdown(context.Background())
			}
			if err == nil || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("New with %v: %v; want an error saying %q", tt.args, err, tt.says)
			}
		})
	}
}

// Shutdown may be called more than once: after the server's, or twice on a printer that never
// served, and with every Deps left zero. Later calls wait for the same end and return the same.
func TestShutdownTwice(t *testing.T) {
	testkit.NoLeaks(t)
	r := start(t, config(t, "--printer-file="+filepath.Join(t.TempDir(), "out.txt")), io.Discard, jitter.New(0))
	r.print(t, "one")
	if err := r.stop(); err != nil {
		t.Fatalf("the server's shutdown: %v", err)
	}
	if err := r.printer.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown after the server's: %v", err)
	}
	p, err := printer.New(config(t, "--printer-stdout=false"), printer.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := p.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown #%d: %v", i+1, err)
		}
	}
}
