package counter

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/concur-dev/concur/internal/dial"
)

// ClusterConfig runs the counter as a node of a cluster on etcd (docs/cluster.md); with no
// Etcd endpoints the counter is the embedded one.
type ClusterConfig struct {
	Etcd      string // comma-separated etcd client URLs
	EtcdCA    string // PEM CA file to trust for etcd
	EtcdCert  string // PEM client certificate file for mTLS with etcd
	EtcdKey   string // its private key
	PeerCA    string // PEM CA file to trust for the other nodes' TLS; the server's --tls-client-ca when empty
	Advertise string // HOST:PORT where the other nodes reach this one
	Shards    int    // shards of a new cluster
	Lease     time.Duration
}

func (c *ClusterConfig) registerFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Etcd, "counter-etcd", "", "comma-separated etcd client `URLs`: run the counter as a node of a cluster, its state in etcd (--counter-db is then unused)")
	fs.StringVar(&c.EtcdCA, "counter-etcd-ca", "", "PEM CA `file` to trust for etcd; implies TLS")
	fs.StringVar(&c.EtcdCert, "counter-etcd-cert", "", "PEM client certificate `file` for mTLS with etcd; implies TLS")
	fs.StringVar(&c.EtcdKey, "counter-etcd-key", "", "PEM private key `file` for --counter-etcd-cert")
	fs.StringVar(&c.PeerCA, "counter-peer-ca", "", "PEM CA `file` to trust for the other counter nodes, which serve TLS as this one does; empty trusts --tls-client-ca, or else the system's CAs")
	fs.StringVar(&c.Advertise, "counter-advertise", "", "`HOST:PORT` where the other counter nodes reach this one (with --counter-etcd)")
	fs.IntVar(&c.Shards, "counter-shards", 64, "shards of a new counter cluster; a node with another number than the cluster's is refused")
	fs.DurationVar(&c.Lease, "counter-lease", 5*time.Second, "lease of a counter node in etcd: a node silent for longer loses its shards")
}

// Enabled reports whether the counter runs as a cluster node.
func (c ClusterConfig) Enabled() bool { return c.Etcd != "" }

func (c ClusterConfig) check() error {
	if _, _, err := net.SplitHostPort(c.Advertise); err != nil {
		return fmt.Errorf("--counter-advertise %q: want HOST:PORT where the other nodes reach this one: %w", c.Advertise, err)
	}
	switch {
	case c.Shards < 1 || c.Shards > 999:
		return fmt.Errorf("--counter-shards %d: must be 1 to 999", c.Shards)
	case c.Lease < time.Second:
		return fmt.Errorf("--counter-lease %v: must be at least 1s", c.Lease)
	case (c.EtcdCert == "") != (c.EtcdKey == ""):
		return errors.New("--counter-etcd-cert and --counter-etcd-key go together")
	}
	return nil
}

func (c ClusterConfig) endpoints() []string { return strings.Split(c.Etcd, ",") }

// tls is the TLS configuration for etcd, nil without one.
func (c ClusterConfig) tls() (*tls.Config, error) {
	if c.EtcdCA == "" && c.EtcdCert == "" {
		return nil, nil
	}
	conf, err := dial.TLSConfig(c.EtcdCA, c.EtcdCert, c.EtcdKey)
	if err != nil {
		return nil, fmt.Errorf("TLS to --counter-etcd (--counter-etcd-ca, -cert, -key): %w", err)
	}
	return conf, nil
}
