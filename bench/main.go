// Command bench measures concur against its performance targets and prints one table of
// figures and ratios. Every ratio is taken against a yardstick (the no-op unary ceiling of
// the same server stack, a plain Go client, Redis) measured next to its figure, alternating,
// over several rounds, because the machines it runs on are shared and noisy: the table shows
// the median and the range over the rounds, and a target is judged on the median.
//
//	go run ./bench                  # every scenario
//	go run ./bench -h               # the flags and the scenarios
//	go run ./bench -run printer     # scenarios whose name matches a regular expression
//	go run ./bench -duration 10s    # measure each load longer
//	go run ./bench -rounds 9        # more rounds, each a figure and its yardstick
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
	"runtime/pprof"
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

// figure is one row of the table: a value over the rounds and, if it has a yardstick, its
// ratio to it round by round.
type figure struct {
	name   string               // what was measured
	value  spread               // over the rounds
	show   func(float64) string // formats one value, without the unit
	unit   string               // after the median
	ratio  *spread              // to the yardstick, if any
	per    string               // after the ratio: what it is a ratio to ("x Redis", " of no-op")
	target string               // the target it is held to, if any
	met    *bool                // whether the median met the target, if there is one
}

// cells are the figure's columns of the table, after the scenario's.
func (f figure) cells() []string {
	median, rng := f.show(f.value.median), ""
	if f.unit != "" {
		median += " " + f.unit
	}
	if f.value.n > 1 {
		rng = f.show(f.value.min) + "–" + f.show(f.value.max)
	}
	ratio, ratioRange := "", ""
	if f.ratio != nil {
		ratio = fmt.Sprintf("%.2f%s", f.ratio.median, f.per)
		if f.ratio.n > 1 {
			ratioRange = fmt.Sprintf("%.2f–%.2f", f.ratio.min, f.ratio.max)
		}
	}
	met := ""
	if f.met != nil {
		met = map[bool]string{true: "yes", false: "NO"}[*f.met]
	}
	return []string{f.name, median, rng, ratio, ratioRange, f.target, met}
}

func main() {
	slices.SortFunc(scenarios, func(a, b scenario) int { return strings.Compare(a.name, b.name) })
	runPattern := flag.String("run", "", "run only the scenarios whose name matches this regular expression")
	duration := flag.Duration("duration", 5*time.Second, "how long to measure each load, after a warm-up of a fifth of it")
	rounds := flag.Int("rounds", 5, "how many times to measure each figure, next to its yardstick")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this `file`, for go tool pprof")
	flag.Usage = func() {
		out := flag.CommandLine.Output()
		fmt.Fprint(out, "usage: go run ./bench [flags]\n\nflags:\n")
		flag.PrintDefaults()
		fmt.Fprintln(out, "\nscenarios (-run matches their names):")
		listScenarios(out)
	}
	flag.Parse()
	if *rounds < 1 {
		fmt.Fprintln(os.Stderr, "bench: -rounds must be at least 1")
		os.Exit(2)
	}
	selected, err := selectScenarios(*runPattern, scenarios)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\nscenarios:\n", err)
		listScenarios(os.Stderr)
		os.Exit(2)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	stopProfile := func() {}
	if *cpuProfile != "" {
		if stopProfile, err = profileCPU(*cpuProfile); err != nil {
			fmt.Fprintf(os.Stderr, "bench: -cpuprofile: %v\n", err)
			os.Exit(2)
		}
	}
	e := &env{duration: *duration, rounds: *rounds}
	defer e.close()

	fmt.Printf("concur bench: %s, %d CPUs, %s, each load measured for %v, %d rounds (median and range; ratios round by round)\n\n",
		runtime.Version(), runtime.NumCPU(), time.Now().UTC().Format(time.DateTime), *duration, *rounds)
	// One table, aligned, once every scenario has run; stderr tells the progress.
	tw := tabwriter.NewWriter(os.Stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tfigure\tmedian\trange\tratio\tratio range\ttarget\tmet")
	failed := false
	ctx := context.Background()
	for _, s := range selected {
		fmt.Fprintf(os.Stderr, "running %s...\n", s.name)
		start := time.Now()
		figs, err := s.run(ctx, e)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", s.name, err)
			fmt.Fprintf(tw, "%s\terror: %v\t\t\t\t\t\t\n", s.name, err)
			failed = true
			continue
		}
		fmt.Fprintf(os.Stderr, "%s: done in %v\n", s.name, time.Since(start).Round(time.Second))
		for i, f := range figs {
			name := s.name
			if i > 0 {
				name = "" // the scenario's name heads its rows
			}
			fmt.Fprintln(tw, name+"\t"+strings.Join(f.cells(), "\t"))
			failed = failed || f.met != nil && !*f.met
		}
	}
	tw.Flush()
	stopProfile() // before os.Exit, which runs no deferred call
	if failed {
		os.Exit(1)
	}
}

// profileCPU starts a CPU profile written to path, and returns what ends it.
func profileCPU(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
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

// count formats a number with thousands separators, rounded to a whole.
func count(v float64) string { return thousands(int64(v + 0.5)) }

// rateOf is a figure of a rate per second: its median reads "12,345 unit/s".
func rateOf(name string, s spread, unit string) figure {
	return figure{name: name, value: s, show: count, unit: unit + "/s"}
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

// duration formats nanoseconds as a duration of three significant digits.
func duration(ns float64) string {
	d, unit := time.Duration(ns), time.Duration(1)
	for d >= 1000*unit {
		unit *= 10
	}
	return d.Round(unit).String()
}

// percent formats a share as a percentage.
func percent(v float64) string { return fmt.Sprintf("%.0f%%", v*100) }

// fixed returns a format with that many decimals.
func fixed(decimals int) func(float64) string {
	return func(v float64) string { return fmt.Sprintf("%.*f", decimals, v) }
}
