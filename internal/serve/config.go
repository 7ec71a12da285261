package serve

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"google.golang.org/protobuf/reflect/protodesc"
)

// Config is how a server runs. Every field has a flag (RegisterFlags) and, through
// internal/cli, an environment variable.
type Config struct {
	Listen        string
	MetricsListen string

	TLSCert     string
	TLSKey      string
	TLSClientCA string

	AuthTokenFile string

	ShutdownTimeout  time.Duration
	HandshakeTimeout time.Duration

	MaxRecvMsgBytes      int
	MaxSendMsgBytes      int
	MaxConcurrentStreams uint
	KeepaliveMinTime     time.Duration
	KeepaliveTime        time.Duration
	KeepaliveTimeout     time.Duration

	// MaxConnectionAge and MaxConnectionAgeGrace recycle connections, so that clients spread
	// over replicas find new ones; 0 is no limit. See docs/replicas.md.
	MaxConnectionAge      time.Duration
	MaxConnectionAgeGrace time.Duration

	LogLevel  slog.Level
	LogFormat string

	// Descriptors, when set, answer reflection before the descriptors linked into the binary:
	// give descriptors that keep their comments, and `grpcurl describe` shows them.
	Descriptors protodesc.Resolver
}

// RegisterFlags defines the server's flags on fs, with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:50051", "`address` to serve gRPC on (host:port; port 0 picks a free one)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "", "`address` to serve Prometheus metrics on at /metrics; empty turns metrics off")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate `file`; with --tls-key, serve TLS instead of plaintext")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key `file` for --tls-cert")
	fs.StringVar(&c.TLSClientCA, "tls-client-ca", "", "PEM CA `file`; when set, clients must present a certificate it signed (mTLS)")
	fs.StringVar(&c.AuthTokenFile, "auth-token-file", "", "`file` holding a bearer token every call must carry (authorization: Bearer TOKEN); health stays open")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "on SIGINT or SIGTERM, how long to drain before open calls are cut")
	fs.DurationVar(&c.HandshakeTimeout, "handshake-timeout", 10*time.Second, "close a new connection that has not finished its TLS and HTTP/2 handshake within this")
	fs.IntVar(&c.MaxRecvMsgBytes, "max-recv-msg-bytes", 4<<20, "largest message the server accepts, in `bytes`")
	fs.IntVar(&c.MaxSendMsgBytes, "max-send-msg-bytes", 4<<20, "largest message the server sends, in `bytes`")
	fs.UintVar(&c.MaxConcurrentStreams, "max-concurrent-streams", 10000, "most calls open at once on one client connection")
	fs.DurationVar(&c.KeepaliveMinTime, "keepalive-min-time", 10*time.Second, "clients pinging more often than this are disconnected (too_many_pings)")
	fs.DurationVar(&c.KeepaliveTime, "keepalive-time", 2*time.Minute, "ping a client after this long without activity")
	fs.DurationVar(&c.KeepaliveTimeout, "keepalive-timeout", 20*time.Second, "close a connection whose ping is not answered within this")
	// Five minutes: a client reconnects, and so looks its name up again, a dozen times an
	// hour, which costs nothing, and a new replica gets its share within minutes. No grace
	// limit: a stream (a caser session, a Watch, a Tail) outlives its connection's age rather
	// than being cut, since new calls already go over the new connection.
	fs.DurationVar(&c.MaxConnectionAge, "max-connection-age", 5*time.Minute, "ask a client to reconnect after its connection is this old, so that it looks the server's name up again and finds new replicas; calls open on the old connection go on (0 is off)")
	fs.DurationVar(&c.MaxConnectionAgeGrace, "max-connection-age-grace", 0, "after --max-connection-age, cut the calls still open on the old connection once this has passed (0 never does: they run to their end)")
	fs.TextVar(&c.LogLevel, "log-level", slog.LevelInfo, "log `level`: debug, info, warn or error (debug logs every call)")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log `format`: text or json")
}

// NewLogger returns the logger the configuration asks for, writing to w.
func (c *Config) NewLogger(w io.Writer) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	switch c.LogFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", c.LogFormat)
}
