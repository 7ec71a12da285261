package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
)

const rule = "---------------"

// threading is the talk's first part: the broken way, then the right way.
func (t *talk) threading(ctx context.Context) error {
	t.heading("Threading, the broken way: %d goroutines, one counter, one terminal", t.workers)
	fmt.Fprintf(t.out, "The talk's \"Can you spot the race conditions?\", in this process, with the jitter at %v:\n\n", t.jitterMax)
	t.broken()
	t.heading("Threading, the right way: %d workers, the counter and the printer", t.workers)
	fmt.Fprintln(t.out, "Each resource has one owner and everyone sends it messages (RR 1000); the counter sends each count\nto the printer itself, in order (RR 1001); Join waits for what was sent (RR 1003).")
	return t.rightWay(ctx)
}

// broken runs the talk's racy worker in this process, without services. The race is a
// logical one, never a Go data race (the tests run with -race): the shared counter is read
// and written with atomic loads and stores, but the read, the jitter and the write back are
// three steps, so two workers that read the same value lose an update. The terminal takes
// each write whole, as a terminal takes each write(2), but a worker writes a line and its
// newline separately with jitter between them, so lines interleave.
func (t *talk) broken() {
	var counter atomic.Int64
	terminal, printed := newTerminal(t.out)
	fuzz := t.jitter.Sleep
	var workers sync.WaitGroup
	terminal <- "Starting up\n"
	fuzz()
	for range t.workers {
		workers.Go(func() {
			fuzz()
			old := counter.Load()
			fuzz()
			counter.Store(old + 1)
			fuzz()
			terminal <- fmt.Sprintf("The count is %d", counter.Load())
			fuzz()
			terminal <- "\n"
			fuzz()
			terminal <- rule
			fuzz()
			terminal <- "\n"
			fuzz()
		})
		fuzz()
	}
	terminal <- "Finishing up\n"
	fuzz()
	workers.Wait() // the talk's script just ends; we wait, so that nothing outlives it
	close(terminal)
	out := <-printed

	lost := int64(t.workers) - counter.Load()
	fmt.Fprintf(t.out, "\nThe counter reads %d after %d increments: ", counter.Load(), t.workers)
	switch {
	case lost > 0:
		fmt.Fprintf(t.out, "%d updates were lost.", lost)
	default:
		fmt.Fprint(t.out, "this time no update was lost.")
	}
	if out == talkOutput(1, t.workers) {
		fmt.Fprintln(t.out, " The lines came out in order, this time.")
	} else {
		fmt.Fprintln(t.out, " The lines are not the talk's output.")
	}
	if !t.jitter.On() {
		fmt.Fprintln(t.out, "The jitter is off (--jitter=0): the races are all there, but rarely show.")
	}
}

// newTerminal is the broken way's terminal: one goroutine writes each string it is sent,
// whole, and when the channel is closed sends back everything written.
func newTerminal(w io.Writer) (chan<- string, <-chan string) {
	in := make(chan string)
	all := make(chan string, 1)
	go func() {
		var b strings.Builder
		for s := range in {
			io.WriteString(w, s)
			b.WriteString(s)
		}
		all <- b.String()
	}()
	return in, all
}

