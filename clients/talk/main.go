// Command talk replays Raymond Hettinger's talk "Thinking about Concurrency" against concur,
// section by section, and checks that each section came out right:
//
//   - threading: the talk's broken way (ten goroutines share a counter and the terminal, with
//     the race amplifier), then its right way through the counter and the printer, whose
//     output is read back and checked to be exactly the talk's;
//   - sites: the talk's site sizes, in one trip to the sitesize with results as they
//     complete, beside the talk's first way, one fetch after another;
//   - async: two caser sessions side by side, each keeping its own mode, and the event
//     loop's announcement.
//
// With no address it starts an embedded stack (all four services on a loopback port, the
// counter in memory) and stops it at the end; with --addr, or an address per service, it runs
// against deployed services. It exits 0 when every check passed, 1 when one failed, 2 on a
// usage error, 3 when a check failed because a call did, and 130 at once on Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	caserv1 "github.com/concur-dev/concur/api/concur/caser/v1"
	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/internal/cli"
	"github.com/concur-dev/concur/internal/counterroute"
	"github.com/concur-dev/concur/internal/demosites"
	"github.com/concur-dev/concur/internal/dial"
	"github.com/concur-dev/concur/internal/jitter"
	"github.com/concur-dev/concur/internal/stack"
)

// sections are the talk's parts, in the order they run.
var sections = []string{"threading", "sites", "async"}

// needs names the services each section calls.
var needs = map[string][]string{
	"threading": {"printer", "counter"},
	"sites":     {"sitesize"},
	"async":     {"caser"},
}

// sectionTimeout bounds a section (besides --announce-wait), so that a service that never
// answers (a counter whose printer is away, say) fails the talk instead of hanging it.
const sectionTimeout = 2 * time.Minute

// embeddedAnnounce is how often the embedded caser announces, so that one comes during the
// async section.
const embeddedAnnounce = 500 * time.Millisecond

func main() {
	cli.Main(func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
		return run(ctx, args, stdout, stderr)
	})
}

// options are the command's flags.
type options struct {
	all          dial.Config
	per          map[string]*dial.Config // by service name
	jitter       time.Duration
	workers      int
	section      string
	sitesFile    string
	demoListen   string
	announceWait time.Duration
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd, o := command(stdout, stderr)
	if err := cmd.Parse(args); err != nil {
		return cmd.Exit(ctx, err)
	}
	return cmd.Exit(ctx, o.replay(ctx, stdout, stderr))
}

// replay runs the chosen sections, each to its end, but stops at once when ctx ends: after
// Ctrl-C there is nothing left to check.
func (o *options) replay(ctx context.Context, stdout, stderr io.Writer) (err error) {
	if err := o.check(); err != nil {
		return err
	}
	chosen := sections
	if o.section != "" {
		chosen = []string{o.section}
	}
	t := &talk{out: stdout, jitter: jitter.New(o.jitter), jitterMax: o.jitter, workers: o.workers, announceWait: o.announceWait}
	if o.sitesFile != "" {
		if t.sites, err = readSites(o.sitesFile); err != nil {
			return cli.Usage("%v", err)
		}
	}
	conns, err := o.addresses(chosen)
	if err != nil {
		return cli.Usage("%v", err)
	}
	if slices.Contains(chosen, "sites") && t.sites == nil {
		if t.demo, err = demosites.Start(o.demoListen); err != nil {
			return err
		}
		defer t.demo.Close()
	}
	if conns == nil {
		addr, stop, err := startStack(o.jitter, t.demo, stderr)
		if err != nil {
			return err
		}
		defer func() {
			if e := stop(); e != nil && err == nil {
				err = fmt.Errorf("stop the embedded stack: %w", e)
			}
		}()
		conns = map[string]dial.Config{}
		for _, svc := range stack.Names {
			conns[svc] = dial.Config{Addr: addr}
		}
		fmt.Fprintf(stdout, "An embedded stack serves the four services on %s (counter in memory).\n", addr)
	}
	closeConns, err := t.connect(conns, chosen)
	if err != nil {
		return err
	}
	defer closeConns()

	run := map[string]func(context.Context) error{"threading": t.threading, "sites": t.sitesSection, "async": t.async}
	var failed []string
	callFailed := false
	for _, s := range chosen {
		sctx, cancel := context.WithTimeout(ctx, sectionTimeout+o.announceWait)
		err := run[s](sctx)
		cancel()
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if err != nil {
			fmt.Fprintf(stdout, "\nFAILED: %s: %v\n", s, err)
			failed = append(failed, s)
			_, isCall := status.FromError(err)
			callFailed = callFailed || isCall
		}
	}
	switch {
	case callFailed:
		return cli.CallFailed("the check of %s failed", strings.Join(failed, ", "))
	case len(failed) > 0:
		return cli.Failed("the check of %s failed", strings.Join(failed, ", "))
	}
	fmt.Fprintf(stdout, "\nEvery check passed: %s.\n", strings.Join(chosen, ", "))
	return nil
}

// addresses says how to reach each service the chosen sections call: nil for an embedded
// stack when no address was given at all, else --SERVICE-addr or --addr with their own TLS
// and token flags.
func (o *options) addresses(chosen []string) (map[string]dial.Config, error) {
	remote := o.all.Addr != ""
	for _, c := range o.per {
		remote = remote || c.Addr != ""
	}
	if !remote {
		return nil, nil
	}
	conns := map[string]dial.Config{}
	for _, s := range chosen {
		for _, svc := range needs[s] {
			switch {
			case o.per[svc].Addr != "":
				conns[svc] = *o.per[svc]
			case o.all.Addr != "":
				conns[svc] = o.all
			default:
				return nil, fmt.Errorf("the %s section needs the %s: give --addr or --%s-addr (or no address at all, for an embedded stack)", s, svc, svc)
			}
		}
	}
	return conns, nil
}

