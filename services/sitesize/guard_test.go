package sitesize_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/services/sitesize"
)

// With nothing allowed, loopback, private, link-local and cloud metadata addresses are
// refused, by address or by a name that resolves to one. The guard refuses before connecting:
// nothing is sent to any of them.
func TestGuardRefusesSpecialAddresses(t *testing.T) {
	c := config()
	c.Allow, c.AllowPorts = nil, nil
	s := start(t, c)
	urls := []string{
		"http://127.0.0.1/",
		"http://[::1]/",
		"http://10.0.0.1/",
		"http://169.254.169.254/latest/meta-data/",
		"http://localhost/",
		"http://[::ffff:127.0.0.1]/",
		"https://100.64.0.1/",
	}
	got := s.measureOK(t, &sitesizev1.MeasureRequest{Urls: urls})
	for _, r := range got {
		if r.GetError().GetCode() != sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_BLOCKED || !strings.Contains(r.GetError().GetMessage(), "--sitesize-allow") || r.Status != nil {
			t.Errorf("%s: %v; want BLOCKED, pointing at --sitesize-allow", r.GetUrl(), r.GetError())
		}
		if msg := r.GetError().GetMessage(); strings.Contains(msg, r.GetUrl()) || len(msg) > 160 {
			t.Errorf("%s: message %q repeats the URL, which the result carries, or is long", r.GetUrl(), msg)
		}
	}
}

// An allowed network is fetched only on the ports allowed.
func TestGuardChecksPorts(t *testing.T) {
	web := newSite(t)
	c := config()
	c.AllowPorts = nil
	s := start(t, c)
	got := s.measureOK(t, &sitesizev1.MeasureRequest{Urls: []string{web.url("/size/1")}})
	if e := got[0].GetError(); e.GetCode() != sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_BLOCKED || !strings.Contains(e.GetMessage(), "--sitesize-allow-ports") {
		t.Fatalf("a port not allowed: %v", e)
	}
	if n := web.hitsOf("/size/1"); n != 0 {
		t.Fatalf("the site was asked %d times", n)
	}
}

// The guard checks every dial: with only 127.0.0.2 allowed, a page there that redirects to
// 127.0.0.1 is refused, and 127.0.0.1 never sees a request.
func TestGuardChecksEveryRedirect(t *testing.T) {
	inside := newSite(t) // on 127.0.0.1
	door := newUnstartedSite(t, "127.0.0.2:0")
	door.Start()
	c := config()
	c.Allow = sitesize.Prefixes{netip.MustParsePrefix("127.0.0.2/32")}
	s := start(t, c)
	got := s.measureOK(t, &sitesizev1.MeasureRequest{Urls: []string{
		door.url("/to?url=" + inside.url("/size/1")),
		door.url("/size/3"),
	}})
	if e := got[0].GetError(); e.GetCode() != sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_BLOCKED || !strings.Contains(e.GetMessage(), "127.0.0.1") {
		t.Fatalf("redirect to 127.0.0.1: %v", got[0])
	}
	if got[1].GetError() != nil || got[1].GetSize() != 3 {
		t.Fatalf("a page on the allowed 127.0.0.2: %v", got[1])
	}
	if n := door.hitsOf("/to"); n != 1 {
		t.Fatalf("the allowed site was asked %d times; want once", n)
	}
	if n := inside.hitsOf("/size/1"); n != 0 {
		t.Fatalf("the refused site was asked %d times", n)
	}
}

func TestAllowFlags(t *testing.T) {
	var p sitesize.Prefixes
	if err := p.Set("127.0.0.0/8, ::1,10.1.2.3/8"); err != nil {
		t.Fatal(err)
	}
	if err := p.Set("::ffff:192.168.0.0/112"); err != nil {
		t.Fatal(err)
	}
	if got := p.String(); got != "127.0.0.0/8,::1/128,10.0.0.0/8,192.168.0.0/16" {
		t.Errorf("--sitesize-allow = %q", got)
	}
	for _, bad := range []string{"", "localhost", "10.0.0.0/33", "fe80::1%eth0", "1.2.3.4/8/8"} {
		if err := new(sitesize.Prefixes).Set(bad); err == nil {
			t.Errorf("--sitesize-allow=%q was accepted", bad)
		}
	}

	var ports sitesize.Ports
	if err := ports.Set("8080, 9000-9099,1-1"); err != nil {
		t.Fatal(err)
	}
	if got := ports.String(); got != "8080,9000-9099,1" {
		t.Errorf("--sitesize-allow-ports = %q", got)
	}
	for _, bad := range []string{"", "0", "65536", "90-80", "http", "1-2-3", "-5", "+80"} {
		if err := new(sitesize.Ports).Set(bad); err == nil {
			t.Errorf("--sitesize-allow-ports=%q was accepted", bad)
		}
	}
}

// Whatever the allow flags accept prints back as a value they accept and read the same.
func FuzzAllowFlags(f *testing.F) {
	for _, s := range []string{"127.0.0.0/8", "::1", "10.0.0.1/8,fd00::/8", "::ffff:1.2.3.4", "80", "9000-9099,8080", "1-65535"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var p sitesize.Prefixes
		if p.Set(s) == nil {
			var again sitesize.Prefixes
			if err := again.Set(p.String()); err != nil || !slices.Equal(again, p) {
				t.Fatalf("--sitesize-allow=%q reads as %v, prints as %q, which reads as %v (%v)", s, p, p.String(), again, err)
			}
		}
		var ports sitesize.Ports
		if ports.Set(s) == nil {
			var again sitesize.Ports
			if err := again.Set(ports.String()); err != nil || !slices.Equal(again, ports) {
				t.Fatalf("--sitesize-allow-ports=%q reads as %v, prints as %q, which reads as %v (%v)", s, ports, ports.String(), again, err)
			}
			for _, r := range ports {
				if r.First == 0 || r.First > r.Last {
					t.Fatalf("--sitesize-allow-ports=%q holds %v", s, r)
				}
			}
		}
	})
}