// talkOutput is what the talk's right way prints, for the counts from to last.
func talkOutput(from, last int) string {
	var b strings.Builder
	for _, job := range talkJobs(from, last) {
		for _, line := range job {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// talkJobs are the print jobs of the talk's right way: Starting up, the counter's job for each
// count from first to last, Finishing up.
func talkJobs(first, last int) [][]string {
	jobs := [][]string{{"Starting up"}}
	for n := first; n <= last; n++ {
		jobs = append(jobs, []string{fmt.Sprintf("The count is %d", n), rule})
	}
	return append(jobs, []string{"Finishing up"})
}

// rightWay is the talk's last threading version through the services: print Starting up,
// the workers increment the counter (which sends the printer each count, in order), join the
// counter, print Finishing up, join the printer. Then it reads back what the printer wrote
// from Starting up to Finishing up and checks it is exactly the talk's output.
func (t *talk) rightWay(ctx context.Context) error {
	before, err := t.counter.Get(ctx, &counterv1.GetRequest{})
	if err != nil {
		return fmt.Errorf("counter Get: %w", err)
	}
	first := before.GetValue() + 1
	start, err := t.printer.Print(ctx, &printerv1.PrintRequest{Lines: []string{"Starting up"}})
	if err != nil {
		return fmt.Errorf("print Starting up: %w", err)
	}
	values := make([]int64, t.workers)
	errs := make([]error, t.workers)
	var workers sync.WaitGroup
	for i := range t.workers {
		workers.Go(func() {
			t.jitter.Sleep()
			r, err := t.counter.Increment(ctx, &counterv1.IncrementRequest{})
			values[i], errs[i] = r.GetValue(), err
		})
	}
	workers.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("counter Increment: %w", err)
	}
	joined, err := t.counter.Join(ctx, &counterv1.JoinRequest{})
	if err != nil {
		return fmt.Errorf("counter Join: %w", err)
	}
	if !joined.GetPrinted() {
		return errors.New("the counter runs without a printer (its Join says printed: false): start its concurd with --printer-addr")
	}
	finish, err := t.printer.Print(ctx, &printerv1.PrintRequest{Lines: []string{"Finishing up"}})
	if err != nil {
		return fmt.Errorf("print Finishing up: %w", err)
	}
	if _, err := t.printer.Join(ctx, &printerv1.JoinRequest{}); err != nil {
		return fmt.Errorf("printer Join: %w", err)
	}

	jobs, err := t.tail(ctx, start.GetSequence(), finish.GetSequence())
	if err != nil {
		return err
	}
	fmt.Fprintf(t.out, "\nThe printer wrote, read back with Tail (its jobs %d to %d):\n", start.GetSequence(), finish.GetSequence())
	for _, job := range jobs {
		for _, line := range job {
			fmt.Fprintln(t.out, line)
		}
	}
	fmt.Fprintln(t.out)

	last := first + int64(t.workers) - 1
	if first > 1 {
		fmt.Fprintf(t.out, "(The counter already read %d, so the counts go on from there.)\n", first-1)
	}
	slices.Sort(values)
	for i, v := range values {
		if v != first+int64(i) {
			return fmt.Errorf("the count is not exact: %d Increments answered %v; want each of %d to %d once", t.workers, values, first, last)
		}
	}
	want := talkJobs(int(first), int(last))
	if i := firstDifference(jobs, want); i >= 0 {
		return fmt.Errorf("the printer's jobs %d to %d are not the talk's output: job %d is %q, want %q (did another client print, or the counter forward to another printer?)",
			start.GetSequence(), finish.GetSequence(), start.GetSequence()+uint64(i), at(jobs, i), at(want, i))
	}
	fmt.Fprintf(t.out, "Check passed: the counter counted %d to %d, each once, and the printer's jobs %d to %d are exactly the talk's output, in order.\n",
		first, last, start.GetSequence(), finish.GetSequence())
	return nil
}

// tail reads the jobs the printer wrote from sequence first to last.
func (t *talk) tail(ctx context.Context, first, last uint64) ([][]string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := t.printer.Tail(ctx, &printerv1.TailRequest{FromSequence: first, HistoryOnly: true})
	if err != nil {
		return nil, fmt.Errorf("printer Tail: %w", err)
	}
	var jobs [][]string
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("printer Tail ended before job %d, the Finishing up this run printed", last)
		}
		if err != nil {
			return nil, fmt.Errorf("printer Tail from job %d: %w", first, err)
		}
		jobs = append(jobs, r.GetLines())
		if r.GetSequence() >= last {
			return jobs, nil
		}
	}
}

// firstDifference is the index of the first job where got and want differ, or -1.
func firstDifference(got, want [][]string) int {
	for i := range max(len(got), len(want)) {
		if i >= len(got) || i >= len(want) || !slices.Equal(got[i], want[i]) {
			return i
		}
	}
	return -1
}

func at(jobs [][]string, i int) []string {
	if i < len(jobs) {
		return jobs[i]
	}
	return nil
}
