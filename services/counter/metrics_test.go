package counter_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	"github.com/concur-dev/concur/services/counter"
)

// The forwarder's metrics: while the printer is away, the oldest print job ages although the
// counter does nothing; a printer that takes a message and loses its receipts gets it again,
// counted as a resend; once printed, the outbox is empty and its age 0.
func TestForwarderMetrics(t *testing.T) {
	noLeaks(t)
	p := startPrinterDouble(t)
	p.stop()
	reg := prometheus.NewRegistry()
	c := startCounter(t, config(t), counter.Deps{Printer: printerClient(t, p.addr), Metrics: reg}).client
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := c.Increment(ctx, &counterv1.IncrementRequest{}); err != nil {
		t.Fatal(err)
	}
	if got := gauge(t, reg, "concur_counter_outbox_jobs"); got != 1 {
		t.Fatalf("concur_counter_outbox_jobs = %v with the printer away, want 1", got)
	}
	young := gauge(t, reg, "concur_counter_outbox_oldest_age_seconds")
	time.Sleep(100 * time.Millisecond)
	if old := gauge(t, reg, "concur_counter_outbox_oldest_age_seconds"); young <= 0 || old < young+0.1 {
		t.Fatalf("the oldest print job's age went from %v to %v in 100ms, want it above 0 and growing", young, old)
	}

	p.mu.Lock()
	p.lose = 1
	p.mu.Unlock()
	p.restart(t)
	if _, err := c.Join(ctx, &counterv1.JoinRequest{}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		"concur_counter_forwarder_resent_jobs_total": 1,
		"concur_counter_outbox_jobs":                 0,
		"concur_counter_outbox_oldest_age_seconds":   0,
		"concur_counter_increments_total":            1,
	} {
		if got := gauge(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if n := len(p.accepted()); n != 1 {
		t.Errorf("the printer accepted %d jobs, want 1: the resent one is a duplicate", n)
	}
}

// gauge reads the value of the counter or gauge called name.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			m := f.GetMetric()[0]
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
