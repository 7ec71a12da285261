package counter

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are what an operator watches: the outbox growing means the printer is not taking
// print jobs; commit time is the disk's share of an increment's latency.
type metrics struct {
	increments    prometheus.Counter
	outbox        prometheus.Gauge
	commitSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		increments: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concur_counter_increments_total",
			Help: "Increments applied and committed.",
		}),
		outbox: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "concur_counter_outbox_jobs",
			Help: "Print jobs waiting for the printer's receipt that they are written.",
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "concur_counter_commit_seconds",
			Help:    "Time to commit one batch (group commit) to the database.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 14),
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.increments, m.outbox, m.commitSeconds} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register counter metrics: %w", err)
			}
		}
	}
	return m, nil
}
