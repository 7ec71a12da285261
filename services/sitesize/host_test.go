package sitesize_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/api/violation"
	"github.com/concur-dev/concur/services/sitesize"
)

// dnsCounter hands the fetcher a resolver that reads /etc/hosts as Go's own does and counts
// every query it would send to a name server, failing each: nothing leaves the machine.
type dnsCounter struct{ queries atomic.Int64 }

func (d *dnsCounter) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		d.queries.Add(1)
		return nil, errors.New("no name server in this test")
	}}
}

// A host that browsers read as an IPv4 address is that address: with nothing allowed, every
// spelling of a loopback, private or metadata address is BLOCKED, dialed as the address it
// spells, and no name server is asked. So are the IPv6 literals that embed such an address,
// and localhost with a trailing dot, which /etc/hosts answers.
func TestNumericHostsAreAddresses(t *testing.T) {
	c := config()
	c.Allow, c.AllowPorts = nil, nil
	var dns dnsCounter
	s := startWith(t, c, dns.resolver())
	tests := []struct {
		url    string
		dialed string // the address the guard refused, when the test can know it
	}{
		{"http://2130706433/", "127.0.0.1:80"},
		{"http://0x7f000001/", "127.0.0.1:80"},
		{"http://0X7F000001/", "127.0.0.1:80"},
		{"http://017700000001/", "127.0.0.1:80"},
		{"http://127.1/", "127.0.0.1:80"},
		{"http://0x7f.0.0.1/", "127.0.0.1:80"},
		{"http://127.0.0.1./", "127.0.0.1:80"},
		{"https://0x7f.1/", "127.0.0.1:443"},
		{"http://１２７.１/", "127.0.0.1:80"}, // fullwidth digits: net/http maps them (IDNA)
		{"http://0xa9fea9fe/latest/meta-data/", "169.254.169.254:80"},
		{"http://0251.0376.0251.0376/latest/meta-data/", "169.254.169.254:80"},
		{"http://10.1/", "10.0.0.1:80"},
		{"http://0/", "0.0.0.0:80"},
		{"http://localhost./", ""},
		{"http://[::ffff:127.0.0.1]/", "127.0.0.1:80"},
		{"http://[::ffff:7f00:1]/", "127.0.0.1:80"},
		{"http://[0:0:0:0:0:ffff:127.0.0.1]/", "127.0.0.1:80"},
		{"http://[::127.0.0.1]/", "[::7f00:1]:80"},
		{"http://[::ffff:0:127.0.0.1]/", "[::ffff:0:7f00:1]:80"},
		{"http://[64:ff9b::127.0.0.1]/", "[64:ff9b::7f00:1]:80"},
		{"http://[2002:7f00:1::]/", "[2002:7f00:1::]:80"},
	}
	req := &sitesizev1.MeasureRequest{}
	for _, tt := range tests {
		req.Urls = append(req.Urls, tt.url)
	}
	got := s.measureOK(t, req) // which also checks each result carries its URL as sent
	for i, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			e := got[i].GetError()
			if e.GetCode() != sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_BLOCKED || !strings.Contains(e.GetMessage(), "--sitesize-allow") ||
				!strings.Contains(e.GetMessage(), "dial tcp "+tt.dialed) {
				t.Errorf("%s: %v; want BLOCKED, dialing %s", tt.url, e, tt.dialed)
			}
		})
	}
	if n := dns.queries.Load(); n != 0 {
		t.Fatalf("%d queries to a name server; want none", n)
	}

	// The counter does see lookups: a name that ends in no number is looked up.
	got = s.measureOK(t, &sitesizev1.MeasureRequest{Urls: []string{"http://sitesize-test.invalid/"}})
	if e := got[0].GetError(); e.GetCode() != sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_DNS || dns.queries.Load() == 0 {
		t.Fatalf("a name: %v after %d queries; want DNS after some", e, dns.queries.Load())
	}
}

