package caser

import (
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	caserv1 "github.com/concur-dev/concur/api/concur/caser/v1"
)

// metrics are what an operator watches: how many sessions are open, how busy they are, and
// why they end.
type metrics struct {
	sessions      prometheus.Gauge
	lines         prometheus.Counter
	announcements prometheus.Counter
	goodbyes      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "concur_caser_sessions",
			Help: "Sessions open now.",
		}),
		lines: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concur_caser_lines_total",
			Help: "Lines received from sessions' clients, mode switches and quit included.",
		}),
		announcements: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concur_caser_announcements_total",
			Help: "Announcements sent to sessions: one per open session per --caser-announce.",
		}),
		goodbyes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "concur_caser_goodbyes_total",
			Help: "Sessions ended with a goodbye, by reason: quit, idle or shutdown.",
		}, []string{"reason"}),
	}
	// Every reason is exported from the start, at 0, so that a rate over it is defined.
	for r := range caserv1.GoodbyeReason_name {
		if reason := caserv1.GoodbyeReason(r); reason != caserv1.GoodbyeReason_GOODBYE_REASON_UNSPECIFIED {
			m.goodbyes.WithLabelValues(reasonLabel(reason))
		}
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.sessions, m.lines, m.announcements, m.goodbyes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register caser metrics: %w", err)
		}
	}
	return m, nil
}

// reasonLabel is a goodbye's reason as the metric labels it: its name in lower case.
func reasonLabel(reason caserv1.GoodbyeReason) string {
	return strings.ToLower(strings.TrimPrefix(reason.String(), "GOODBYE_REASON_"))
}
