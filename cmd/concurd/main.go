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
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/concur-dev/concur/internal/serve"
	"github.com/concur-dev/concur/internal/stack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("concurd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg stack.Config
	cfg.RegisterFlags(fs)
	version := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: concurd [flags]\n\nServes the concur services over gRPC. Every flag can also be set by environment\nvariable: CONCUR_ and the flag's name in upper case, dashes as underscores\n(--listen is CONCUR_LISTEN); a flag on the command line wins.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := serve.ParseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "concurd:", err)
		return 2
	}
	if *version {
		fmt.Fprintln(stdout, serve.Version())
		return 0
	}
	log, err := cfg.Serve.NewLogger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "concurd:", err)
		return 2
	}
	srv, err := stack.New(cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	if err := srv.Serve(ctx); err != nil {
		return 1
	}
	return 0
}