// connect makes the clients of the services in conns; close closes their connections. The
// counter's client routes each counter's calls to its owner on a counter cluster.
func (t *talk) connect(conns map[string]dial.Config, chosen []string) (close func(), err error) {
	dialed := map[string]*grpc.ClientConn{}
	var counter *counterroute.Client
	close = func() {
		for _, c := range dialed {
			c.Close()
		}
		if counter != nil {
			counter.Close()
		}
	}
	for _, s := range chosen {
		for _, svc := range needs[s] {
			var conn *grpc.ClientConn
			if svc == "counter" {
				counter, err = counterroute.New(counterroute.Config{Seed: conns[svc], Dial: cli.Dial})
			} else {
				conn, err = cli.Dial(conns[svc])
			}
			if err != nil {
				close()
				return nil, fmt.Errorf("the %s: %w", svc, err)
			}
			if conn != nil {
				dialed[svc] = conn
			}
		}
	}
	if c := dialed["printer"]; c != nil {
		t.printer = printerv1.NewPrinterServiceClient(c)
	}
	if counter != nil {
		t.counter = counter
	}
	if c := dialed["sitesize"]; c != nil {
		t.sitesize = sitesizev1.NewSiteSizeServiceClient(c)
	}
	if c := dialed["caser"]; c != nil {
		t.caser = caserv1.NewCaserServiceClient(c)
	}
	return close, nil
}

// command defines the talk's command line.
func command(stdout, stderr io.Writer) (*cli.Command, *options) {
	cmd := cli.New("talk", stdout, stderr)
	cmd.About = `Replays the talk "Thinking about Concurrency" against concur and checks each
section. With no address it starts an embedded stack. With --addr, every service is
reached there; --SERVICE-addr, with its own TLS and token flags, reaches one service
elsewhere.`
	cmd.Groups = []cli.Group{{Title: "Flags"}, cli.DialGroup("Connection to every service", "")}
	for _, svc := range stack.Names {
		cmd.Groups = append(cmd.Groups, cli.DialGroup("Connection to the "+svc, svc+"-"))
	}
	cmd.Exits = cli.ClientExits("a check failed")
	fs := cmd.Flags
	o := &options{per: map[string]*dial.Config{}}
	o.all.RegisterFlags(fs, "", "server of every service", "")
	for _, svc := range stack.Names {
		o.per[svc] = &dial.Config{}
		o.per[svc].RegisterFlags(fs, svc+"-", svc+" service", "")
	}
	fs.DurationVar(&o.jitter, "jitter", 5*time.Millisecond, "race amplifier (the talk's fuzz()): sleep a random time up to this `duration` between steps; 0 is off. It drives the broken way, the talk's workers and the embedded stack's services")
	fs.IntVar(&o.workers, "workers", 10, "how many workers share the counter, as the talk's ten threads")
	fs.StringVar(&o.section, "section", "", "run only this `section`: "+strings.Join(sections, ", ")+" (default: all three)")
	fs.StringVar(&o.sitesFile, "sites", "", "measure the URLs in this `file` (one a line; blank lines and # comments skipped) instead of the demo sites")
	fs.StringVar(&o.demoListen, "demo-sites-listen", "127.0.0.1:0", "`address` to serve the demo sites on; a deployed sitesize must be allowed to reach it (--sitesize-allow, --sitesize-allow-ports)")
	fs.DurationVar(&o.announceWait, "announce-wait", 20*time.Second, "how long the async section waits for the caser's announcement before going on without one")
	return cmd, o
}

// check refuses values the flags' types let through.
func (o *options) check() error {
	switch {
	case o.section != "" && !slices.Contains(sections, o.section):
		return cli.Usage("--section %q: choose one of %s", o.section, strings.Join(sections, ", "))
	case o.workers < 1:
		return cli.Usage("--workers %d: must be at least 1", o.workers)
	case o.announceWait < 0:
		return cli.Usage("--announce-wait %v: must not be negative", o.announceWait)
	}
	return nil
}

// startStack serves the four services on a free loopback port: the counter in memory, the
// printer's standard output off (the talk shows what it printed), the sitesize allowed to
// reach the demo sites, the caser announcing often enough to be heard in the async section.
func startStack(j time.Duration, demo *demosites.Server, stderr io.Writer) (addr string, stop func() error, err error) {
	var cfg stack.Config
	fs := flag.NewFlagSet("stack", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse([]string{"--listen=127.0.0.1:0", "--counter-db=:memory:", "--printer-stdout=false",
		"--jitter=" + j.String(), "--caser-announce=" + embeddedAnnounce.String()}); err != nil {
		return "", nil, fmt.Errorf("embedded stack: %w", err)
	}
	if demo != nil {
		if err := errors.Join(cfg.Sitesize.Allow.Set("127.0.0.1"),
			cfg.Sitesize.AllowPorts.Set(strconv.Itoa(demo.Port()))); err != nil {
			return "", nil, fmt.Errorf("embedded stack: %w", err)
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := stack.New(cfg, log)
	if err != nil {
		return "", nil, fmt.Errorf("embedded stack: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	return srv.Addr().String(), func() error {
		cancel()
		return <-served
	}, nil
}

// readSites reads the URLs of a file.
func readSites(name string) ([]string, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("--sites: %w", err)
	}
	urls := parseSites(string(b))
	if len(urls) == 0 {
		return nil, fmt.Errorf("--sites %s: no URL in the file", name)
	}
	return urls, nil
}

// parseSites returns the URLs of a sites file: one a line, blank lines and # comments skipped.
func parseSites(text string) []string {
	var urls []string
	for line := range strings.Lines(text) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			urls = append(urls, line)
		}
	}
	return urls
}
