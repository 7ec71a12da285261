package sitesize

import (
	"context"
	"flag"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/api/violation"
)

func defaults() Config {
	var c Config
	c.RegisterFlags(flag.NewFlagSet("test", flag.ContinueOnError))
	return c
}

// The server caps what a request asks and fills in what it leaves out.
func TestPlanCapsAndDefaults(t *testing.T) {
	c := defaults()
	c.MaxConcurrency, c.MaxTimeout, c.MaxBytes = 50, time.Second, 1000
	urls := []string{"http://a/"}
	for _, tt := range []struct {
		req         *sitesizev1.MeasureRequest
		concurrency int
		timeout     time.Duration
		maxBytes    int64
	}{
		{&sitesizev1.MeasureRequest{Urls: urls}, c.Concurrency, time.Second, 1000},
		{&sitesizev1.MeasureRequest{Urls: urls, Concurrency: 7, Timeout: durationpb.New(time.Millisecond), MaxBytes: 10}, 7, time.Millisecond, 10},
		{&sitesizev1.MeasureRequest{Urls: urls, Concurrency: 1 << 30, Timeout: durationpb.New(time.Hour), MaxBytes: 1 << 40}, 50, time.Second, 1000},
	} {
		t.Run(fmt.Sprintf("concurrency %d", tt.req.GetConcurrency()), func(t *testing.T) {
			p := c.plan(tt.req)
			if p.concurrency != tt.concurrency || p.timeout != tt.timeout || p.maxBytes != tt.maxBytes {
				t.Errorf("%v: concurrency %d, timeout %v, max bytes %d; want %d, %v, %d", tt.req, p.concurrency, p.timeout, p.maxBytes, tt.concurrency, tt.timeout, tt.maxBytes)
			}
		})
	}
}

// Over a limit, the request is refused naming the field and index: the batch, before each
// URL too long.
func TestCheckLimits(t *testing.T) {
	c := defaults()
	c.MaxURLs, c.MaxURLBytes = 3, 20
	for _, tt := range []struct {
		urls   []string
		fields []string
	}{
		{[]string{"http://a/", "http://b/", "http://c/"}, nil},
		{[]string{"http://a/", "http://b/", "http://c/", "http://d/"}, []string{"urls"}},
		{[]string{"http://a/", "http://example.com/long/path"}, []string{"urls[1]"}},
		{[]string{"http://example.com/long/path", "http://b/", "http://c/", "http://example.com/long/path"}, []string{"urls", "urls[0]", "urls[3]"}},
	} {
		t.Run(fmt.Sprintf("%d URLs %v", len(tt.urls), tt.fields), func(t *testing.T) {
			var l violation.List
			c.checkLimits(&sitesizev1.MeasureRequest{Urls: tt.urls}, &l)
			err := l.Err()
			if got := violation.Fields(err); !slices.Equal(got, tt.fields) {
				t.Errorf("%v: %v; want fields %v", tt.urls, err, tt.fields)
			}
		})
	}
}

// For any batch and limits, checkLimits either names the fields over a limit, or plan plans
// jobs where each distinct URL is one job, every index is reached exactly once from its job,
// and the options lie within the server's caps.
func FuzzPlan(f *testing.F) {
	f.Add("http://a/\nhttp://b/\nhttp://a/", uint32(0), int64(0), 3, 20)
	f.Add("http://a/", uint32(7), int64(100), 1, 5)
	f.Add("x\nx\nx\ny\nx", uint32(1<<31), int64(-1), 10, 1)
	f.Fuzz(func(t *testing.T, lines string, concurrency uint32, maxBytes int64, maxURLs, maxURLBytes int) {
		c := defaults()
		c.MaxURLs, c.MaxURLBytes = max(1, maxURLs), max(1, maxURLBytes)
		req := &sitesizev1.MeasureRequest{Urls: strings.Split(lines, "\n"), Concurrency: concurrency, MaxBytes: maxBytes}
		var l violation.List
		c.checkLimits(req, &l)
		if err := l.Err(); err != nil {
			fields := violation.Fields(err)
			if len(fields) == 0 {
				t.Fatalf("checkLimits failed without naming a field: %v", err)
			}
			for _, field := range fields {
				if field == "urls" && len(req.Urls) <= c.MaxURLs {
					t.Fatalf("urls refused with %d URLs under a limit of %d", len(req.Urls), c.MaxURLs)
				}
			}
			return
		}
		p := c.plan(req)
		if len(req.Urls) > c.MaxURLs {
			t.Fatalf("%d URLs accepted under a limit of %d", len(req.Urls), c.MaxURLs)
		}
		seen := make([]int, len(req.Urls))
		for j, u := range p.unique {
			if slices.Index(p.unique, u) != j {
				t.Fatalf("URL %q is two jobs", u)
			}
			for i := p.first[j]; i >= 0; i = p.nextSame[i] {
				if req.Urls[i] != u || p.job[i] != j {
					t.Fatalf("index %d (%q) reached from job %d (%q)", i, req.Urls[i], j, u)
				}
				seen[i]++
			}
		}
		for i, n := range seen {
			if n != 1 || len(req.Urls[i]) > c.MaxURLBytes {
				t.Fatalf("index %d (%d bytes) reached %d times", i, len(req.Urls[i]), n)
			}
		}
		if p.concurrency < 1 || p.concurrency > c.MaxConcurrency || p.maxBytes < 1 || p.maxBytes > c.MaxBytes || p.timeout <= 0 || p.timeout > c.MaxTimeout {
			t.Fatalf("plan out of the caps: concurrency %d, max bytes %d, timeout %v", p.concurrency, p.maxBytes, p.timeout)
		}
	})
}

// The transport dials every address itself, never through a proxy from the environment
// (the guard must see the address really dialed; net/http caches the environment, so this is
// checked on the transport rather than by setting HTTP_PROXY), and takes bytes as they come.
func TestTransport(t *testing.T) {
	tr := newFetcher(defaults(), nil).transport
	if tr.Proxy != nil || !tr.DisableCompression || tr.DialContext == nil || tr.DialTLSContext != nil {
		t.Fatalf("transport: proxy set %v, compression disabled %v, own dialer %v, TLS dialer set %v",
			tr.Proxy != nil, tr.DisableCompression, tr.DialContext != nil, tr.DialTLSContext != nil)
	}
}

// asBrowser dials what a browser would: an IPv4 spelling as its address, a name without one
// trailing dot, anything else as it is; a host that ends in a number but is no address is
// refused without a dial.
func TestAsBrowser(t *testing.T) {
	var dialed string
	dial := asBrowser(func(_ context.Context, _, address string) (net.Conn, error) {
		dialed = address
		return nil, nil
	})
	for address, want := range map[string]string{
		"127.1:80":           "127.0.0.1:80",
		"0x7f000001:8080":    "127.0.0.1:8080",
		"127.0.0.1.:443":     "127.0.0.1:443",
		"localhost.:80":      "localhost:80",
		"example.com..:80":   "example.com.:80",
		".:80":               ".:80",
		"example.com:80":     "example.com:80",
		"[::1]:80":           "[::1]:80",
		"[::ffff:7f00:1]:80": "[::ffff:7f00:1]:80",
		"no port":            "no port",
		"1.2.3.256:80":       "",
		"foo.09:80":          "",
	} {
		t.Run(address, func(t *testing.T) {
			dialed = ""
			_, err := dial(t.Context(), "tcp", address)
			if dialed != want || (err != nil) != (want == "") {
				t.Errorf("dial %q: dialed %q, error %v; want %q", address, dialed, err, want)
			}
		})
	}
}
