package counter

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are what an operator watches: the outbox growing, or its oldest job ageing, means
// the printer is not taking print jobs; resends mean streams to it broke; commit time is the
// disk's share of an increment's latency.
type metrics struct {
	increments    prometheus.Counter
	commitSeconds prometheus.Histogram
	resent        prometheus.Counter
	// What the owner publishes of its outbox after each commit, for scrapes to read.
	jobs   atomic.Int64
	oldest outboxAge
}

// newMetrics makes one counter's collectors and registers them on reg, unless it is nil; its
// outbox gauges show its own outbox.
func newMetrics(reg prometheus.Registerer, outboxMax int) (*metrics, error) {
	m := makeMetrics()
	if err := m.register(reg, outboxMax, func() []*metrics { return []*metrics{m} }); err != nil {
		return nil, err
	}
	return m, nil
}

func makeMetrics() *metrics {
	return &metrics{
		increments: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concur_counter_increments_total",
			Help: "Increments applied and committed.",
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "concur_counter_commit_seconds",
			Help:    "Time to commit one batch (group commit) to the database.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 14),
		}),
		resent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concur_counter_forwarder_resent_jobs_total",
			Help: "Print jobs sent to the printer again after a stream broke before their receipts came.",
		}),
	}
}

// register adds m's collectors to reg, unless it is nil. The outbox gauges read, at each
// scrape, what the owners that outboxes lists published: a cluster node's shards each have an
// owner, and the node shows the sum of their outboxes and the age of their oldest job. The
// outbox's limit is exported too, so that an alert on an outbox near full needs no flag values.
func (m *metrics) register(reg prometheus.Registerer, outboxMax int, outboxes func() []*metrics) error {
	jobs := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "concur_counter_outbox_jobs",
		Help: "Print jobs waiting for the printer's receipt that they are written.",
	}, func() float64 {
		var n int64
		for _, o := range outboxes() {
			n += o.jobs.Load()
		}
		return float64(n)
	})
	age := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "concur_counter_outbox_oldest_age_seconds",
		Help: "Age of the oldest print job the printer has not acknowledged (since its commit, or since the counter started for one loaded from the database); 0 when the outbox is empty.",
	}, func() float64 {
		var oldest float64
		for _, o := range outboxes() {
			oldest = max(oldest, o.oldest.seconds())
		}
		return oldest
	})
	limit := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "concur_counter_outbox_max_jobs",
		Help: "Most print jobs the outbox holds (--counter-outbox-max); past it Increment answers UNAVAILABLE.",
	}, func() float64 { return float64(outboxMax) })
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.increments, jobs, m.commitSeconds, m.resent, age, limit} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register counter metrics: %w", err)
		}
	}
	return nil
}

// measureOutbox publishes the outbox's length and the time of its oldest job. The owner calls
// it once a batch is committed.
func (m *metrics) measureOutbox(outbox []printJob) {
	m.jobs.Store(int64(len(outbox)))
	m.oldest.update(outbox, time.Now())
}

// outboxAge tells the age of the outbox's oldest job. Print jobs carry no time, so it keeps,
// for each commit that added jobs, the last job's sequence and the time: the oldest job's
// time is that of the first commit not yet wholly acknowledged. The marks belong to the
// owner goroutine; only the published time is read by a scrape.
type outboxAge struct {
	marks []outboxMark
	at    atomic.Int64 // the oldest job's time in Unix nanoseconds; 0 when the outbox is empty
}

type outboxMark struct {
	through uint64 // the last sequence the commit added
	at      time.Time
}

func (a *outboxAge) update(outbox []printJob, now time.Time) {
	if len(outbox) == 0 {
		clear(a.marks)
		a.marks = a.marks[:0]
		a.at.Store(0)
		return
	}
	if last := outbox[len(outbox)-1].seq; len(a.marks) == 0 || a.marks[len(a.marks)-1].through < last {
		a.marks = append(a.marks, outboxMark{through: last, at: now})
	}
	n := 0
	for a.marks[n].through < outbox[0].seq {
		n++
	}
	a.marks = a.marks[n:]
	a.at.Store(a.marks[0].at.UnixNano())
}

func (a *outboxAge) seconds() float64 {
	at := a.at.Load()
	if at == 0 {
		return 0
	}
	return time.Since(time.Unix(0, at)).Seconds()
}
