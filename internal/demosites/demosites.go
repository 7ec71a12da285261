// Package demosites serves the talk's list of sites on loopback: each page has the size the
// talk measured for that site and answers after a delay like a real site's, so that the
// sitesize demo (clients/talk) and its tests show what concurrency buys with no network.
package demosites

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Site is one page of the demo: its path is "/" and the talk's host name.
type Site struct {
	Host  string
	Size  int
	Delay time.Duration
}

// Sites is the talk's list, in the talk's order, with the sizes its imap_unordered run
// printed; cnbc is there twice, as in the talk. The delays add up to about 2.5 seconds, so
// that one fetch after another takes that long and ten at a time well under a second.
var Sites = []Site{
	{"www.yahoo.com", 439968, 240 * time.Millisecond},
	{"www.cnn.com", 1133779, 300 * time.Millisecond},
	{"www.python.org", 49694, 120 * time.Millisecond},
	{"www.jython.org", 10286, 80 * time.Millisecond},
	{"www.pypy.org", 5539, 60 * time.Millisecond},
	{"www.perl.org", 12397, 90 * time.Millisecond},
	{"www.cisco.com", 93949, 150 * time.Millisecond},
	{"www.facebook.com", 127925, 200 * time.Millisecond},
	{"www.twitter.com", 385266, 220 * time.Millisecond},
	{"arstechnica.com", 76194, 130 * time.Millisecond},
	{"www.reuters.com", 182219, 180 * time.Millisecond},
	{"abcnews.go.com", 199946, 170 * time.Millisecond},
	{"www.cnbc.com", 1679107, 280 * time.Millisecond},
	{"www.cnbc.com", 1679107, 280 * time.Millisecond},
}

// Server serves Sites over HTTP.
type Server struct {
	srv  *http.Server
	addr net.Addr
	done chan struct{}
}

// Start serves the demo sites on addr (host:port; port 0 picks a free one).
func Start(addr string) (*Server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("demo sites: %w", err)
	}
	mux := http.NewServeMux()
	served := map[string]bool{}
	for _, site := range Sites {
		if served[site.Host] {
			continue // the same page, listed twice
		}
		served[site.Host] = true
		page := bytes.Repeat([]byte("x"), site.Size)
		mux.HandleFunc("GET /"+site.Host+"/{$}", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(site.Delay):
			case <-r.Context().Done():
				return
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write(page)
		})
	}
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, addr: lis.Addr(), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.srv.Serve(lis)
	}()
	return s, nil
}

// Addr is the address the sites are served on.
func (s *Server) Addr() net.Addr { return s.addr }

// Port is the port the sites are served on.
func (s *Server) Port() int { return s.addr.(*net.TCPAddr).Port }

// URLs are the sites' addresses, in the order of Sites.
func (s *Server) URLs() []string {
	urls := make([]string, len(Sites))
	for i, site := range Sites {
		urls[i] = "http://" + s.addr.String() + "/" + site.Host + "/"
	}
	return urls
}

// Close stops serving: it lets the requests in flight finish (each within its delay), then
// returns once the server has stopped.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.srv.Close())
	}
	<-s.done
	return err
}

// Fetch reads a page with a plain GET and returns the bytes of its body: the talk's
// sitesize(), the client-side way the sitesize service is compared with.
func Fetch(ctx context.Context, client *http.Client, url string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return io.Copy(io.Discard, resp.Body)
}
