package urlhost_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/concur-dev/concur/api/urlhost"
)

// The cases are the WHATWG URL Standard's, most of them from its tests (urltestdata.json).
func TestIPv4(t *testing.T) {
	for host, want := range map[string]string{
		"127.0.0.1":                "127.0.0.1",
		"127.1":                    "127.0.0.1",
		"127.0.1":                  "127.0.0.1",
		"2130706433":               "127.0.0.1",
		"0x7f000001":               "127.0.0.1",
		"0X7F000001":               "127.0.0.1",
		"017700000001":             "127.0.0.1",
		"0x7f.0.0.1":               "127.0.0.1",
		"0177.0.0.1":               "127.0.0.1",
		"127.0.0.1.":               "127.0.0.1",
		"0x7f.1":                   "127.0.0.1",
		"192.168.257":              "192.168.1.1",
		"192.0x00A80001":           "192.168.0.1",
		"0300.0250.0000.0001":      "192.168.0.1",
		"4294967295":               "255.255.255.255",
		"0xffffffff":               "255.255.255.255",
		"0x000000000000000000001":  "0.0.0.1",
		"000000000000000000000001": "0.0.0.1",
		"0":                        "0.0.0.0",
		"0x":                       "0.0.0.0",
		"0x.0x.0":                  "0.0.0.0",
		"１２７.０.０.１":                "127.0.0.1", // fullwidth digits and dots, mapped by IDNA
		"０ｘ７ｆ０００００１":               "127.0.0.1",
		"127。0。0。1":                "127.0.0.1", // ideographic full stops
	} {
		t.Run(host, func(t *testing.T) {
			addr, ok, err := urlhost.IPv4(host)
			if err != nil || !ok || addr != netip.MustParseAddr(want) {
				t.Errorf("IPv4(%q) = %v, %v, %v; want %s", host, addr, ok, err, want)
			}
		})
	}
	for _, host := range []string{
		"example.com", "localhost", "localhost.", "", ".", "..", "1.2.3.4..", "0x7f.0.0.0x7g", "1e1",
		"127.0.0.1.example", "xn--n3h", "::1", "::ffff:127.0.0.1", "fe80::1%eth0",
	} {
		t.Run(host, func(t *testing.T) {
			if addr, ok, err := urlhost.IPv4(host); ok || err != nil || addr.IsValid() {
				t.Errorf("IPv4(%q) = %v, %v, %v; want a name", host, addr, ok, err)
			}
		})
	}
	for host, says := range map[string]string{
		"256.256.256.256":         `part "256" is over 255`,
		"1.2.3.256":               `part "256" is over 255`,
		"1.2.65536":               `part "65536" is over 65535`,
		"1.16777216":              `part "16777216" is over 16777215`,
		"4294967296":              `part "4294967296" is over 4294967295`,
		"0x100000000":             `part "0x100000000" is over 4294967295`,
		"0xffffffff1":             "over 4294967295",
		"99999999999999999999999": "over 4294967295",
		"0x100.2.3.4":             `part "0x100" is over 255`,
		"1.2.3.4.5":               "5 parts",
		"1.2.3.4.5.":              "5 parts",
		"0.0.0.0.0.0.0.0.0.0.0.1": "12 parts",
		"09":                      `part "09" is not`,
		"1.2.3.09":                `part "09" is not`,
		"foo.09":                  `part "foo" is not`,
		"foo.0x4":                 `part "foo" is not`,
		"example.1":               `part "example" is not`,
		"0..0x300":                `part "" is not`,
		".1":                      `part "" is not`,
		"１.２.３.２５６":               `part "256" is over 255`,
	} {
		t.Run(host, func(t *testing.T) {
			addr, ok, err := urlhost.IPv4(host)
			if ok || addr.IsValid() || !errors.Is(err, urlhost.ErrNotIPv4) || !strings.Contains(err.Error(), says) {
				t.Errorf("IPv4(%q) = %v, %v, %v; want ErrNotIPv4 saying %q", host, addr, ok, err, says)
			}
		})
	}
}

// FuzzIPv4 checks the parser's invariants: it never panics; it either reads an IPv4 address,
// or a name, or fails with ErrNotIPv4; an address it reads is 4 bytes and reads back the same
// from its dotted decimal form; the standard's dotted decimal a.b.c.d reads as itself, as
// netip reads it; one trailing dot and the case of letters change nothing.
func FuzzIPv4(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "127.1", "0x7f000001", "017700000001", "2130706433", "127.0.0.1.", "localhost.",
		"256.256.256.256", "1.2.3.4.5", "0x100000000", "0x", "..", "::1", "１２７.０.０.１", "example.com", "foo.09"} {
		f.Add(s, byte(127), byte(0), byte(0), byte(1))
	}
	f.Fuzz(func(t *testing.T, host string, a, b, c, d byte) {
		addr, ok, err := urlhost.IPv4(host)
		switch {
		case ok && (err != nil || !addr.Is4()):
			t.Fatalf("IPv4(%q) = %v, %v, %v: read, yet not a 4-byte address", host, addr, ok, err)
		case !ok && addr.IsValid():
			t.Fatalf("IPv4(%q) = %v, %v, %v: an address, yet not read", host, addr, ok, err)
		case err != nil && !errors.Is(err, urlhost.ErrNotIPv4):
			t.Fatalf("IPv4(%q) fails with %v, not ErrNotIPv4", host, err)
		}
		if ok {
			if again, ok, err := urlhost.IPv4(addr.String()); !ok || err != nil || again != addr {
				t.Fatalf("IPv4(%q) = %v, whose dotted form reads as %v, %v, %v", host, addr, again, ok, err)
			}
		}
		if want, err := netip.ParseAddr(host); err == nil && want.Is4() && (!ok || addr != want) {
			t.Fatalf("IPv4(%q) = %v, %v; netip reads %v", host, addr, ok, want)
		}
		if host != "" && !strings.HasSuffix(host, ".") {
			dotted, dottedOK, dottedErr := urlhost.IPv4(host + ".")
			if dotted != addr || dottedOK != ok || (dottedErr == nil) != (err == nil) {
				t.Fatalf("IPv4(%q) = %v, %v, %v but IPv4(%q) = %v, %v, %v", host, addr, ok, err, host+".", dotted, dottedOK, dottedErr)
			}
		}
		if upper, lower := strings.ToUpper(host), strings.ToLower(host); isASCII(host) {
			u, uOK, uErr := urlhost.IPv4(upper)
			l, lOK, lErr := urlhost.IPv4(lower)
			if u != l || uOK != lOK || (uErr == nil) != (lErr == nil) {
				t.Fatalf("IPv4(%q) = %v, %v, %v but IPv4(%q) = %v, %v, %v", upper, u, uOK, uErr, lower, l, lOK, lErr)
			}
		}
		want := netip.AddrFrom4([4]byte{a, b, c, d})
		dotted := fmt.Sprintf("%d.%d.%d.%d", a, b, c, d)
		if got, ok, err := urlhost.IPv4(dotted); !ok || err != nil || got != want {
			t.Fatalf("IPv4(%q) = %v, %v, %v; want %v", dotted, got, ok, err, want)
		}
	})
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
