package sitesize

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"syscall"

	"code.dny.dev/ssrf"
)

// guard is the address guard. A server that fetches URLs for anyone must not become a door
// into its own network, and a host name says nothing about where it leads (DNS may answer
// 127.0.0.1, a redirect may point at 169.254.169.254), so the guard checks the address
// actually dialed: it is net.Dialer's Control, which runs after DNS resolution and before
// connecting, on every dial, the first and each redirect's. Before it, asBrowser reads the
// host as a browser does, so that 127.1 or 0x7f000001 is checked as 127.0.0.1 with no DNS
// lookup. The deny lists, every special purpose range IANA registers for IPv4 and all of IPv6
// outside global unicast, come from code.dny.dev/ssrf.
type guard struct {
	ssrf  *ssrf.Guardian
	ports Ports
}

func newGuard(allow Prefixes, ports Ports) *guard {
	var v4, v6 []netip.Prefix
	for _, p := range allow {
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	return &guard{
		ssrf:  ssrf.New(ssrf.WithAnyPort(), ssrf.WithAllowedV4Prefixes(v4...), ssrf.WithAllowedV6Prefixes(v6...)),
		ports: ports,
	}
}

// blockedError is the guard's refusal; FETCH_ERROR_CODE_BLOCKED says it was refused, reason
// says why.
type blockedError struct{ reason string }

func (e *blockedError) Error() string { return e.reason }

// control is net.Dialer's Control: it refuses to connect to an address the guard forbids.
func (g *guard) control(network, address string, _ syscall.RawConn) error {
	if network != "tcp4" && network != "tcp6" {
		return &blockedError{fmt.Sprintf("network %s is not allowed", network)}
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &blockedError{fmt.Sprintf("address %q does not parse: %v", address, err)}
	}
	if p := ap.Port(); p != 80 && p != 443 && !g.ports.contains(p) {
		return &blockedError{fmt.Sprintf("port %d is not allowed, only 80 and 443; the operator may allow it with --sitesize-allow-ports", p)}
	}
	if err := g.ssrf.SafeAddr(ap.Addr().Unmap()); err != nil {
		return &blockedError{fmt.Sprintf("%v; the operator may allow it with --sitesize-allow", strings.TrimPrefix(err.Error(), ssrf.ErrProhibitedIP.Error()+": "))}
	}
	return nil
}

// Prefixes is a list of networks; as a flag, comma-separated CIDRs or single addresses,
// added to on every use.
type Prefixes []netip.Prefix

func (p *Prefixes) String() string {
	s := make([]string, len(*p))
	for i, prefix := range *p {
		s[i] = prefix.String()
	}
	return strings.Join(s, ",")
}

// Set adds the networks in s: CIDRs (10.0.0.0/8, fd00::/8) or addresses (127.0.0.1).
func (p *Prefixes) Set(s string) error {
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		prefix, err := netip.ParsePrefix(item)
		if err != nil && !strings.Contains(item, "/") {
			var addr netip.Addr
			addr, err = netip.ParseAddr(item)
			if err == nil && addr.Zone() != "" {
				err = errors.New("a zone cannot be allowed")
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		if err != nil {
			return fmt.Errorf("%q is neither a CIDR nor an address: %w", item, err)
		}
		if prefix.Addr().Is4In6() && prefix.Bits() >= 96 {
			// The guard sees IPv4-mapped addresses as IPv4, so allow them as such.
			prefix = netip.PrefixFrom(prefix.Addr().Unmap(), prefix.Bits()-96)
		}
		*p = append(*p, prefix.Masked())
	}
	return nil
}

// PortRange is the ports from First to Last, both included.
type PortRange struct{ First, Last uint16 }

// Ports is a list of port ranges; as a flag, comma-separated ports or ranges (8080,
// 9000-9099), added to on every use.
type Ports []PortRange

func (p *Ports) String() string {
	s := make([]string, len(*p))
	for i, r := range *p {
		s[i] = strconv.Itoa(int(r.First))
		if r.Last != r.First {
			s[i] += "-" + strconv.Itoa(int(r.Last))
		}
	}
	return strings.Join(s, ",")
}

// Set adds the ports and ranges in s.
func (p *Ports) Set(s string) error {
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		first, last, isRange := strings.Cut(item, "-")
		a, err := parsePort(first)
		b := a
		if err == nil && isRange {
			b, err = parsePort(last)
		}
		if err != nil {
			return fmt.Errorf("%q is not a port or a range of ports (8080, 9000-9099): %w", item, err)
		}
		if a > b {
			return fmt.Errorf("range %q runs backwards", item)
		}
		*p = append(*p, PortRange{a, b})
	}
	return nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, errors.New("port 0 cannot be dialed")
	}
	return uint16(n), nil
}

func (p Ports) contains(port uint16) bool {
	for _, r := range p {
		if r.First <= port && port <= r.Last {
			return true
		}
	}
	return false
}
