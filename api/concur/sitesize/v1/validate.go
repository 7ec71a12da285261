package sitesizev1

import (
	"fmt"
	"net/url"
	"strconv"
	"unicode/utf8"

	"github.com/concur-dev/concur/api/urlhost"
	"github.com/concur-dev/concur/api/violation"
)

// Validate checks the form of the batch: at least one URL, each an absolute http or https URL
// with a host that browsers accept and a port from 1 to 65535 when it has one, a positive
// timeout when one is given and a byte cap that is not negative. The server also applies its
// limits on batch size and URL length.
func (r *MeasureRequest) Validate() error {
	var l violation.List
	if len(r.GetUrls()) == 0 {
		l.Add("urls", "must hold at least one URL")
	}
	for i, u := range r.GetUrls() {
		if msg := checkURL(u); msg != "" {
			l.Add(fmt.Sprintf("urls[%d]", i), msg)
		}
	}
	if t := r.GetTimeout(); t != nil {
		if err := t.CheckValid(); err != nil {
			l.Addf("timeout", "is not a valid duration: %v", err)
		} else if t.AsDuration() <= 0 {
			l.Add("timeout", "must be positive; leave it out to take the server's default")
		}
	}
	if r.GetMaxBytes() < 0 {
		l.Add("max_bytes", "must not be negative; 0 takes the server's cap")
	}
	return l.Err()
}

// checkURL says what is wrong with raw as a URL to fetch, or "" when nothing is. A host is
// read as browsers read it (api/urlhost): one that ends in a number must be an IPv4 address.
func checkURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case !utf8.ValidString(raw):
		return "must be valid UTF-8"
	case err != nil:
		return fmt.Sprintf("does not parse as a URL: %v", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Sprintf("has scheme %q; only http and https URLs can be measured", u.Scheme)
	case u.Hostname() == "":
		return "has no host; give an absolute URL such as https://example.com/"
	case !validPort(u.Port()):
		return fmt.Sprintf("has port %s; a port is a number from 1 to 65535", u.Port())
	}
	if _, _, err := urlhost.IPv4(u.Hostname()); err != nil {
		return fmt.Sprintf("has host %q, which %v", u.Hostname(), err)
	}
	return ""
}

// validPort reports whether port, the digits url.Parse found after the host's colon, is
// absent (the scheme's port) or a port that can be dialed.
func validPort(port string) bool {
	if port == "" {
		return true
	}
	n, err := strconv.ParseUint(port, 10, 16)
	return err == nil && n != 0
}
