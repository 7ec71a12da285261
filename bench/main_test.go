package main

import (
	"slices"
	"testing"
)

func TestSelectScenarios(t *testing.T) {
	all := []scenario{{name: "caser round trips"}, {name: "counter-unary"}, {name: "printer join"}, {name: "printer unary"}}
	for _, c := range []struct {
		pattern string
		want    []string
	}{
		{"", []string{"caser round trips", "counter-unary", "printer join", "printer unary"}},
		{"printer", []string{"printer join", "printer unary"}},
		{"printer|counter-unary", []string{"counter-unary", "printer join", "printer unary"}},
		{"unary$", []string{"counter-unary", "printer unary"}},
		{"^caser round", []string{"caser round trips"}},
	} {
		got, err := selectScenarios(c.pattern, all)
		if err != nil {
			t.Errorf("-run %q: %v", c.pattern, err)
			continue
		}
		var names []string
		for _, s := range got {
			names = append(names, s.name)
		}
		if !slices.Equal(names, c.want) {
			t.Errorf("-run %q selects %q, want %q", c.pattern, names, c.want)
		}
	}
	for _, pattern := range []string{"nomatch", "^printer$", "("} {
		if got, err := selectScenarios(pattern, all); err == nil {
			t.Errorf("-run %q selects %d scenarios, want an error", pattern, len(got))
		}
	}
}

func TestFigureCells(t *testing.T) {
	ratio := spread{median: 0.85, min: 0.8, max: 0.9, n: 3}
	f := rateOf("Print", spread{median: 12345.4, min: 9999.6, max: 20000, n: 3}, "calls")
	f.ratio, f.per, f.target, f.met = &ratio, " of no-op", ">= 0.80 of no-op", new(true)
	want := []string{"Print", "12,345 calls/s", "10,000–20,000", "0.85 of no-op", "0.80–0.90", ">= 0.80 of no-op", "yes"}
	if got := f.cells(); !slices.Equal(got, want) {
		t.Errorf("cells = %q, want %q", got, want)
	}
	once := figure{name: "heap", value: spreadOf([]float64{12.34}), show: fixed(1), unit: "KB", target: "< 32 KB", met: new(false)}
	want = []string{"heap", "12.3 KB", "", "", "", "< 32 KB", "NO"}
	if got := once.cells(); !slices.Equal(got, want) {
		t.Errorf("cells = %q, want %q", got, want)
	}
}

func TestDuration(t *testing.T) {
	for ns, want := range map[float64]string{
		19_400:        "19.4µs",
		2_058_123:     "2.06ms",
		252_218_000:   "252ms",
		999:           "999ns",
		1_234_567_890: "1.23s",
	} {
		if got := duration(ns); got != want {
			t.Errorf("duration(%v) = %s, want %s", ns, got, want)
		}
	}
}
