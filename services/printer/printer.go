// Package printer is the one owner of the output: the talk's print_manager (RR 1000, RR 1003)
// as a gRPC service.
//
// Two goroutines share the work, each the only one to touch what it owns, and they talk by
// channels:
//
//   - the owner (owner.go) holds the sequence counter, the last sequence seen from each
//     source, the batch of accepted jobs not yet handed on, the history ring that Tail reads
//     and the Join waiters. Handlers send it messages and wait for its answer.
//   - the writer (writer.go) holds the sinks: standard output, the append-only file and the
//     state database beside it. It takes one batch at a time from the owner, writes it to
//     every sink and hands it back.
//
// So accepting never waits for a disk, and whatever the owner gathers while the writer is busy
// leaves as the next batch: under load the batches grow and the cost of each fsync is shared.
package printer

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	"github.com/concur-dev/concur/internal/jitter"
)

// Config is how a printer runs; every field has a flag (RegisterFlags).
type Config struct {
	// File, when set, is an append-only file that gets every line too; the last sequence per
	// source and the printer's own numbering are kept beside it in File+".state".
	File string
	// FlushInterval is the least time between the starts of two batches written to File and
	// flushed to disk.
	FlushInterval time.Duration
	// Stdout turns printing to standard output on.
	Stdout bool
	// Queue and QueueBytes bound the accepted jobs waiting to be written, in jobs and in bytes
	// of lines; a submission that does not fit waits for room.
	Queue      int
	QueueBytes int
	// History and HistoryBytes bound the written jobs Tail can read back.
	History      int
	HistoryBytes int
	// MaxJobs limits a PrintStream message; MaxLines and MaxLineBytes limit a job.
	MaxJobs      int
	MaxLines     int
	MaxLineBytes int
	// MaxSources is how many source names the printer remembers for deduplication.
	MaxSources int
}

// RegisterFlags defines the printer's flags on fs, with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.File, "printer-file", "", "append every printed line to this `file` too; the printer keeps its numbering and the last sequence per source beside it, in FILE.state, so they survive restarts")
	fs.DurationVar(&c.FlushInterval, "printer-flush-interval", 10*time.Millisecond, "with --printer-file, the least `time` between two flushes to disk: jobs accepted meanwhile go out together in the next one, so that under load one fsync serves many jobs; Join may wait up to this long (0 flushes as soon as the last flush is done)")
	fs.BoolVar(&c.Stdout, "printer-stdout", true, "print to the process's standard output (--printer-stdout=false turns it off)")
	fs.IntVar(&c.Queue, "printer-queue", 10000, "most accepted `jobs` waiting to be written; when the queue is full, Print and PrintStream wait for room until their deadline")
	fs.IntVar(&c.QueueBytes, "printer-queue-bytes", 16<<20, "most `bytes` of lines (a newline each included) accepted and waiting to be written")
	fs.IntVar(&c.History, "printer-history", 10000, "most written `jobs` kept for Tail to read back")
	fs.IntVar(&c.HistoryBytes, "printer-history-bytes", 16<<20, "most `bytes` of lines kept for Tail to read back")
	fs.IntVar(&c.MaxJobs, "printer-max-jobs", 10000, fmt.Sprintf("most `jobs` in one PrintStream message (at most %d, so that the reply's receipts fit a client's default 4 MiB message limit)", maxJobsLimit))
	fs.IntVar(&c.MaxLines, "printer-max-lines", 100, "most `lines` in one job")
	fs.IntVar(&c.MaxLineBytes, "printer-max-line-bytes", 1024, "longest line, in `bytes`")
	fs.IntVar(&c.MaxSources, "printer-max-sources", 10000, "most distinct source `names` remembered to recognise resent jobs")
}

func (c Config) check() error {
	var errs []error
	for _, f := range []struct {
		name  string
		value int
	}{
		{"--printer-queue", c.Queue}, {"--printer-queue-bytes", c.QueueBytes}, {"--printer-history", c.History},
		{"--printer-history-bytes", c.HistoryBytes}, {"--printer-max-jobs", c.MaxJobs}, {"--printer-max-lines", c.MaxLines},
		{"--printer-max-line-bytes", c.MaxLineBytes}, {"--printer-max-sources", c.MaxSources},
	} {
		if f.value < 1 {
			errs = append(errs, fmt.Errorf("%s is %d; it must be 1 or more", f.name, f.value))
		}
	}
	if c.MaxJobs > maxJobsLimit {
		errs = append(errs, fmt.Errorf("--printer-max-jobs is %d; it must be at most %d, so that the receipts of one message fit a client's default 4 MiB message limit", c.MaxJobs, maxJobsLimit))
	}
	// Any job that passes the limits must fit in the queue and the history on its own.
	if job := c.MaxLines * (c.MaxLineBytes + 1); c.MaxLines > 0 && c.MaxLineBytes > 0 {
		for _, f := range []struct {
			name  string
			value int
		}{{"--printer-queue-bytes", c.QueueBytes}, {"--printer-history-bytes", c.HistoryBytes}} {
			if f.value < job {
				errs = append(errs, fmt.Errorf("%s is %d; it must hold the largest job, --printer-max-lines × (--printer-max-line-bytes + 1) = %d bytes", f.name, f.value, job))
			}
		}
	}
	if c.FlushInterval < 0 {
		errs = append(errs, fmt.Errorf("--printer-flush-interval is %v; it must be 0 or more", c.FlushInterval))
	}
	return errors.Join(errs...)
}

