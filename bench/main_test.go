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
