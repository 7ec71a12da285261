package printer

import (
	"io"
	"log/slog"
	"time"

	"github.com/concur-dev/concur/internal/jitter"
)

// writer owns the sinks: only its goroutine (run) writes to them. It takes batches from the
// owner one at a time on in, writes each to every sink, and hands it back on out.
type writer struct {
	jitter   jitter.Jitter
	log      *slog.Logger
	metrics  *metrics
	stdout   io.Writer     // nil when printing to standard output is off
	file     *file         // nil without --printer-file
	interval time.Duration // with a file, the least time between the starts of two batches
	in       chan *batch   // unbuffered: the owner keeps gathering jobs until the writer takes them
	out      chan *batch
}

// Retrying a failing sink waits this long at first, doubling up to the maximum.
const (
	retryFirst = 50 * time.Millisecond
	retryMax   = 5 * time.Second
)

// run writes batches until in is closed, then closes the file and returns its error.
//
// Each fsync is costly, and not only to the printer: on a shared machine it slows everything
// else too. So with a file the writer takes a batch at most once per interval, and whatever
// the owner accepts meanwhile goes out together with one fsync.
func (w *writer) run() error {
	for b := range w.in {
		start := time.Now()
		w.write(b)
		w.metrics.batchJobs.Observe(float64(len(b.jobs)))
		w.metrics.writeSeconds.Observe(time.Since(start).Seconds())
		w.out <- b
		if w.file != nil {
			time.Sleep(time.Until(start.Add(w.interval)))
		}
	}
	if w.file == nil {
		return nil
	}
	return w.file.close()
}

// write writes b to every sink, retrying each step until it succeeds: an accepted job is
// never dropped, and while a sink fails the owner's queue fills and Prints wait. With a file,
// the batch is first recorded in the state (so that a crash mid-write can be undone), then
// appended and flushed to disk; standard output comes last.
func (w *writer) write(b *batch) {
	if w.file != nil {
		w.retry("record the batch in "+w.file.statePath(), func() error { return w.file.begin(b) })
		w.jitter.Sleep()
		w.copy(w.file, b, "--printer-file "+w.file.path)
		start := time.Now()
		w.retry("flush --printer-file "+w.file.path, w.file.sync)
		w.metrics.fsyncSeconds.Observe(time.Since(start).Seconds())
		w.file.commit(b)
	}
	if w.stdout != nil {
		w.copy(w.stdout, b, "standard output")
	}
	w.jitter.Sleep()
}

// copy writes b to dst in one go or, with jitter on, a job at a time with a pause between
// jobs, so that anything else writing to dst would show between them.
func (w *writer) copy(dst io.Writer, b *batch, name string) {
	if !w.jitter.On() {
		w.copyAll(dst, b.bytes, name)
		return
	}
	start := 0
	for _, end := range b.ends {
		w.copyAll(dst, b.bytes[start:end], name)
		start = end
		w.jitter.Sleep()
	}
}

// copyAll writes p to dst, going on from where a failed write stopped.
func (w *writer) copyAll(dst io.Writer, p []byte, name string) {
	failures := 0
	for len(p) > 0 {
		n, err := dst.Write(p)
		p = p[n:]
		if err == nil && len(p) > 0 {
			err = io.ErrShortWrite
		}
		if err != nil {
			w.failed("write to "+name, err, &failures)
		}
	}
}

// retry calls step until it succeeds.
func (w *writer) retry(what string, step func() error) {
	failures := 0
	for {
		err := step()
		if err == nil {
			return
		}
		w.failed(what, err, &failures)
	}
}

// failed logs a sink's failure and waits before the next try, longer after each failure.
func (w *writer) failed(what string, err error, failures *int) {
	wait := min(retryFirst<<min(*failures, 10), retryMax)
	*failures++
	w.log.Error("printer cannot "+what+"; accepted jobs wait and new ones queue until it works again", "err", err, "attempt", *failures, "retry_in", wait.String())
	time.Sleep(wait)
}
