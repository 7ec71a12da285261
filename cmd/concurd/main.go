// Command concurd serves the concur services: the printer, the counter, the site-size
// fetcher and the caser, all on one port by default, or any subset with --services so that
// each can be deployed on its own.
//
// Every flag has an environment equivalent: CONCUR_ and the flag's name in upper case with
// dashes as underscores (--listen is CONCUR_LISTEN). SIGINT or SIGTERM shuts the server down
// gracefully; the exit status is 0 when everything accepted was drained.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/concur-dev/concur/internal/cli"
	"github.com/concur-dev/concur/internal/stack"
)

func main() {
	// A signal is how concurd is meant to stop: it drains and exits 0, not 130.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// groups sorts concurd's flags in --help by concern, then by service; a flag the table does
// not place is general.
var groups = []cli.Group{
	{Title: "General"},
	{Title: "TLS and auth", Prefixes: []string{"tls-", "auth-"}},
	{Title: "Metrics and logs", Prefixes: []string{"metrics-", "log-"}},
	{Title: "Shutdown", Prefixes: []string{"shutdown-"}},
	counterGroup(),
	{Title: "Printer", Prefixes: []string{"printer-"}},
	{Title: "Sitesize", Prefixes: []string{"sitesize-"}},
	{Title: "Caser", Prefixes: []string{"caser-"}},
}

// counterGroup holds the counter's flags and the connection to the printer it forwards to.
func counterGroup() cli.Group {
	g := cli.DialGroup("Counter", "printer-")
	g.Prefixes = append(g.Prefixes, "counter-")
	return g
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := cli.New("concurd", stdout, stderr)
	cmd.About = `Serves the concur services over gRPC: all four on one port by default, or those
that --services names. SIGINT or SIGTERM shuts it down gracefully: health turns
NOT_SERVING, new calls are refused, and what was accepted is drained within
--shutdown-timeout.`
	cmd.Groups = groups
	cmd.Exits = []cli.Exit{
		{Code: cli.ExitOK, Means: "stopped by SIGINT or SIGTERM, having drained everything it accepted"},
		{Code: cli.ExitFailed, Means: "could not start, or did not drain within --shutdown-timeout"},
		{Code: cli.ExitUsage, Means: "usage error: a flag, an argument or an environment variable is wrong"},
	}
	var cfg stack.Config
	cfg.RegisterFlags(cmd.Flags)
	if err := cmd.Parse(args); err != nil {
		return cmd.Exit(ctx, err)
	}
	log, err := cfg.Serve.NewLogger(stderr)
	if err != nil {
		return cmd.Exit(ctx, cli.Usage("%v", err))
	}
	srv, err := stack.New(cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return cli.ExitFailed
	}
	if err := srv.Serve(ctx); err != nil {
		return cli.ExitFailed
	}
	return cli.ExitOK
}
