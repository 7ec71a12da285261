package sitesize

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/concur-dev/concur/api/urlhost"
)

// dialFunc is the signature of net.Dialer's DialContext.
type dialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// asBrowser makes dial read each address's host as a browser reads a URL's host, so that the
// guard checks the address a browser would reach. net/http hands it the host of the URL, of
// the first request and of each redirect, already mapped to ASCII (IDNA).
//
//   - A host that the WHATWG URL Standard reads as IPv4 (api/urlhost) is that address, dialed
//     with no DNS lookup: 127.1, 0x7f000001, 2130706433, 017700000001, 0x7f.0.0.1 and
//     127.0.0.1. are all 127.0.0.1.
//   - A host that ends in a number without being an IPv4 address is refused, as a browser
//     refuses its URL. Validate refuses such a URL in a request; this catches redirects.
//   - A name with a trailing dot is the same name without it: localhost. is localhost.
func asBrowser(dial dialFunc) dialFunc {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(address)
		if err != nil {
			return dial(ctx, network, address) // not host:port: the dialer says what is wrong
		}
		addr, isIPv4, err := urlhost.IPv4(host)
		switch {
		case err != nil:
			return nil, fmt.Errorf("host %q %w", host, err)
		case isIPv4:
			host = addr.String()
		case len(host) > 1 && strings.HasSuffix(host, "."):
			host = host[:len(host)-1]
		}
		return dial(ctx, network, net.JoinHostPort(host, port))
	}
}
