package observability

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/concur-dev/concur/internal/e2e"
)

// expr is a PromQL expression and where it was found.
type expr struct {
	where, promql string
}

// fromPrometheus are the series Prometheus adds to a scrape itself, and targetLabels the
// labels it adds to every series.
var (
	fromPrometheus = []string{"up"}
	targetLabels   = []string{"job", "instance"}
)

// checkExprs checks that every selector of exprs names a series the scrape holds, or one that
// Prometheus adds; that each label it matches is one that series has; and that each value it
// asks for with = is one the scrape showed.
func checkExprs(t *testing.T, s scrape, exprs []expr) {
	t.Helper()
	if len(exprs) == 0 {
		t.Fatal("no expressions")
	}
	for _, e := range exprs {
		sels, err := selectors(e.promql)
		if err != nil {
			t.Errorf("%s: %v", e.where, err)
			continue
		}
		if len(sels) == 0 {
			t.Errorf("%s: %q selects no series", e.where, e.promql)
		}
		for _, sel := range sels {
			if sel.metric == "" {
				t.Errorf("%s: a selector without a metric name in %q", e.where, e.promql)
				continue
			}
			if slices.Contains(fromPrometheus, sel.metric) {
				continue
			}
			samples := s.find(sel.metric, nil)
			if len(samples) == 0 {
				t.Errorf("%s: %s is not a series of concurd's /metrics", e.where, sel.metric)
				continue
			}
			for _, m := range sel.matchers {
				if slices.Contains(targetLabels, m.label) {
					continue
				}
				var values []string
				for _, smp := range samples {
					if v, ok := smp.labels[m.label]; ok {
						values = append(values, v)
					}
				}
				switch {
				case len(values) == 0:
					t.Errorf("%s: %s has no label %s", e.where, sel.metric, m.label)
				case m.op == "=" && !slices.Contains(values, m.value):
					t.Errorf("%s: %s{%s=%q} is not a series of concurd's /metrics", e.where, sel.metric, m.label, m.value)
				}
			}
		}
	}
}

// dashboard is the part of a Grafana dashboard that holds queries.
type dashboard struct {
	Panels []panel `json:"panels"`
	// Templating's variables: a query variable's query is Grafana's label_values(selector,
	// label).
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID      int     `json:"id"`
	Type    string  `json:"type"`
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"` // a collapsed row's
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

var labelValues = regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)

// dashboardExprs decodes deploy/grafana/concur.json and returns its expressions: every
// panel's queries and the selectors of its variables' queries. Every panel has a title and
// queries, every row a title, and ids are unique.
func dashboardExprs(t *testing.T) []expr {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e2e.Root(t), "deploy/grafana/concur.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("deploy/grafana/concur.json: %v", err)
	}
	var exprs []expr
	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(panels []panel) {
		for _, p := range panels {
			if p.Title == "" {
				t.Errorf("panel %d has no title", p.ID)
			}
			if ids[p.ID] {
				t.Errorf("panel id %d is used twice", p.ID)
			}
			ids[p.ID] = true
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, target := range p.Targets {
				exprs = append(exprs, expr{"panel " + p.Title, target.Expr})
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		query, _ := q["query"].(string)
		m := labelValues.FindStringSubmatch(strings.TrimSpace(query))
		if m == nil {
			t.Errorf("variable %s: query %v is not label_values(selector, label)", v.Name, v.Query)
			continue
		}
		exprs = append(exprs, expr{"variable " + v.Name, m[1]})
	}
	return exprs
}

// ruleExprs reads the expressions of deploy/prometheus/rules.yaml: each rule's expr, on its
// line or in the block scalar below it. There must be one per alert.
func ruleExprs(t *testing.T) []expr {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e2e.Root(t), "deploy/prometheus/rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var exprs []expr
	alerts, alert := 0, ""
	for i := 0; i < len(lines); i++ {
		trimmed := strings.TrimSpace(lines[i])
		if name, ok := strings.CutPrefix(trimmed, "- alert:"); ok {
			alerts, alert = alerts+1, strings.TrimSpace(name)
		}
		value, ok := strings.CutPrefix(trimmed, "expr:")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		if strings.HasPrefix(value, "|") || strings.HasPrefix(value, ">") {
			indent := len(lines[i]) - len(strings.TrimLeft(lines[i], " "))
			var block []string
			for i+1 < len(lines) && (strings.TrimSpace(lines[i+1]) == "" || len(lines[i+1])-len(strings.TrimLeft(lines[i+1], " ")) > indent) {
				i++
				block = append(block, lines[i])
			}
			value = strings.TrimSpace(strings.Join(block, "\n"))
		}
		exprs = append(exprs, expr{"alert " + alert, value})
	}
	if len(exprs) != alerts {
		t.Fatalf("rules.yaml: %d expressions read for %d alerts", len(exprs), alerts)
	}
	return exprs
}
