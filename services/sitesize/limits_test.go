package sitesize_test

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/api/violation"
	"github.com/concur-dev/concur/internal/serve"
	"github.com/concur-dev/concur/services/sitesize"
)

// The runtime checks the server's limits beside Validate (see serve.Service).
var _ serve.LimitChecker = (*sitesize.Service)(nil)

// A batch that breaks rules of the contract (Validate) and limits of the server alike is
// refused with one INVALID_ARGUMENT naming every violation, in field order, and nothing of it
// is fetched.
func TestEveryViolationNamedInFieldOrder(t *testing.T) {
	web := newSite(t)
	c := config()
	c.MaxURLs, c.MaxURLBytes = 3, len(web.url("/size/1"))
	s := start(t, c)
	// Validate finds urls[0] (not http) and max_bytes; the limits find urls (four URLs, three
	// allowed) and urls[1] (too long), and urls[3] both.
	req := &sitesizev1.MeasureRequest{
		Urls:     []string{"ftp://a/", web.url("/size/10"), web.url("/size/1"), "gopher://" + strings.Repeat("a", c.MaxURLBytes)},
		MaxBytes: -1,
	}
	_, err := s.measure(t, req)
	want := []string{"urls", "urls[0]", "urls[1]", "urls[3]", "urls[3]", "max_bytes"}
	if status.Code(err) != codes.InvalidArgument || !slices.Equal(violation.Fields(err), want) {
		t.Fatalf("Measure = %v (fields %q), want INVALID_ARGUMENT on %q", err, violation.Fields(err), want)
	}
	msg := status.Convert(err).Message()
	for _, say := range []string{"--sitesize-max-urls", `urls[0]: has scheme "ftp"`, "urls[1]: is", `urls[3]: has scheme "gopher"`, "--sitesize-max-url-bytes", "max_bytes: "} {
		i := strings.Index(msg, say)
		if i < 0 {
			t.Fatalf("message %q does not say %q after what comes before it", msg, say)
		}
		msg = msg[i+len(say):]
	}
	web.mu.Lock()
	defer web.mu.Unlock()
	if len(web.hits) != 0 {
		t.Fatalf("the site was asked for %v", web.hits)
	}
}
