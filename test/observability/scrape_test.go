package observability

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/concur-dev/concur/internal/e2e"
)

// sample is one line of Prometheus's text exposition: a series and its value.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape is what one read of /metrics showed.
type scrape []sample

// scrapeMetrics reads http://addr/metrics.
func scrapeMetrics(t *testing.T, addr string) scrape {
	t.Helper()
	s, err := parseExposition(e2e.Metrics(t, addr))
	if err != nil {
		t.Fatalf("%s/metrics: %v", addr, err)
	}
	return s
}

// parseExposition reads the series of Prometheus's text format, skipping comments.
func parseExposition(text string) (scrape, error) {
	var s scrape
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		smp, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", line, err)
		}
		s = append(s, smp)
	}
	return s, nil
}

func parseSample(line string) (sample, error) {
	smp := sample{labels: map[string]string{}}
	end := strings.IndexAny(line, "{ ")
	if end < 0 {
		return smp, fmt.Errorf("no value")
	}
	smp.name, line = line[:end], line[end:]
	if strings.HasPrefix(line, "{") {
		line = line[1:]
		for !strings.HasPrefix(line, "}") {
			name, rest, ok := strings.Cut(line, `="`)
			if !ok {
				return smp, fmt.Errorf("label without a quoted value")
			}
			var value strings.Builder
			i := 0
			for ; i < len(rest) && rest[i] != '"'; i++ {
				if rest[i] == '\\' && i+1 < len(rest) {
					i++
					if rest[i] == 'n' {
						value.WriteByte('\n')
						continue
					}
				}
				value.WriteByte(rest[i])
			}
			if i == len(rest) {
				return smp, fmt.Errorf("unterminated label value")
			}
			smp.labels[name] = value.String()
			line = strings.TrimPrefix(rest[i+1:], ",")
		}
		line = line[1:]
	}
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return smp, fmt.Errorf("no value")
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	smp.value = v
	return smp, err
}

// find returns the samples of the series name whose labels include the given ones.
func (s scrape) find(name string, labels map[string]string) []sample {
	var found []sample
	for _, smp := range s {
		if smp.name != name {
			continue
		}
		match := true
		for k, v := range labels {
			match = match && smp.labels[k] == v
		}
		if match {
			found = append(found, smp)
		}
	}
	return found
}

// value is the value of the one series called name with the labels given as pairs.
func (s scrape) value(t *testing.T, name string, labelPairs ...string) float64 {
	t.Helper()
	labels := map[string]string{}
	for i := 0; i+1 < len(labelPairs); i += 2 {
		labels[labelPairs[i]] = labelPairs[i+1]
	}
	found := s.find(name, labels)
	if len(found) != 1 {
		t.Fatalf("/metrics has %d series %s%v, want 1", len(found), name, labels)
	}
	return found[0].value
}

// want checks the value of the one series called name with the labels given as pairs.
func (s scrape) want(t *testing.T, want float64, name string, labelPairs ...string) {
	t.Helper()
	if got := s.value(t, name, labelPairs...); got != want {
		t.Errorf("%s%v = %v, want %v", name, labelPairs, got, want)
	}
}

// names are the series names the scrape holds.
func (s scrape) names() []string {
	var names []string
	for _, smp := range s {
		names = append(names, smp.name)
	}
	slices.Sort(names)
	return slices.Compact(names)
}
