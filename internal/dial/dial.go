// Package dial is the one way concur's clients connect to a concur server: an address, and
// optionally TLS (a CA to trust, a client certificate for mTLS) and a bearer token, all from
// flags that a command registers under a prefix of its choice.
//
// Every connection carries concur's service config: a dns:/// target spreads calls over all
// the addresses of its name, and the calls that are safe to make again are retried when they
// fail UNAVAILABLE before any answer came (docs/replicas.md). While the process traces
// (internal/telemetry), every call is traced and carries its W3C trace context.
package dial

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"

	"github.com/concur-dev/concur/internal/telemetry"
)

// serviceConfig is every connection's service config, given its load-balancing policy. The
// retry policy lists the methods that are safe to call again (docs/replicas.md gives each
// reason): the reads (counter Get, Watch and Shards, printer Tail, sitesize Measure, whose
// GETs of public pages change nothing), the barriers, which change nothing either (the Joins),
// caser Case, which only computes, and caser Session, whose state is its own. Increment,
// IncrementStream, Print and PrintStream are left out: retried after the server applied them
// but before its answer came, they would count or print twice, and a service config cannot
// tell the requests that carry an idempotency key from those that do not.
//
// gRPC retries only a call that got no answer at all (a stream that has received a message
// stays with its server), and only on UNAVAILABLE: the replica was down, went away or is
// shutting down. DEADLINE_EXCEEDED ends the caller's own budget, RESOURCE_EXHAUSTED asks
// for less load, not more, and an INTERNAL error does not go away when asked again. Four
// attempts wait up to 0.1, 0.2 and 0.4 s (gRPC picks each wait at random below its cap), so a
// call to a server that is down fails within a second.
const serviceConfig = `{
	"loadBalancingConfig": [{%q: {}}],
	"methodConfig": [{
		"name": [
			{"service": "concur.counter.v1.CounterService", "method": "Get"},
			{"service": "concur.counter.v1.CounterService", "method": "Join"},
			{"service": "concur.counter.v1.CounterService", "method": "Watch"},
			{"service": "concur.counter.v1.CounterService", "method": "Shards"},
			{"service": "concur.printer.v1.PrinterService", "method": "Join"},
			{"service": "concur.printer.v1.PrinterService", "method": "Tail"},
			{"service": "concur.sitesize.v1.SiteSizeService", "method": "Measure"},
			{"service": "concur.caser.v1.CaserService", "method": "Case"},
			{"service": "concur.caser.v1.CaserService", "method": "Session"}
		],
		"retryPolicy": {
			"maxAttempts": 4,
			"initialBackoff": "0.1s",
			"maxBackoff": "1s",
			"backoffMultiplier": 2,
			"retryableStatusCodes": ["UNAVAILABLE"]
		}
	}]
}`

// Config says how to reach a server.
type Config struct {
	Addr      string
	TLS       bool
	CAFile    string
	CertFile  string
	KeyFile   string
	TokenFile string
}

// RegisterFlags defines the flags --PREFIXaddr, --PREFIXtls, --PREFIXtls-ca, --PREFIXtls-cert,
// --PREFIXtls-key and --PREFIXtoken-file on fs; what names the server in help texts.
func (c *Config) RegisterFlags(fs *flag.FlagSet, prefix, what, defaultAddr string) {
	fs.StringVar(&c.Addr, prefix+"addr", defaultAddr, "`address` of the "+what+": host:port, or dns:///host:port to spread calls over every address of the name")
	fs.BoolVar(&c.TLS, prefix+"tls", false, "connect to the "+what+" with TLS, trusting the system's CAs unless --"+prefix+"tls-ca is set")
	fs.StringVar(&c.CAFile, prefix+"tls-ca", "", "PEM CA `file` to trust for the "+what+"; implies --"+prefix+"tls")
	fs.StringVar(&c.CertFile, prefix+"tls-cert", "", "PEM client certificate `file` for mTLS with the "+what+"; implies --"+prefix+"tls")
	fs.StringVar(&c.KeyFile, prefix+"tls-key", "", "PEM private key `file` for --"+prefix+"tls-cert")
	fs.StringVar(&c.TokenFile, prefix+"token-file", "", "`file` holding the bearer token the "+what+" asks for")
}

