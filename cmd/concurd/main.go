// Command concurd serves the concur services: the counter, the printer, the site-size
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
	"slices"
	"strings"
	"syscall"

	"google.golang.org/grpc"

	"github.com/concur-dev/concur/api"
	caserv1 "github.com/concur-dev/concur/api/concur/caser/v1"
	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/internal/serve"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// serviceNames are the services concurd knows, in the order they start; they stop in the
// reverse order, so the counter drains to a printer that is still up.
var serviceNames = []string{"printer", "counter", "sitesize", "caser"}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("concurd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg serve.Config
	cfg.RegisterFlags(fs)
	services := fs.String("services", strings.Join(serviceNames, ","), "comma-separated `list` of the services to run: "+strings.Join(serviceNames, ", "))
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
	log, err := cfg.NewLogger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "concurd:", err)
		return 2
	}
	chosen, err := choose(*services)
	if err != nil {
		fmt.Fprintln(stderr, "concurd:", err)
		return 2
	}
	if cfg.Descriptors, err = api.Descriptors(); err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	srv, err := serve.New(cfg, log, chosen...)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	if err := srv.Serve(ctx); err != nil {
		return 1
	}
	return 0
}

// choose returns the services named in list, in start order.
func choose(list string) ([]serve.Service, error) {
	want := map[string]bool{}
	for name := range strings.SplitSeq(list, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(serviceNames, name) {
			return nil, fmt.Errorf("--services: unknown service %q; choose from %s", name, strings.Join(serviceNames, ", "))
		}
		want[name] = true
	}
	var chosen []serve.Service
	for _, name := range serviceNames {
		if want[name] {
			chosen = append(chosen, placeholders[name])
		}
	}
	return chosen, nil
}

// placeholders answer UNIMPLEMENTED for every RPC of a service whose implementation has not
// landed yet; each service's issue replaces its entry.
var placeholders = map[string]serve.Service{
	"printer": unimplemented{printerv1.PrinterService_ServiceDesc.ServiceName, func(r grpc.ServiceRegistrar) {
		printerv1.RegisterPrinterServiceServer(r, printerv1.UnimplementedPrinterServiceServer{})
	}},
	"counter": unimplemented{counterv1.CounterService_ServiceDesc.ServiceName, func(r grpc.ServiceRegistrar) {
		counterv1.RegisterCounterServiceServer(r, counterv1.UnimplementedCounterServiceServer{})
	}},
	"sitesize": unimplemented{sitesizev1.SiteSizeService_ServiceDesc.ServiceName, func(r grpc.ServiceRegistrar) {
		sitesizev1.RegisterSiteSizeServiceServer(r, sitesizev1.UnimplementedSiteSizeServiceServer{})
	}},
	"caser": unimplemented{caserv1.CaserService_ServiceDesc.ServiceName, func(r grpc.ServiceRegistrar) {
		caserv1.RegisterCaserServiceServer(r, caserv1.UnimplementedCaserServiceServer{})
	}},
}

type unimplemented struct {
	name     string
	register func(grpc.ServiceRegistrar)
}

func (u unimplemented) Name() string                     { return u.name }
func (u unimplemented) Register(r grpc.ServiceRegistrar) { u.register(r) }
func (u unimplemented) Shutdown(context.Context) error   { return nil }
