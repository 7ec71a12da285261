package sitesize_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/internal/e2e"
	"github.com/concur-dev/concur/internal/jitter"
	"github.com/concur-dev/concur/services/sitesize"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testJitter is on in every test: the pool and its fetches interleave differently each run.
const testJitter = 300 * time.Microsecond

// config returns the flags' defaults, with loopback and every port allowed so that the
// httptest servers can be fetched.
func config() sitesize.Config {
	var c sitesize.Config
	c.RegisterFlags(flag.NewFlagSet("test", flag.ContinueOnError))
	c.Allow = sitesize.Prefixes{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	c.AllowPorts = sitesize.Ports{{First: 1, Last: 65535}}
	return c
}

// server is the service on a real gRPC server on a loopback port, the same runtime concurd
// runs.
type server struct {
	svc     *sitesize.Service
	client  sitesizev1.SiteSizeServiceClient
	metrics *prometheus.Registry
	stop    func() error // shuts the server down gracefully and returns Serve's result
}

func start(t *testing.T, c sitesize.Config) *server {
	t.Helper()
	return startWith(t, c, nil)
}

// startWith is start with the fetcher's names looked up by r (nil: net.DefaultResolver).
func startWith(t *testing.T, c sitesize.Config, r *net.Resolver) *server {
	t.Helper()
	reg := prometheus.NewRegistry()
	svc, err := sitesize.New(c, sitesize.Deps{Jitter: jitter.New(testJitter), Metrics: reg, Resolver: r})
	if err != nil {
		t.Fatalf("sitesize.New: %v", err)
	}
	addr, stop := e2e.Serve(t, nil, svc)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	client := sitesizev1.NewSiteSizeServiceClient(e2e.Dial(t, addr))
	return &server{svc: svc, client: client, metrics: reg, stop: stop}
}

// measure calls Measure and returns every response and the status the stream ended with.
func (s *server) measure(t *testing.T, req *sitesizev1.MeasureRequest) ([]*sitesizev1.MeasureResponse, error) {
	t.Helper()
	stream, err := s.client.Measure(t.Context(), req)
	if err != nil {
		return nil, err
	}
	var out []*sitesizev1.MeasureResponse
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
}

// measureOK is measure for a call that must end well, returning responses by index.
func (s *server) measureOK(t *testing.T, req *sitesizev1.MeasureRequest) []*sitesizev1.MeasureResponse {
	t.Helper()
	out, err := s.measure(t, req)
	if err != nil {
		t.Fatalf("Measure: %v", err)
	}
	if len(out) != len(req.GetUrls()) {
		t.Fatalf("Measure sent %d results for %d URLs", len(out), len(req.GetUrls()))
	}
	byIndex := make([]*sitesizev1.MeasureResponse, len(out))
	for _, r := range out {
		i := r.GetIndex()
		if byIndex[i] != nil {
			t.Fatalf("two results for index %d", i)
		}
		if r.GetUrl() != req.GetUrls()[i] {
			t.Fatalf("result %d carries URL %q, want %q", i, r.GetUrl(), req.GetUrls()[i])
		}
		byIndex[i] = r
	}
	return byIndex
}

// counter reads a counter or gauge of the service, summed over its labels, or for one label
// value when given.
func (s *server) counter(t *testing.T, name string, label ...string) float64 {
	t.Helper()
	families, err := s.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if len(label) > 0 && (len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() != label[0]) {
				continue
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// eventually waits for cond, failing the test if it does not hold within a minute: a guard
// against hanging, not a measure of speed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// receive waits for a value from ch, failing the test rather than hanging.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(time.Minute):
		t.Fatalf("still waiting for %s", what)
		panic("unreachable")
	}
}

// site is a test web server whose pages the tests control:
//
//	/size/N        N bytes with a Content-Length
//	/chunked/N     N bytes, chunked
//	/gzip          a gzip-encoded body, served as is
//	/gate/NAME     waits until the test opens gate NAME, then answers NAME
//	/redirect/N    redirects N times, then answers "done"
//	/to?url=U      redirects to U
//	/status/N      answers with status N and a body of "status N"
//	/short         promises 100 bytes, sends 10 and hangs up
type site struct {
	*httptest.Server
	arrived chan arrival // every request as it arrives
	gone    chan string  // gate requests whose context ended before their gate opened

	mu       sync.Mutex
	gates    map[string]chan struct{}
	hits     map[string]int
	encoding []string // the Accept-Encoding of each request
	opened   atomic.Int64
}

// arrival is a request as it reached the site, with how many gates were open by then.
type arrival struct {
	path   string
	opened int64
}

func newSite(t *testing.T) *site {
	t.Helper()
	s := newUnstartedSite(t, "127.0.0.1:0")
	s.Start()
	return s
}

func newUnstartedSite(t *testing.T, addr string) *site {
	t.Helper()
	s := &site{
		arrived: make(chan arrival, 10000),
		gone:    make(chan string, 10000),
		gates:   map[string]chan struct{}{},
		hits:    map[string]int{},
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s.Server = &httptest.Server{Listener: lis, Config: &http.Server{Handler: s}}
	t.Cleanup(func() {
		s.mu.Lock()
		for _, g := range s.gates {
			select {
			case <-g:
			default:
				close(g)
			}
		}
		s.mu.Unlock()
		s.Close()
	})
	return s
}

func (s *site) gate(name string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.gates[name]
	if !ok {
		g = make(chan struct{})
		s.gates[name] = g
	}
	return g
}

// open lets the request for /gate/NAME answer.
func (s *site) open(name string) {
	s.opened.Add(1)
	close(s.gate(name))
}

func (s *site) hitsOf(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

func (s *site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.hits[r.URL.Path]++
	s.encoding = append(s.encoding, r.Header.Get("Accept-Encoding"))
	s.mu.Unlock()
	s.arrived <- arrival{r.URL.Path, s.opened.Load()}
	head, arg, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	n, _ := strconv.ParseInt(arg, 10, 64)
	switch head {
	case "size":
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		writeN(w, n)
	case "chunked":
		for n > 0 {
			chunk := min(n, 1000)
			writeN(w, chunk)
			w.(http.Flusher).Flush()
			n -= chunk
		}
	case "gzip":
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(gzipped)
	case "gate":
		select {
		case <-s.gate(arg):
			io.WriteString(w, arg)
		case <-r.Context().Done():
			s.gone <- arg
		}
	case "redirect":
		if n == 0 {
			io.WriteString(w, "done")
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/redirect/%d", n-1), http.StatusFound)
	case "to":
		http.Redirect(w, r, r.URL.Query().Get("url"), http.StatusFound)
	case "status":
		w.WriteHeader(int(n))
		fmt.Fprintf(w, "status %d", n)
	case "short":
		w.Header().Set("Content-Length", "100")
		w.Write(make([]byte, 10))
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	default:
		http.NotFound(w, r)
	}
}

// gzipped is a page of 700 bytes, gzip-compressed to far fewer.
var gzipped = func() []byte {
	var b bytes.Buffer
	z := gzip.NewWriter(&b)
	z.Write(bytes.Repeat([]byte("hello, "), 100))
	z.Close()
	return b.Bytes()
}()

var block = bytes.Repeat([]byte("concur!\n"), 8<<10) // 64 KiB

// writeN writes n bytes from a fixed block: a gigabyte is generated, never stored.
func writeN(w io.Writer, n int64) {
	for n > 0 {
		k := min(n, int64(len(block)))
		if _, err := w.Write(block[:k]); err != nil {
			return
		}
		n -= k
	}
}

// url returns the site's URL for path.
func (s *site) url(path string) string { return s.URL + path }
