// Package stack assembles concur's services on one server: cmd/concurd runs it from its
// flags, and clients/talk runs it embedded. It is where the services meet, so that no
// service package needs to import another.
package stack

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/concur-dev/concur/api"
	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	"github.com/concur-dev/concur/internal/dial"
	"github.com/concur-dev/concur/internal/jitter"
	"github.com/concur-dev/concur/internal/serve"
	"github.com/concur-dev/concur/internal/telemetry"
	"github.com/concur-dev/concur/services/caser"
	"github.com/concur-dev/concur/services/counter"
	"github.com/concur-dev/concur/services/printer"
	"github.com/concur-dev/concur/services/sitesize"
)

// Names are the services a stack can run, in start order. They stop in the reverse order,
// so the counter drains to a printer that is still up.
var Names = []string{"printer", "counter", "sitesize", "caser"}

// Config is a whole stack's configuration: the server's and each service's.
type Config struct {
	Serve    serve.Config
	Services ServiceList
	Jitter   time.Duration
	Printer  printer.Config
	Counter  counter.Config
	Sitesize sitesize.Config
	Caser    caser.Config
	// PrinterDial is where the counter sends its print jobs when the printer runs elsewhere
	// (--printer-addr); left empty, the counter uses the printer of the same stack, if any.
	PrinterDial dial.Config
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
	c.Printer.RegisterFlags(fs)
	c.Counter.RegisterFlags(fs)
	c.Sitesize.RegisterFlags(fs)
	c.Caser.RegisterFlags(fs)
	c.PrinterDial.RegisterFlags(fs, "printer-", "printer the counter forwards to", "")
	fs.Lookup("printer-addr").Usage += "; empty: this concurd's printer, if it runs one, else none"
}

// New opens a server with the configured services registered; call Serve on it.
func New(c Config, log *slog.Logger) (*serve.Server, error) {
	log = telemetry.Logger(log) // the services' log lines of a traced call name its trace
	var err error
	if c.Serve.Descriptors, err = api.Descriptors(); err != nil {
		return nil, err
	}
	srv, err := serve.New(c.Serve, log)
	if err != nil {
		return nil, err
	}
	var built []serve.Service
	for _, name := range c.Services {
		svc, err := build(c, name, srv, log)
		if err != nil {
			// Nothing was served: the services release what they hold (the counter its
			// database), and give up on a printer they cannot reach.
			ctx, cancel := context.WithTimeout(context.Background(), c.Serve.ShutdownTimeout)
			for _, b := range slices.Backward(built) {
				b.Shutdown(ctx)
			}
			cancel()
			srv.Close()
			return nil, fmt.Errorf("start the %s: %w", name, err)
		}
		built = append(built, svc)
	}
	srv.Register(built...)
	return srv, nil
}

// build constructs the named service from the stack's configuration.
func build(c Config, name string, srv *serve.Server, log *slog.Logger) (serve.Service, error) {
	switch name {
	case "printer":
		return printer.New(c.Printer, printer.Deps{Log: log.With("service", "printer"), Jitter: jitter.New(c.Jitter), Metrics: srv.Metrics()})
	case "counter":
		return newCounter(c, srv, log)
	case "sitesize":
		return sitesize.New(c.Sitesize, sitesize.Deps{Log: log.With("service", "sitesize"), Jitter: jitter.New(c.Jitter), Metrics: srv.Metrics()})
	case "caser":
		return caser.New(c.Caser, caser.Deps{Log: log.With("service", "caser"), Jitter: jitter.New(c.Jitter), Metrics: srv.Metrics()})
	}
	return nil, fmt.Errorf("no service is named %q", name)
}

