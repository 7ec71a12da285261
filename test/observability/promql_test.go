package observability

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// selector is a series selector of a PromQL expression: a metric name and its label matchers.
type selector struct {
	metric   string
	matchers []matcher
}

type matcher struct {
	label, op, value string
}

// notMetrics are the identifiers of PromQL that are not metric names when no parenthesis
// follows them: aggregation operators (`sum by (x) (...)`), binary and set operators, and
// modifiers. Functions are told by the parenthesis that follows them.
var notMetrics = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"and": true, "or": true, "unless": true, "atan2": true, "bool": true, "offset": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// labelLists are the modifiers whose parenthesis holds label names, not an expression.
var labelLists = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

// selectors returns the series selectors of a PromQL expression, Grafana's variables
// ($instance, $__rate_interval, ${datasource}) skipped. It is a tokenizer, not a parser: it
// knows strings, ranges, label matchers, numbers and identifiers, which is all an expression
// of ours holds.
func selectors(expr string) ([]selector, error) {
	var sels []selector
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			end := stringEnd(expr, i)
			if end < 0 {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			i = end
		case c == '$':
			i++
			if i < len(expr) && expr[i] == '{' {
				i = strings.IndexByte(expr[i:], '}') + i + 1
			} else {
				i = identEnd(expr, i)
			}
		case c == '[':
			end := strings.IndexByte(expr[i:], ']')
			if end < 0 {
				return nil, fmt.Errorf("unterminated range at %d", i)
			}
			i += end + 1
		case c == '{':
			ms, end, err := matchers(expr, i)
			if err != nil {
				return nil, err
			}
			sels = append(sels, selector{matchers: ms})
			i = end
		case isIdentStart(c):
			end := identEnd(expr, i)
			word := expr[i:end]
			next := skipSpace(expr, end)
			switch {
			case labelLists[word] && next < len(expr) && expr[next] == '(':
				i = strings.IndexByte(expr[next:], ')') + next + 1
				continue
			case notMetrics[word] || next < len(expr) && expr[next] == '(':
				i = end
				continue
			}
			sel := selector{metric: word}
			i = end
			if next < len(expr) && expr[next] == '{' {
				ms, end, err := matchers(expr, next)
				if err != nil {
					return nil, err
				}
				sel.matchers, i = ms, end
			}
			sels = append(sels, sel)
		case c >= '0' && c <= '9' || c == '.':
			i = identEnd(expr, i+1) // a number or a duration: 0.99, 2e6, 5m
		default:
			i++
		}
	}
	return sels, nil
}

// matchers reads the label matchers in the braces at expr[open], and returns where they end.
func matchers(expr string, open int) ([]matcher, int, error) {
	var ms []matcher
	i := skipSpace(expr, open+1)
	for i < len(expr) && expr[i] != '}' {
		end := identEnd(expr, i)
		if end == i {
			return nil, 0, fmt.Errorf("label name expected at %d in %q", i, expr)
		}
		m := matcher{label: expr[i:end]}
		i = skipSpace(expr, end)
		for _, op := range []string{"=~", "!~", "!=", "="} {
			if strings.HasPrefix(expr[i:], op) {
				m.op = op
				break
			}
		}
		if m.op == "" {
			return nil, 0, fmt.Errorf("matcher operator expected at %d in %q", i, expr)
		}
		i = skipSpace(expr, i+len(m.op))
		end = stringEnd(expr, i)
		if end < 0 {
			return nil, 0, fmt.Errorf("quoted label value expected at %d in %q", i, expr)
		}
		m.value = expr[i+1 : end-1]
		ms = append(ms, m)
		i = skipSpace(expr, end)
		if i < len(expr) && expr[i] == ',' {
			i = skipSpace(expr, i+1)
		}
	}
	if i >= len(expr) {
		return nil, 0, fmt.Errorf("unterminated label matchers in %q", expr)
	}
	return ms, i + 1, nil
}

// stringEnd returns the index after the string literal that starts at expr[i], or -1.
func stringEnd(expr string, i int) int {
	if i >= len(expr) || !strings.ContainsRune("\"'`", rune(expr[i])) {
		return -1
	}
	quote := expr[i]
	for j := i + 1; j < len(expr); j++ {
		switch {
		case expr[j] == '\\' && quote != '`':
			j++
		case expr[j] == quote:
			return j + 1
		}
	}
	return -1
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func identEnd(s string, i int) int {
	for i < len(s) && (isIdentStart(s[i]) || s[i] >= '0' && s[i] <= '9') {
		i++
	}
	return i
}

func skipSpace(s string, i int) int {
	for i < len(s) && strings.ContainsRune(" \t\n\r", rune(s[i])) {
		i++
	}
	return i
}

func TestSelectors(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []selector
	}{
		{`up`, []selector{{metric: "up"}}},
		{`up{job=~"concurd.*", instance=~"$instance"} == 0`, []selector{{metric: "up", matchers: []matcher{{"job", "=~", "concurd.*"}, {"instance", "=~", "$instance"}}}}},
		{
			`histogram_quantile(0.99, sum by (job, instance, le) (rate(concur_counter_commit_seconds_bucket[5m]))) > 0.1`,
			[]selector{{metric: "concur_counter_commit_seconds_bucket"}},
		},
		{
			"sum by (job, instance) (rate(a_total{outcome!~\"ok|blocked\"}[$__rate_interval]))\n  / sum without (outcome) (rate(a_total[5m])) > 0.25",
			[]selector{{metric: "a_total", matchers: []matcher{{"outcome", "!~", "ok|blocked"}}}, {metric: "a_total"}},
		},
		{`x / 2^20 or y offset 5m unless on (instance) group_left (job) z`, []selector{{metric: "x"}, {metric: "y"}, {metric: "z"}}},
		{`{__name__="x", a='b\'c'}`, []selector{{matchers: []matcher{{"__name__", "=", "x"}, {"a", "=", `b\'c`}}}}},
	} {
		got, err := selectors(tc.expr)
		if err != nil {
			t.Errorf("selectors(%q): %v", tc.expr, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("selectors(%q) = %+v, want %+v", tc.expr, got, tc.want)
		}
	}
	for _, bad := range []string{`up{job="x"`, `up{job}`, `rate(x[5m)`, `"open`} {
		if _, err := selectors(bad); err == nil {
			t.Errorf("selectors(%q) found no error", bad)
		}
	}
}
