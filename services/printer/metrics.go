package printer

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are what an operator watches: a queue near its limit means the sinks are slower than
// the jobs coming in; write and fsync times say which sink; batch sizes say how many jobs
// share an fsync; readers cut off mean Tail clients slower than the printing.
type metrics struct {
	queueJobs     prometheus.Gauge
	queueBytes    prometheus.Gauge
	batchJobs     prometheus.Histogram
	writeSeconds  prometheus.Histogram
	fsyncSeconds  prometheus.Histogram
	duplicates    prometheus.Counter
	tailReaders   prometheus.Gauge
	readersCutOff prometheus.Counter
}

// newMetrics makes the printer's collectors and registers them on reg, unless it is nil. The
// queue's limits are exported too, so that an alert on a queue near full needs no flag values.
func newMetrics(reg prometheus.Registerer, cfg Config) (*metrics, error) {
	seconds := prometheus.ExponentialBuckets(50e-6, 2, 16) // 50µs to 1.6s
	m := &metrics{
		queueJobs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "concur_printer_queue_jobs",
			Help: "Jobs accepted and not yet written.",
		}),
		queueBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "concur_printer_queue_bytes",
			Help: "Bytes of lines (a newline each included) accepted and not yet written.",
		}),
		batchJobs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "concur_printer_batch_jobs",
			Help:    "Jobs in each batch the writer takes: under load, many jobs share one write and fsync.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8), // 1 to 16,384
		}),
		writeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "concur_printer_write_seconds",
			Help:    "Time to write one batch to every sink, fsync and retries included.",
			Buckets: seconds,
		}),
		fsyncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "concur_printer_fsync_seconds",
			Help:    "Time to flush one batch of --printer-file to disk, retries included.",
			Buckets: seconds,
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concur_printer_duplicate_jobs_total",
			Help: "Jobs dropped because their source and source_sequence were seen already (a resend).",
		}),
		tailReaders: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "concur_printer_tail_readers",
			Help: "Tail calls open now.",
		}),
		readersCutOff: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concur_printer_tail_readers_cut_off_total",
			Help: "Tail calls ended with READER_FELL_BEHIND: the history no longer held what they were to read next.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	limit := func(name, help string, v int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(v) })
	}
	for _, c := range []prometheus.Collector{
		m.queueJobs, m.queueBytes, m.batchJobs, m.writeSeconds, m.fsyncSeconds, m.duplicates, m.tailReaders, m.readersCutOff,
		limit("concur_printer_queue_max_jobs", "Most jobs the queue holds (--printer-queue).", cfg.Queue),
		limit("concur_printer_queue_max_bytes", "Most bytes of lines the queue holds (--printer-queue-bytes).", cfg.QueueBytes),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register printer metrics: %w", err)
		}
	}
	return m, nil
}
