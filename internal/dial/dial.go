// Package dial is the one way concur's clients connect to a concur server: an address, and
// optionally TLS (a CA to trust, a client certificate for mTLS) and a bearer token, all from
// flags that a command registers under a prefix of its choice.
package dial

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

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
	fs.StringVar(&c.Addr, prefix+"addr", defaultAddr, "`address` (host:port) of the "+what)
	fs.BoolVar(&c.TLS, prefix+"tls", false, "connect to the "+what+" with TLS, trusting the system's CAs unless --"+prefix+"tls-ca is set")
	fs.StringVar(&c.CAFile, prefix+"tls-ca", "", "PEM CA `file` to trust for the "+what+"; implies --"+prefix+"tls")
	fs.StringVar(&c.CertFile, prefix+"tls-cert", "", "PEM client certificate `file` for mTLS with the "+what+"; implies --"+prefix+"tls")
	fs.StringVar(&c.KeyFile, prefix+"tls-key", "", "PEM private key `file` for --"+prefix+"tls-cert")
	fs.StringVar(&c.TokenFile, prefix+"token-file", "", "`file` holding the bearer token the "+what+" asks for")
}

// Dial returns a connection to the configured server. Like grpc.NewClient, it does not wait
// for the server: the first call does.
func (c Config) Dial(opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	if c.Addr == "" {
		return nil, errors.New("no address given")
	}
	creds, err := c.transport()
	if err != nil {
		return nil, err
	}
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, opts...)
	if c.TokenFile != "" {
		b, err := os.ReadFile(c.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("read token file: %w", err)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(strings.TrimSpace(string(b)))))
	}
	conn, err := grpc.NewClient(c.Addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", c.Addr, err)
	}
	return conn, nil
}

func (c Config) transport() (credentials.TransportCredentials, error) {
	if !c.TLS && c.CAFile == "" && c.CertFile == "" {
		return insecure.NewCredentials(), nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", c.CAFile)
		}
	}
	if c.CertFile != "" || c.KeyFile != "" {
		pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(conf), nil
}

// bearer sends "authorization: Bearer TOKEN" with every call. It allows plaintext, since
// concur's loopback deployments use a token without TLS; the server decides what it accepts.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (b bearer) RequireTransportSecurity() bool { return false }
