package counter

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A cluster node's outbox gauges add up the outboxes its shards' owners published, and a
// shard the steward stops serving, or every shard when the node loses its lease, drops out.
func TestClusterOutboxGauges(t *testing.T) {
	c := &Cluster{}
	s := &steward{table: &c.table, shards: 3}
	reg := prometheus.NewRegistry()
	if err := makeMetrics().register(reg, 10, c.outboxes); err != nil {
		t.Fatal(err)
	}
	shard := func(jobs int, committed time.Time) *metrics {
		m := makeMetrics()
		var outbox []printJob
		for seq := range jobs {
			outbox = append(outbox, printJob{seq: uint64(seq + 1)})
		}
		m.jobs.Store(int64(len(outbox)))
		m.oldest.update(outbox, committed)
		return m
	}
	now := time.Now()
	c.table.Store(&table{owners: make([]string, 3), local: map[int]*running{
		0: {metrics: shard(3, now.Add(-time.Minute))}, 1: {metrics: shard(2, now.Add(-time.Hour))}, 2: {metrics: shard(0, now)},
	}})
	// age is the oldest published job's: at least that old, and less than twice as old.
	check := func(when string, jobs float64, age time.Duration) {
		t.Helper()
		values := map[string]float64{}
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			values[f.GetName()] = f.GetMetric()[0].GetGauge().GetValue()
		}
		if got := values["concur_counter_outbox_jobs"]; got != jobs {
			t.Errorf("%s: concur_counter_outbox_jobs = %v, want %v", when, got, jobs)
		}
		if got := values["concur_counter_outbox_oldest_age_seconds"]; got < age.Seconds() || got > 0 && got >= 2*age.Seconds() {
			t.Errorf("%s: concur_counter_outbox_oldest_age_seconds = %v, want the oldest job's, of %v ago", when, got, age)
		}
	}
	check("three shards", 5, time.Hour)
	s.unroute(1)
	check("shard 1 moved away", 3, time.Minute)
	s.stopAll()
	check("the lease lost", 0, 0)
}
