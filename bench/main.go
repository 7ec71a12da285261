// Command bench measures concur against its performance targets and prints one table of
// figures and ratios. Every ratio is taken against a yardstick measured in the same run (the
// no-op unary ceiling of the same server stack, a plain Go client, Redis), because the
// machines it runs on are shared and noisy: only figures from one run compare.
//
//	go run ./bench                  # every scenario
//	go run ./bench -run printer     # scenarios whose name matches a regular expression
//	go run ./bench -duration 10s    # measure each load longer
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// A scenario measures one thing and reports figures.
type scenario struct {
	name  string
	about string // one line, for -h
	run   func(ctx context.Context, e *env) ([]figure, error)
}

var scenarios []scenario

// register adds a scenario; each bench file registers its own in init.
func register(name, about string, run func(ctx context.Context, e *env) ([]figure, error)) {
	scenarios = append(scenarios, scenario{name, about, run})
}

// figure is one row of the table.
type figure struct {
	name   string // what was measured
	value  string // the figure, formatted with its unit
	target string // the target it is held to, if any
	ratio  string // the ratio to the yardstick, if any
	met    *bool  // whether the target was met, if there is one
}

func main() {
	slices.SortFunc(scenarios, func(a, b scenario) int { return strings.Compare(a.name, b.name) })
	runPattern := flag.String("run", "", "run only the scenarios whose name matches this regular expression")
	duration := flag.Duration("duration", 5*time.Second, "how long to measure each load, after a warm-up of a fifth of it")
	flag.Usage = func() {
		out := flag.CommandLine.Output()
		fmt.Fprint(out, "usage: go run ./bench [flags]\n\nflags:\n")
		flag.PrintDefaults()
		fmt.Fprintln(out, "\nscenarios (-run matches their names):")
		listScenarios(out)
	}
	flag.Parse()
	selected, err := selectScenarios(*runPattern, scenarios)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\nscenarios:\n", err)
		listScenarios(os.Stderr)
		os.Exit(2)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	e := &env{duration: *duration}
	defer e.close()

	fmt.Printf("concur bench: %s, %d CPUs, %s, each load measured for %v\n\n", runtime.Version(), runtime.NumCPU(), time.Now().UTC().Format(time.DateTime), *duration)
	tw := tabwriter.NewWriter(os.Stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tfigure\tvalue\tratio\ttarget\tmet")
	failed := false
	ctx := context.Background()
	for _, s := range selected {
		fmt.Fprintf(os.Stderr, "running %s...\n", s.name)
		figs, err := s.run(ctx, e)
		if err != nil {
			fmt.Fprintf(tw, "%s\terror\t%v\t\t\t\n", s.name, err)
			failed = true
			continue
		}
		for _, f := range figs {
			met := ""
			if f.met != nil {
				met = map[bool]string{true: "yes", false: "NO"}[*f.met]
				failed = failed || !*f.met
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.name, f.name, f.value, f.ratio, f.target, met)
		}
		tw.Flush()
	}
	tw.Flush()
	if failed {
		os.Exit(1)
	}
}

// selectScenarios returns the scenarios whose name matches pattern, in their order; a pattern
// that matches none is an error.
func selectScenarios(pattern string, all []scenario) ([]scenario, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("-run: %w", err)
	}
	var selected []scenario
	for _, s := range all {
		if re.MatchString(s.name) {
			selected = append(selected, s)
		}
	}
	if len(selected) == 0 {
		return nil, fmt.Errorf("-run %q matches no scenario", pattern)
	}
	return selected, nil
}

// listScenarios writes each scenario's name and what it measures.
func listScenarios(w io.Writer) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	for _, s := range scenarios {
		fmt.Fprintf(tw, "  %s\t%s\n", s.name, s.about)
	}
	tw.Flush()
}

// rate formats operations per second with thousands separators.
func rate(perSecond float64, unit string) string {
	return thousands(int64(perSecond+0.5)) + " " + unit + "/s"
}

func thousands(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// latency formats a load's p50 and p99.
func latency(r loadResult) string {
	return fmt.Sprintf("p50 %v, p99 %v", r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond))
}
