package sitesize

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the service's Prometheus collectors.
type metrics struct {
	fetches  *prometheus.CounterVec
	bytes    prometheus.Counter
	inFlight prometheus.Gauge
	batches  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "concur_sitesize_fetches_total",
			Help: "URLs fetched, by outcome: ok, or the fetch error code in lower case (blocked, timeout, ...).",
		}, []string{"outcome"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concur_sitesize_fetched_bytes_total",
			Help: "Body bytes counted across every fetch.",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "concur_sitesize_fetches_in_flight",
			Help: "Fetches running now: the workers in use (at most --sitesize-workers).",
		}),
		batches: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "concur_sitesize_batches",
			Help: "Batches being measured now.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.fetches, m.bytes, m.inFlight, m.batches} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// observe counts a finished fetch.
func (m *metrics) observe(r result) {
	outcome := "ok"
	if r.err != nil {
		outcome = strings.ToLower(strings.TrimPrefix(r.err.GetCode().String(), "FETCH_ERROR_CODE_"))
	}
	m.fetches.WithLabelValues(outcome).Inc()
	m.bytes.Add(float64(r.size))
}
