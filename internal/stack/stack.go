// Package stack assembles concur's services on one server: cmd/concurd runs it from its
// flags, and clients/talk runs it embedded. It is where the services meet, so that no
// service package needs to import another.
package stack

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/concur-dev/concur/api"
	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/internal/jitter"
	"github.com/concur-dev/concur/internal/serve"
	"github.com/concur-dev/concur/services/caser"
)

// Names are the services a stack can run, in start order. They stop in the reverse order,
// so the counter drains to a printer that is still up.
var Names = []string{"printer", "counter", "sitesize", "caser"}

// Config is a whole stack's configuration: the server's and each service's.
type Config struct {
	Serve    serve.Config
	Services ServiceList
	Jitter   time.Duration
	Caser    caser.Config
}

// ServiceList is a set of service names, kept in start order; as a flag it is a
// comma-separated list.
type ServiceList []string

func (l *ServiceList) String() string { return strings.Join(*l, ",") }

// Set replaces the list with the names in s, refusing unknown ones.
func (l *ServiceList) Set(s string) error {
	var chosen ServiceList
	for name := range strings.SplitSeq(s, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(Names, name) {
			return fmt.Errorf("unknown service %q; choose from %s", name, strings.Join(Names, ", "))
		}
		chosen = append(chosen, name)
	}
	slices.SortStableFunc(chosen, func(a, b string) int { return slices.Index(Names, a) - slices.Index(Names, b) })
	*l = slices.Compact(chosen)
	return nil
}

// RegisterFlags defines every flag of the stack on fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Serve.RegisterFlags(fs)
	c.Services = slices.Clone(Names)
	fs.Var(&c.Services, "services", "comma-separated `list` of the services to run: "+strings.Join(Names, ", "))
	fs.DurationVar(&c.Jitter, "jitter", 0, "race amplifier: sleep a random time up to this `duration` between the steps of owners and forwarders (0 is off)")
	c.Caser.RegisterFlags(fs)
}

// New opens a server with the configured services registered; call Serve on it.
func New(c Config, log *slog.Logger) (*serve.Server, error) {
	var err error
	if c.Serve.Descriptors, err = api.Descriptors(); err != nil {
		return nil, err
	}
	srv, err := serve.New(c.Serve, log)
	if err != nil {
		return nil, err
	}
	for _, name := range c.Services {
		svc, err := c.service(name)
		if err != nil {
			srv.Close()
			return nil, err
		}
		srv.Register(svc)
	}
	return srv, nil
}

// service constructs the named service from the configuration.
func (c Config) service(name string) (serve.Service, error) {
	switch name {
	case "caser":
		return caser.New(c.Caser, jitter.New(c.Jitter))
	}
	return placeholders[name], nil
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
}

type unimplemented struct {
	name     string
	register func(grpc.ServiceRegistrar)
}

func (u unimplemented) Name() string                     { return u.name }
func (u unimplemented) Register(r grpc.ServiceRegistrar) { u.register(r) }
func (u unimplemented) Shutdown(context.Context) error   { return nil }