// When its network and port are allowed, every spelling of an address is fetched there, as a
// browser fetches it, with no name server asked; each result carries its URL as sent.
func TestAllowedNumericHostsAreFetched(t *testing.T) {
	web := newSite(t) // on 127.0.0.1
	port := web.Listener.Addr().(*net.TCPAddr).Port
	var dns dnsCounter
	s := startWith(t, config(), dns.resolver())
	spellings := []string{"127.1", "2130706433", "0x7f000001", "017700000001", "0x7f.0.0.1", "127.0.0.1.", "localhost."}
	req := &sitesizev1.MeasureRequest{}
	for i, host := range spellings {
		req.Urls = append(req.Urls, fmt.Sprintf("http://%s:%d/size/%d", host, port, 100+i))
	}
	got := s.measureOK(t, req)
	for i, r := range got {
		t.Run(spellings[i], func(t *testing.T) {
			if r.GetError() != nil || r.GetStatus() != 200 || r.GetSize() != int64(100+i) || r.GetFinalUrl() != req.Urls[i] {
				t.Errorf("%s: error %v, status %d, size %d, final URL %q; want 200 and %d bytes", r.GetUrl(), r.GetError(), r.GetStatus(), r.GetSize(), r.GetFinalUrl(), 100+i)
			}
			if n := web.hitsOf(fmt.Sprintf("/size/%d", 100+i)); n != 1 {
				t.Errorf("%s: the site was asked %d times; want once", r.GetUrl(), n)
			}
		})
	}
	if n := dns.queries.Load(); n != 0 {
		t.Fatalf("%d queries to a name server; want none", n)
	}
}

// A redirect's host is read the same way: a numeric spelling of a refused address is
// BLOCKED, of an allowed one is fetched, and a host that ends in a number without being an
// address is a broken response, as it is to a browser. No name server is asked.
func TestRedirectHostsAreReadAsBrowsersReadThem(t *testing.T) {
	inside := newSite(t) // on 127.0.0.1
	door := newUnstartedSite(t, "127.0.0.2:0")
	door.Start()
	c := config()
	c.Allow = sitesize.Prefixes{netip.MustParsePrefix("127.0.0.2/32")}
	var dns dnsCounter
	s := startWith(t, c, dns.resolver())
	insidePort := inside.Listener.Addr().(*net.TCPAddr).Port
	doorPort := door.Listener.Addr().(*net.TCPAddr).Port
	got := s.measureOK(t, &sitesizev1.MeasureRequest{Urls: []string{
		door.url(fmt.Sprintf("/to?url=http://0x7f000001:%d/size/1", insidePort)),
		door.url(fmt.Sprintf("/to?url=http://0x7f000002:%d/size/2", doorPort)),
		door.url("/to?url=http://1.2.3.256/"),
	}})
	if e := got[0].GetError(); e.GetCode() != sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_BLOCKED || !strings.Contains(e.GetMessage(), fmt.Sprintf("dial tcp 127.0.0.1:%d", insidePort)) {
		t.Errorf("a redirect to 0x7f000001: %v; want BLOCKED, dialing 127.0.0.1", got[0])
	}
	if r := got[1]; r.GetError() != nil || r.GetSize() != 2 || r.GetRedirects() != 1 {
		t.Errorf("a redirect to 0x7f000002, allowed: %v; want 2 bytes after 1 redirect", r)
	}
	if e := got[2].GetError(); e.GetCode() != sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_PROTOCOL || !strings.Contains(e.GetMessage(), `"1.2.3.256" ends in a number but is not an IPv4 address`) {
		t.Errorf("a redirect to 1.2.3.256: %v; want PROTOCOL, saying why", got[2])
	}
	if n := inside.hitsOf("/size/1"); n != 0 {
		t.Errorf("the refused site was asked %d times", n)
	}
	if n := dns.queries.Load(); n != 0 {
		t.Fatalf("%d queries to a name server; want none", n)
	}
}

// A port outside 1 to 65535, or a host that ends in a number without being an IPv4 address,
// fails the call naming the URL, before anything is fetched or looked up.
func TestInvalidPortsAndHostsFailTheCall(t *testing.T) {
	web := newSite(t)
	var dns dnsCounter
	s := startWith(t, config(), dns.resolver())
	for _, bad := range []string{
		"http://example.com:70000/",
		"http://example.com:65536/",
		"http://example.com:0/",
		"http://example.com:http/",
		"http://256.256.256.256/",
		"http://1.2.3.4.5/",
		"http://0x100000000/",
		"http://127.0.0.08/",
	} {
		t.Run(bad, func(t *testing.T) {
			_, err := s.measure(t, &sitesizev1.MeasureRequest{Urls: []string{web.url("/size/1"), bad}})
			if status.Code(err) != codes.InvalidArgument || !slices.Equal(violation.Fields(err), []string{"urls[1]"}) {
				t.Errorf("%s: %v; want INVALID_ARGUMENT naming urls[1]", bad, err)
			}
		})
	}
	web.mu.Lock()
	defer web.mu.Unlock()
	if len(web.hits) != 0 {
		t.Errorf("the site was asked for %v", web.hits)
	}
	if n := dns.queries.Load(); n != 0 {
		t.Fatalf("%d queries to a name server; want none", n)
	}
}
