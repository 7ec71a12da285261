// Package urlhost reads the host of an http or https URL the way browsers and curl do, by the
// host parser of the WHATWG URL Standard (https://url.spec.whatwg.org/#host-parsing).
//
// Go's net/url and net leave a host such as 127.1, 0x7f000001 or 2130706433 a name, to be
// looked up in DNS; a browser reads each as the IPv4 address 127.0.0.1, and refuses a URL
// whose host ends in a number without being an IPv4 address, such as 1.2.3.256. A server
// that fetches URLs for others must read them as a browser does. This package lives under
// api/ so that a request's Validate refuses what a browser refuses and the server dials what a
// browser would.
package urlhost

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// ErrNotIPv4 is the error for a host that ends in a number but is not an IPv4 address: the
// standard makes its URL invalid.
var ErrNotIPv4 = errors.New("ends in a number but is not an IPv4 address as browsers read one (WHATWG URL Standard)")

// IPv4 reads host, a URL's host as url.URL.Hostname returns it, as the WHATWG host parser
// does. A host that ends in a number (its last dot-separated part, one trailing dot aside, is
// decimal digits or an IPv4 number) is an IPv4 address: ok is true and addr is the address,
// or, when it is not a valid one, err wraps ErrNotIPv4 and says why. Any other host is a
// domain name or an IPv6 literal (which holds a colon): ok is false and err nil.
//
// The standard's IPv4 parser: split the host on '.' and drop one empty last part (a trailing
// dot); at most 4 parts, each an IPv4 number: 0x or 0X and hex digits (0x alone is 0), or 0
// and octal digits, or decimal digits. Every part but the last is at most 255; the last fills
// the bytes that are left (127.1 is 127.0.0.1, 2130706433 is 127.0.0.1).
//
// A host holding non-ASCII characters is first mapped to ASCII by IDNA (UTS #46), as the
// standard's domain to ASCII does and as net/http does before it dials, so that fullwidth
// digits and dots read as digits and dots. A host that IDNA refuses, or that is not UTF-8, is
// left a name.
func IPv4(host string) (addr netip.Addr, ok bool, err error) {
	if strings.Contains(host, ":") {
		return netip.Addr{}, false, nil
	}
	ascii := host
	if !isASCII(host) {
		if !utf8.ValidString(host) {
			return netip.Addr{}, false, nil
		}
		if ascii, err = idna.Lookup.ToASCII(host); err != nil {
			return netip.Addr{}, false, nil
		}
	}
	if !endsInNumber(ascii) {
		return netip.Addr{}, false, nil
	}
	addr, err = parseIPv4(ascii)
	if err != nil {
		return netip.Addr{}, false, fmt.Errorf("%w: %w", ErrNotIPv4, err)
	}
	return addr, true, nil
}

// endsInNumber is the standard's ends-in-a-number checker.
func endsInNumber(host string) bool {
	host = strings.TrimSuffix(host, ".")
	last := host[strings.LastIndexByte(host, '.')+1:]
	if last != "" && strings.Trim(last, "0123456789") == "" {
		return true
	}
	_, ok := parseNumber(last)
	return ok
}

// tooBig stands for every number above 2^32: no part of an IPv4 address can be that large.
const tooBig = 1<<32 + 1

// parseIPv4 is the standard's IPv4 parser, for a host that ends in a number.
func parseIPv4(host string) (netip.Addr, error) {
	host = strings.TrimSuffix(host, ".")
	if n := strings.Count(host, ".") + 1; n > 4 {
		return netip.Addr{}, fmt.Errorf("it has %d parts; an IPv4 address has at most 4", n)
	}
	parts := strings.Split(host, ".")
	last := len(parts) - 1
	var ipv4 uint64
	for i, p := range parts {
		n, ok := parseNumber(p)
		switch {
		case !ok:
			return netip.Addr{}, fmt.Errorf("part %q is not a decimal, 0x hex or 0 octal number", p)
		case n > limit(i, last):
			return netip.Addr{}, fmt.Errorf("part %q is over %d", p, limit(i, last))
		case i < last:
			ipv4 |= n << (8 * (3 - i))
		default:
			ipv4 |= n
		}
	}
	return netip.AddrFrom4([4]byte{byte(ipv4 >> 24), byte(ipv4 >> 16), byte(ipv4 >> 8), byte(ipv4)}), nil
}

// limit is the largest value of part i of an address whose last part is last: a byte, but the
// last part fills the bytes that are left.
func limit(i, last int) uint64 {
	if i < last {
		return 255
	}
	return 1<<(8*(4-last)) - 1
}

// parseNumber is the standard's IPv4 number parser; numbers over 2^32 are tooBig.
func parseNumber(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	base := uint64(10)
	switch {
	case len(s) >= 2 && (s[:2] == "0x" || s[:2] == "0X"):
		s, base = s[2:], 16
	case len(s) >= 2 && s[0] == '0':
		s, base = s[1:], 8
	}
	var n uint64
	for i := range len(s) {
		d := digit(s[i])
		if d >= base {
			return 0, false
		}
		n = min(n*base+d, tooBig)
	}
	return n, true
}

// digit is the value of the hex digit c, or 16 when c is none.
func digit(c byte) uint64 {
	switch {
	case '0' <= c && c <= '9':
		return uint64(c - '0')
	case 'a' <= c && c <= 'f':
		return uint64(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return uint64(c-'A') + 10
	}
	return 16
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
