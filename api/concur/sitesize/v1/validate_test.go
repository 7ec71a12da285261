package sitesizev1_test

import (
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/api/urlhost"
	"github.com/concur-dev/concur/api/violation"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		req    *sitesizev1.MeasureRequest
		fields []string
	}{
		{"talk's list", &sitesizev1.MeasureRequest{Urls: []string{"https://www.yahoo.com/", "http://www.cnn.com"}}, nil},
		{"no urls", &sitesizev1.MeasureRequest{}, []string{"urls"}},
		{"relative", &sitesizev1.MeasureRequest{Urls: []string{"http://a/", "/index.html"}}, []string{"urls[1]"}},
		{"ftp", &sitesizev1.MeasureRequest{Urls: []string{"ftp://example.com/"}}, []string{"urls[0]"}},
		{"no host", &sitesizev1.MeasureRequest{Urls: []string{"http:///path"}}, []string{"urls[0]"}},
		{"bad escape", &sitesizev1.MeasureRequest{Urls: []string{"http://a/%zz"}}, []string{"urls[0]"}},
		{"invalid utf8", &sitesizev1.MeasureRequest{Urls: []string{"http://a/\xff"}}, []string{"urls[0]"}},
		{"ports", &sitesizev1.MeasureRequest{Urls: []string{"http://a:1/", "http://a:65535/", "http://a:/", "http://a:080/", "https://[::1]:8443/"}}, nil},
		{"port over 65535", &sitesizev1.MeasureRequest{Urls: []string{"http://a/", "http://example.com:70000/"}}, []string{"urls[1]"}},
		{"port 65536", &sitesizev1.MeasureRequest{Urls: []string{"http://a:65536/"}}, []string{"urls[0]"}},
		{"huge port", &sitesizev1.MeasureRequest{Urls: []string{"http://a:99999999999999999999999/"}}, []string{"urls[0]"}},
		{"port 0", &sitesizev1.MeasureRequest{Urls: []string{"http://a:0/", "http://a:00/"}}, []string{"urls[0]", "urls[1]"}},
		{"non-numeric port", &sitesizev1.MeasureRequest{Urls: []string{"http://a:http/", "http://a:+80/", "http://a:-1/", "http://[::1]:x/"}}, []string{"urls[0]", "urls[1]", "urls[2]", "urls[3]"}},
		{"numeric hosts", &sitesizev1.MeasureRequest{Urls: []string{"http://2130706433/", "http://0x7f000001/", "http://017700000001/", "http://127.1/", "http://0x7f.0.0.1/", "http://127.0.0.1./", "http://localhost./", "http://[::ffff:127.0.0.1]/"}}, nil},
		{"not IPv4", &sitesizev1.MeasureRequest{Urls: []string{"http://a/", "http://256.256.256.256/", "http://1.2.3.4.5/", "http://0x100000000/", "https://foo.09:8443/x", "http://１.２.３.２５６/"}}, []string{"urls[1]", "urls[2]", "urls[3]", "urls[4]", "urls[5]"}},
		{"timeout", &sitesizev1.MeasureRequest{Urls: []string{"http://a/"}, Timeout: durationpb.New(time.Second)}, nil},
		{"zero timeout", &sitesizev1.MeasureRequest{Urls: []string{"http://a/"}, Timeout: durationpb.New(0)}, []string{"timeout"}},
		{"invalid timeout", &sitesizev1.MeasureRequest{Urls: []string{"http://a/"}, Timeout: &durationpb.Duration{Seconds: 1, Nanos: -1}}, []string{"timeout"}},
		{"negative cap", &sitesizev1.MeasureRequest{Urls: []string{"http://a/"}, MaxBytes: -1}, []string{"max_bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.req.Validate()
			if got := violation.Fields(err); !slices.Equal(got, tt.fields) {
				t.Fatalf("Validate() = %v, fields %v; want fields %v", err, got, tt.fields)
			}
		})
	}
}

// FuzzMeasureRequestValidate checks that every URL Validate accepts is one the fetcher can
// use: it parses, is http or https, names a host that is a name or an address as browsers
// read it, and has no port or one that can be dialed.
func FuzzMeasureRequestValidate(f *testing.F) {
	for _, s := range []string{"http://a/", "https://example.com:8443/x?y#z", "ftp://x", "http://[::1]:80/", "::", "\xff",
		"http://example.com:70000/", "http://a:0/", "http://127.1/", "http://0x7f000001:8080/", "http://256.256.256.256/", "http://1.2.3.4.5/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if (&sitesizev1.MeasureRequest{Urls: []string{raw}}).Validate() != nil {
			return
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
			t.Fatalf("Validate accepted %q (parse error %v)", raw, err)
		}
		if port, err := strconv.ParseUint(u.Port(), 10, 16); u.Port() != "" && (err != nil || port == 0) {
			t.Fatalf("Validate accepted %q, whose port %q cannot be dialed", raw, u.Port())
		}
		if _, _, err := urlhost.IPv4(u.Hostname()); err != nil {
			t.Fatalf("Validate accepted %q, whose host browsers refuse: %v", raw, err)
		}
	})
}