// Dial returns a connection to the configured server. Like grpc.NewClient, it does not wait
// for the server: the first call does.
//
// Addr is host:port, served by the first of its addresses that answers (pick_first), or a
// gRPC target: dns:///host:port spreads calls over all its addresses (round_robin), and
// unix:path and gRPC's other schemes are taken as they are.
func (c Config) Dial(opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	d, err := c.Dialer()
	if err != nil {
		return nil, err
	}
	return d.Dial(c.Addr, opts...)
}

// Dialer connects to any address with the credentials of one Config, whose files it read
// once: for a process that learns the addresses it dials as it runs, such as a counter node
// reaching the others. The zero Dialer dials plaintext, without a token.
type Dialer struct {
	creds credentials.TransportCredentials // nil is plaintext
	token credentials.PerRPCCredentials    // nil sends none
}

// Dialer reads the Config's CA, client certificate and token files, so that what is wrong
// with them shows now rather than at a later Dial. Addr is not used.
func (c Config) Dialer() (Dialer, error) {
	var d Dialer
	if c.TLS || c.CAFile != "" || c.CertFile != "" {
		conf, err := TLSConfig(c.CAFile, c.CertFile, c.KeyFile)
		if err != nil {
			return Dialer{}, err
		}
		d.creds = credentials.NewTLS(conf)
	}
	if c.TokenFile != "" {
		b, err := os.ReadFile(c.TokenFile)
		if err != nil {
			return Dialer{}, fmt.Errorf("read token file: %w", err)
		}
		d.token = bearer(strings.TrimSpace(string(b)))
	}
	return d, nil
}

// Dial returns a connection to addr, as Config.Dial does to its Addr.
func (d Dialer) Dial(addr string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	policy, err := balancer(addr)
	if err != nil {
		return nil, err
	}
	creds := d.creds
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	opts = append(append(telemetry.DialOptions(),
		grpc.WithTransportCredentials(creds),
		// What is safe to retry follows from concur's contracts, so the client knows it: a
		// service config published in DNS is not looked up.
		grpc.WithDisableServiceConfig(),
		grpc.WithDefaultServiceConfig(fmt.Sprintf(serviceConfig, policy))), opts...)
	if d.token != nil {
		opts = append(opts, grpc.WithPerRPCCredentials(d.token))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return conn, nil
}

// balancer checks addr and returns its load-balancing policy.
func balancer(addr string) (string, error) {
	if addr == "" {
		return "", errors.New("no address given")
	}
	u, err := url.Parse(addr)
	switch {
	case err != nil || resolver.Get(u.Scheme) == nil: // host:port parses as scheme "host"
		return "pick_first", hostPort(addr, addr)
	case u.Scheme == "dns": // dns:///host:port, dns://server/host:port or dns:host:port
		return "round_robin", hostPort(addr, strings.TrimPrefix(u.Path, "/")+u.Opaque)
	}
	return "pick_first", nil
}

// hostPort says how to fix addr when its endpoint, the part that names the server, is not
// host:port. gRPC's resolver would take port 443 for a missing one, where no concur server
// listens by default.
func hostPort(addr, endpoint string) error {
	host, port, err := net.SplitHostPort(endpoint)
	scheme := strings.TrimSuffix(addr, endpoint)
	var bad *net.AddrError
	switch {
	case err == nil && port != "":
		return nil
	case errors.As(err, &bad) && bad.Err != "missing port in address":
		return fmt.Errorf("address %q is not host:port (%s): give one such as %slocalhost:50051 or %s[::1]:50051", addr, bad.Err, scheme, scheme)
	case err != nil:
		host = strings.Trim(endpoint, "[]")
	}
	return fmt.Errorf("address %q has no port: give host:port, such as %s", addr, scheme+net.JoinHostPort(host, "50051"))
}

// TLSConfig is a client's side of TLS: trust the certificates in caFile (the system's when it
// is empty) and, with certFile and keyFile, present that certificate (mTLS).
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
		}
	}
	if certFile != "" || keyFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	return conf, nil
}

// bearer sends "authorization: Bearer TOKEN" with every call. It allows plaintext, since
// concur's loopback deployments use a token without TLS; the server decides what it accepts.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (b bearer) RequireTransportSecurity() bool { return false }
