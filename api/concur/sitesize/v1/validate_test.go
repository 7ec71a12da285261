package sitesizev1_test

import (
	"net/url"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
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
// use: it parses, is http or https, and names a host.
func FuzzMeasureRequestValidate(f *testing.F) {
	for _, s := range []string{"http://a/", "https://example.com:8443/x?y#z", "ftp://x", "http://[::1]:80/", "::", "\xff"} {
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
	})
}