// newCounter builds the counter with its printer: the one at --printer-addr, else the
// printer of this stack through the in-process connection, else none.
func newCounter(c Config, srv *serve.Server, log *slog.Logger) (serve.Service, error) {
	deps := counter.Deps{Jitter: jitter.New(c.Jitter), Log: log.With("service", "counter"), Metrics: srv.Metrics()}
	var conn *grpc.ClientConn
	switch {
	case c.PrinterDial.Addr != "":
		var err error
		if conn, err = c.PrinterDial.Dial(counter.PrinterDialOptions()...); err != nil {
			return nil, fmt.Errorf("--printer-addr: %w", err)
		}
		deps.Printer = printerv1.NewPrinterServiceClient(conn)
	case slices.Contains(c.Services, "printer"):
		deps.Printer = printerv1.NewPrinterServiceClient(srv.Local())
	}
	var svc serve.Service
	var err error
	if c.Counter.Cluster.Enabled() {
		if deps.Peers, err = peerDialer(c.Serve, c.Counter.Cluster.PeerCA); err == nil {
			svc, err = counter.NewCluster(c.Counter, deps)
		}
	} else {
		svc, err = counter.New(c.Counter, deps)
	}
	switch {
	case err != nil && conn != nil:
		conn.Close()
		return nil, err
	case err != nil:
		return nil, err
	case conn == nil:
		return svc, nil
	}
	return closing{svc, conn.Close}, nil
}

// peerDialer is how a counter node reaches the other nodes: with the security its own server
// asks of its clients, since the other nodes serve with the same flags (docs/cluster.md).
// Serving TLS, it dials TLS, trusting peerCA, else the CA its clients' certificates come from,
// else the system's; when the nodes ask for client certificates it presents its own server
// certificate, so a node needs no second one. It sends its own token, if it asks for one.
func peerDialer(s serve.Config, peerCA string) (dial.Dialer, error) {
	if s.TLSCert == "" {
		if peerCA != "" {
			return dial.Dialer{}, errors.New("--counter-peer-ca needs --tls-cert: without it the counter nodes serve, and so reach each other, in plaintext")
		}
		d, err := dial.Config{TokenFile: s.AuthTokenFile}.Dialer()
		if err != nil {
			return dial.Dialer{}, fmt.Errorf("--auth-token-file, which the counter nodes send each other: %w", err)
		}
		return d, nil
	}
	cfg := dial.Config{TLS: true, CAFile: cmp.Or(peerCA, s.TLSClientCA), TokenFile: s.AuthTokenFile}
	if s.TLSClientCA != "" {
		if err := clientAuthOK(s.TLSCert); err != nil {
			return dial.Dialer{}, err
		}
		cfg.CertFile, cfg.KeyFile = s.TLSCert, s.TLSKey
	}
	d, err := cfg.Dialer()
	switch {
	case err != nil && peerCA != "":
		return dial.Dialer{}, fmt.Errorf("--counter-peer-ca: %w", err)
	case err != nil:
		return dial.Dialer{}, fmt.Errorf("the counter nodes' credentials (--tls-client-ca, --tls-cert, --tls-key, --auth-token-file): %w", err)
	}
	return d, nil
}

// clientAuthOK checks that the certificate in certFile may authenticate a client: the nodes
// of a cluster with --tls-client-ca present their server certificate to each other, and Go's
// TLS refuses one whose extended key usages name serverAuth alone.
func clientAuthOK(certFile string) error {
	b, err := os.ReadFile(certFile)
	if err != nil {
		return fmt.Errorf("read --tls-cert: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return fmt.Errorf("--tls-cert %s holds no PEM certificate", certFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("parse --tls-cert: %w", err)
	}
	if len(cert.ExtKeyUsage) > 0 && !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) && !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return fmt.Errorf("--tls-cert %s: a counter node presents it to the other nodes, which ask for client certificates (--tls-client-ca), but it lacks the clientAuth extended key usage: issue it with both serverAuth and clientAuth", certFile)
	}
	return nil
}

// closing is a service that releases a resource of its own after its Shutdown.
type closing struct {
	serve.Service
	close func() error
}

func (c closing) Shutdown(ctx context.Context) error {
	return errors.Join(c.Service.Shutdown(ctx), c.close())
}

// Broken is the service's own, so that wrapping a service keeps it serve.Breakable; nil, a
// channel never closed, for a service that cannot break.
func (c closing) Broken() <-chan struct{} {
	if b, ok := c.Service.(serve.Breakable); ok {
		return b.Broken()
	}
	return nil
}