// maxJobsLimit bounds --printer-max-jobs: a receipt takes at most about 230 bytes (a source of
// 200 bytes, two sequence numbers and their tags), and 16,384 of them stay under 4 MiB.
const maxJobsLimit = 16384

// Service is the printer service. Create it with New, register it on a server (Name and
// Register), and call Shutdown to drain it.
type Service struct {
	printerv1.UnimplementedPrinterServiceServer

	limits  Config // the limits a request must keep, checked before it reaches the owner
	metrics *metrics

	intake   chan *submission // jobs for the owner; it stops receiving while the queue is full
	inbox    chan message     // every other message for the owner
	stopping chan struct{}    // closed by Shutdown: accept nothing more, write what was accepted
	stopOnce sync.Once

	done  chan struct{} // closed when the owner and the writer have ended
	final *history      // what was written, read-only once done is closed
	err   error         // the sinks' closing error, set before done is closed
}

// Deps are what the printer is given by whoever assembles it. Each may be left zero: a nil Log
// discards, the zero Jitter is off, a nil Stdout is os.Stdout, a nil Metrics leaves the
// collectors unregistered.
type Deps struct {
	// Log gets the printer's warnings and errors.
	Log *slog.Logger
	// Jitter sleeps between the owner's and the writer's steps.
	Jitter jitter.Jitter
	// Stdout is where lines are printed when cfg.Stdout is on.
	Stdout io.Writer
	// Metrics registers the printer's collectors.
	Metrics prometheus.Registerer
}

// New starts a printer that writes to d.Stdout (when cfg.Stdout) and to cfg.File (when set).
// With a file, it first reconciles the file with its state (see openFile), so an error here
// names a file the operator must look at.
func New(cfg Config, d Deps) (*Service, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	log, j := d.Log, d.Jitter
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(d.Metrics, cfg)
	if err != nil {
		return nil, err
	}
	w := &writer{jitter: j, log: log, metrics: m, interval: cfg.FlushInterval, in: make(chan *batch), out: make(chan *batch, 1)}
	if cfg.Stdout {
		w.stdout = d.Stdout
		if w.stdout == nil {
			w.stdout = os.Stdout
		}
	}
	var last uint64
	sources := map[string]uint64{}
	if cfg.File != "" {
		if w.file, sources, err = openFile(cfg.File, log); err != nil {
			return nil, err
		}
		last = w.file.last
	}
	p := &Service{
		limits:   cfg,
		metrics:  m,
		intake:   make(chan *submission),
		inbox:    make(chan message),
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
	}
	o := &owner{
		jitter:     j,
		metrics:    m,
		queue:      queueLimit{jobs: uint64(cfg.Queue), bytes: uint64(cfg.QueueBytes)},
		maxSources: cfg.MaxSources,
		seq:        last,
		sources:    sources,
		next:       newBatch(),
		hist:       newHistory(cfg.History, uint64(cfg.HistoryBytes), last),
	}
	closed := make(chan error, 1)
	go func() { closed <- w.run() }()
	go func() {
		o.run(p.intake, p.inbox, p.stopping, w)
		p.final, p.err = o.hist, <-closed
		close(p.done)
	}()
	log.Info("printer ready", "file", cfg.File, "stdout", cfg.Stdout, "sequence", last)
	return p, nil
}

// Name is the gRPC service name.
func (p *Service) Name() string { return printerv1.PrinterService_ServiceDesc.ServiceName }

// Register adds the printer's handlers to a gRPC server.
func (p *Service) Register(r grpc.ServiceRegistrar) { printerv1.RegisterPrinterServiceServer(r, p) }

// Shutdown stops accepting jobs (blocked and new Prints answer UNAVAILABLE), writes and flushes
// every accepted job, closes the file, and lets open Tails read what was written before ending
// them with UNAVAILABLE. It returns once everything accepted is written, or when ctx ends.
// It may be called again, also after a deadline passed: each call waits for the same end.
func (p *Service) Shutdown(ctx context.Context) error {
	p.stopOnce.Do(func() { close(p.stopping) })
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return fmt.Errorf("accepted jobs were still being written when the shutdown deadline passed: %w", ctx.Err())
	}
}

// errStopped says the owner has ended: what it owned is in p.final.
var errStopped = errors.New("printer stopped")

// send hands m to the owner and returns once the owner has taken it; m answers through
// channels of its own. It returns errStopped once the owner has ended.
func (p *Service) send(ctx context.Context, m message) error {
	select {
	case p.inbox <- m:
		return nil
	case <-p.done:
		return errStopped
	case <-ctx.Done():
		return contextError(ctx)
	}
}
