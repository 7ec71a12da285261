package printer_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	"github.com/concur-dev/concur/internal/e2e"
	"github.com/concur-dev/concur/internal/testkit"
	"github.com/concur-dev/concur/services/printer"
)

// The queue's metrics count what is accepted and not yet written, the job the writer is stuck
// on included, and drop to 0 once it is written; without a file nothing is fsynced.
func TestQueueMetrics(t *testing.T) {
	testkit.NoLeaks(t)
	stdout := newGate()
	defer stdout.unblock()
	reg := prometheus.NewRegistry()
	p, err := printer.New(config(t, "--printer-queue=3"), printer.Deps{Stdout: stdout, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := e2e.Serve(t, nil, p)
	r := &rig{printer: p, client: printerv1.NewPrinterServiceClient(e2e.Dial(t, addr))}
	r.print(t, "one") // the writer takes it and is stuck writing it
	r.print(t, "two")
	want := func(name string, v float64) {
		t.Helper()
		if got := metric(t, reg, name); got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
	want("concur_printer_queue_jobs", 2)
	want("concur_printer_queue_bytes", 8) // "one\n" and "two\n"
	want("concur_printer_queue_max_jobs", 3)
	stdout.unblock()
	r.join(t)
	want("concur_printer_queue_jobs", 0)
	want("concur_printer_queue_bytes", 0)
	want("concur_printer_batch_jobs_sum", 2)
	want("concur_printer_fsync_seconds_count", 0)
	if batches, writes := metric(t, reg, "concur_printer_batch_jobs_count"), metric(t, reg, "concur_printer_write_seconds_count"); batches != 2 || writes != 2 {
		t.Errorf("%v batches and %v writes, want 2 of each: one job the writer was stuck on, one that waited", batches, writes)
	}
}

// metric reads a counter or gauge, or a histogram's _sum or _count.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		m := f.GetMetric()[0]
		switch name {
		case f.GetName():
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		case f.GetName() + "_sum":
			return m.GetHistogram().GetSampleSum()
		case f.GetName() + "_count":
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
