// Package replicas proves that replicas behind one name share the load: three concurd
// processes serve sitesize and caser on 127.0.0.2, 127.0.0.3 and 127.0.0.4 with one port, a
// private /etc/hosts gives the three addresses one name, and a client dials
// dns:///concur-replicas.test:PORT through internal/dial, as every concur client does.
//
// It needs root: the test runs itself again under `unshare -m` (util-linux), in a mount
// namespace of its own where the private hosts file is bind-mounted over /etc/hosts, so that
// only that child process and the replicas it starts see it.
package replicas

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	caserv1 "github.com/concur-dev/concur/api/concur/caser/v1"
	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/internal/dial"
	"github.com/concur-dev/concur/internal/e2e"
	"github.com/concur-dev/concur/internal/testkit"
)

const (
	name = "concur-replicas.test"
	// inside marks the child that runs under the private hosts file.
	inside = "CONCUR_REPLICAS_INSIDE"
	// Body sizes of the test site's pages.
	fastSize, slowSize = 1000, 2000
)

var hosts = []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}

func TestMain(m *testing.M) { e2e.Main(m) }

func TestReplicas(t *testing.T) {
	if os.Getenv(inside) == "" {
		runUnderPrivateHosts(t)
		return
	}
	testkit.NoLeaks(t) // first, so that it checks last
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	if got, err := net.DefaultResolver.LookupHost(ctx, name); err != nil || !slices.Equal(got, hosts) {
		t.Fatalf("%s resolves to %v, %v; want %v: run this test through go test, which gives it the hosts file", name, got, err, hosts)
	}
	site := newSite(t)
	replicas := map[string]*e2e.Process{} // by host
	port := "0"
	for _, h := range hosts {
		p := e2e.StartConcurd(t, "--services=sitesize,caser", "--listen="+net.JoinHostPort(h, port), "--metrics-listen="+h+":0",
			"--sitesize-allow=127.0.0.1", "--sitesize-allow-ports="+site.port(), "--sitesize-timeout=1m", "--caser-announce=0")
		_, port, _ = net.SplitHostPort(p.Addr)
		replicas[h] = p
	}
	conn, err := dial.Config{Addr: "dns:///" + net.JoinHostPort(name, port)}.Dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	caser, sitesize := caserv1.NewCaserServiceClient(conn), sitesizev1.NewSiteSizeServiceClient(conn)

	t.Run("spread", func(t *testing.T) {
		// round_robin spreads calls over the replicas it has connected to: first, until each has
		// answered.
		warm, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		for answered := map[string]int{}; len(answered) < len(hosts); {
			var p peer.Peer
			if _, err := caser.Case(warm, &caserv1.CaseRequest{Text: "hello"}, grpc.Peer(&p)); err != nil {
				t.Fatalf("Case, until every replica has answered one: %v; answered so far: %v", err, answered)
			}
			answered[host(p.Addr)]++
		}
		spread(t, replicas, "Case", 300, func() error {
			_, err := caser.Case(ctx, &caserv1.CaseRequest{Text: "hello"})
			return err
		})
		spread(t, replicas, "Measure", 30, func() error {
			_, err := measure(ctx, sitesize, site.url("/fast"))
			return err
		})
		spread(t, replicas, "Session", 30, func() error {
			s, err := caser.Session(ctx)
			if err == nil {
				err = s.CloseSend() // and the server ends the session
			}
			for err == nil {
				_, err = s.Recv()
			}
			return ignore(err, io.EOF)
		})
	})

	t.Run("kill", func(t *testing.T) {
		// A Measure whose one fetch hangs has had no answer, so gRPC may retry it: the replica
		// with a Measure open is the one to kill.
		retried := make(chan error, 1)
		var retriedPeer peer.Peer
		go func() {
			sizes, err := measure(ctx, sitesize, site.url("/slow/retried"), grpc.Peer(&retriedPeer))
			if err == nil && !slices.Equal(sizes, []int64{slowSize}) {
				err = fmt.Errorf("sizes %v, want [%d]", sizes, slowSize)
			}
			retried <- err
		}()
		site.wait(t, ctx, "retried", 1, retried)
		victim := ""
		for h, p := range replicas {
			if metric(t, p, "grpc_server_started_total", `grpc_method="Measure"`) > metric(t, p, "grpc_server_handled_total", `grpc_method="Measure"`) {
				victim = h
			}
		}
		if victim == "" {
			t.Fatal("no replica has the hanging Measure open")
		}

		// Measures that have sent a result and sessions that have sent their welcome are
		// committed to their replica: one on each (round_robin takes them in turn).
		var measures []*openMeasure
		var sessions []*openSession
		for i := range len(hosts) {
			measures = append(measures, openCommittedMeasure(t, ctx, sitesize, site, fmt.Sprint("committed-", i)))
		}
		for range len(hosts) {
			sessions = append(sessions, openCommittedSession(t, ctx, caser))
		}
		if !slices.ContainsFunc(measures, func(m *openMeasure) bool { return m.host == victim }) ||
			!slices.ContainsFunc(sessions, func(s *openSession) bool { return s.host == victim }) {
			t.Fatalf("no Measure or no session open on %s, the replica to kill", victim)
		}

		load := startLoad(t, ctx, caser, 4)
		load.wait(t, 100)
		replicas[victim].Signal(t, syscall.SIGKILL)
		replicas[victim].Wait(ctx, t)
		load.killed()

		// The hanging Measure is sent again, to another replica, which fetches its page again.
		site.wait(t, ctx, "retried", 2, retried)
		site.releaseSlow()
		if err := <-retried; err != nil || host(retriedPeer.Addr) == victim {
			t.Errorf("the Measure open on the killed replica: %v, answered by %v; want its sizes from another replica", err, retriedPeer.Addr)
		}
		for _, m := range measures {
			err := m.finish()
			if hits := site.hits(m.page); m.host == victim && (status.Code(err) != codes.Unavailable || hits != 1) {
				t.Errorf("Measure committed to the killed replica: %v, its slow page fetched %d times; want Unavailable, fetched once", err, hits)
			} else if m.host != victim && err != nil {
				t.Errorf("Measure on %s: %v", m.host, err)
			}
		}
		for _, s := range sessions {
			err := s.again()
			if s.host == victim && status.Code(err) != codes.Unavailable || s.host != victim && err != nil {
				t.Errorf("session on %s (killed: %s) after the kill: %v; want Unavailable on the killed replica only", s.host, victim, err)
			}
		}

		load.wait(t, load.total()+300)
		byHost, errs := load.stop()
		t.Logf("Case calls started after the kill of %s, by replica: %v", victim, byHost)
		if len(errs) > 0 {
			t.Errorf("%d Case calls failed, the first: %v", len(errs), errs[0])
		}
		if byHost[victim] > 0 || len(byHost) != len(hosts)-1 {
			t.Errorf("Case calls started after the kill were answered by %v; want the two replicas left", byHost)
		}
	})
}

// spread makes n calls one after another and checks, in the replicas' metrics, that each
// replica handled at least a quarter of them (round_robin gives each a third).
func spread(t *testing.T, replicas map[string]*e2e.Process, method string, n int, call func() error) {
	t.Helper()
	label := fmt.Sprintf("grpc_method=%q", method)
	before := map[string]int{}
	for h, p := range replicas {
		before[h] = metric(t, p, "grpc_server_handled_total", label)
	}
	for range n {
		if err := call(); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
	}
	got := map[string]int{}
	for h, p := range replicas {
		got[h] = metric(t, p, "grpc_server_handled_total", label) - before[h]
	}
	t.Logf("%d %s calls, by replica: %v", n, method, got)
	for h, c := range got {
		if c < n/4 {
			t.Errorf("%s handled %d of %d %s calls, want a third", h, c, n, method)
		}
	}
}

// measure measures urls and returns their sizes in request order.
func measure(ctx context.Context, c sitesizev1.SiteSizeServiceClient, urls []string, opts ...grpc.CallOption) ([]int64, error) {
	stream, err := c.Measure(ctx, &sitesizev1.MeasureRequest{Urls: urls}, opts...)
	if err != nil {
		return nil, err
	}
	sizes := make([]int64, len(urls))
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			return sizes, nil
		}
		if err != nil {
			return nil, err
		}
		if r.GetError() != nil {
			return nil, fmt.Errorf("%s: %s", r.GetUrl(), r.GetError().GetMessage())
		}
		sizes[r.GetIndex()] = r.GetSize()
	}
}

// openMeasure is a Measure of a fast page and a slow one that has sent the fast page's result.
type openMeasure struct {
	stream sitesizev1.SiteSizeService_MeasureClient
	page   string // the slow page
	host   string // the replica it is committed to
}

func openCommittedMeasure(t *testing.T, ctx context.Context, c sitesizev1.SiteSizeServiceClient, s *site, page string) *openMeasure {
	t.Helper()
	stream, err := c.Measure(ctx, &sitesizev1.MeasureRequest{Urls: slices.Concat(s.url("/fast"), s.url("/slow/"+page))})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := stream.Recv(); err != nil || r.GetSize() != fastSize {
		t.Fatalf("the fast page's result: %v, %v", r, err)
	}
	s.wait(t, ctx, page, 1, nil)
	p, _ := peer.FromContext(stream.Context())
	return &openMeasure{stream, page, host(p.Addr)}
}

// finish reads the slow page's result and the end of the stream.
func (m *openMeasure) finish() error {
	r, err := m.stream.Recv()
	if err != nil {
		return err
	}
	if r.GetSize() != slowSize {
		return fmt.Errorf("the slow page's result: %v", r)
	}
	if _, err := m.stream.Recv(); err != io.EOF {
		return fmt.Errorf("after the last result: %v", err)
	}
	return nil
}

// openSession is a caser session that has sent its welcome.
type openSession struct {
	stream caserv1.CaserService_SessionClient
	host   string
}

func openCommittedSession(t *testing.T, ctx context.Context, c caserv1.CaserServiceClient) *openSession {
	t.Helper()
	stream, err := c.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := stream.Recv(); err != nil || r.GetWelcome() == nil {
		t.Fatalf("the session's first message: %v, %v; want the welcome", r, err)
	}
	p, _ := peer.FromContext(stream.Context())
	return &openSession{stream, host(p.Addr)}
}

// again sends a line, reads its casing and ends the session.
func (s *openSession) again() error {
	if err := s.stream.Send(&caserv1.SessionRequest{Line: "again"}); err != nil && err != io.EOF {
		return err // io.EOF: the stream has ended, and Recv says why
	}
	r, err := s.stream.Recv()
	if err != nil {
		return err
	}
	if r.GetCased().GetText() != "AGAIN" {
		return fmt.Errorf("the answer to a line: %v", r)
	}
	s.stream.CloseSend()
	for err == nil {
		_, err = s.stream.Recv()
	}
	return ignore(err, io.EOF)
}

// load is Case calls made one after another by several goroutines until stopped.
type load struct {
	calls  atomic.Int64
	after  atomic.Bool // the replica is dead
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	byHost map[string]int // the replicas that answered calls started after the kill
	errs   []error
}

func startLoad(t *testing.T, ctx context.Context, c caserv1.CaserServiceClient, workers int) *load {
	ctx, cancel := context.WithCancel(ctx)
	l := &load{cancel: cancel, byHost: map[string]int{}}
	t.Cleanup(func() { l.stop() }) // for a test that fails before it stops the load
	for range workers {
		l.wg.Go(func() {
			for ctx.Err() == nil {
				after := l.after.Load()
				var p peer.Peer
				_, err := c.Case(ctx, &caserv1.CaseRequest{Text: "load"}, grpc.Peer(&p))
				if ctx.Err() != nil {
					return // stopped
				}
				l.mu.Lock()
				// A call in flight at the kill may have had the start of its answer from the
				// killed replica, and gRPC retries no call whose answer has begun: it may
				// fail, but only with UNAVAILABLE. A call started after the kill must not.
				if err != nil && (after || status.Code(err) != codes.Unavailable) {
					l.errs = append(l.errs, err)
				} else if err == nil && after {
					l.byHost[host(p.Addr)]++
				}
				l.mu.Unlock()
				l.calls.Add(1)
			}
		})
	}
	return l
}

func (l *load) killed()      { l.after.Store(true) }
func (l *load) total() int64 { return l.calls.Load() }

// wait waits until n calls have been made in all, or the load stopped early.
func (l *load) wait(t *testing.T, n int64) {
	t.Helper()
	for l.calls.Load() < n {
		l.mu.Lock()
		failed := len(l.errs) > 0
		l.mu.Unlock()
		if failed {
			return // stop says what failed
		}
		time.Sleep(time.Millisecond)
	}
}

func (l *load) stop() (byHost map[string]int, errs []error) {
	l.cancel()
	l.wg.Wait()
	return l.byHost, l.errs
}

// site is a web site for the replicas to measure: /fast answers at once, /slow/PAGE once
// releaseSlow is called, and it counts the requests for each slow page.
type site struct {
	srv     *httptest.Server
	release chan struct{}
	once    sync.Once

	mu      sync.Mutex
	count   map[string]int
	arrival chan struct{} // closed, and replaced, at each request for a slow page
}

func newSite(t *testing.T) *site {
	s := &site{release: make(chan struct{}), count: map[string]int{}, arrival: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/fast", func(w http.ResponseWriter, _ *http.Request) { w.Write(make([]byte, fastSize)) })
	mux.HandleFunc("/slow/{page}", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.count[r.PathValue("page")]++
		close(s.arrival)
		s.arrival = make(chan struct{})
		s.mu.Unlock()
		select {
		case <-s.release:
			w.Write(make([]byte, slowSize))
		case <-r.Context().Done(): // the replica that asked is gone
		}
	})
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	t.Cleanup(s.releaseSlow) // before Close, which waits for the handlers
	return s
}

func (s *site) url(path string) []string { return []string{s.srv.URL + path} }

func (s *site) port() string { return s.srv.URL[strings.LastIndex(s.srv.URL, ":")+1:] }

func (s *site) releaseSlow() { s.once.Do(func() { close(s.release) }) }

func (s *site) hits(page string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[page]
}

// wait waits until the slow page has been asked for n times; the call that asks for it ends
// the wait, and the test, if it ends first with its error on ended.
func (s *site) wait(t *testing.T, ctx context.Context, page string, n int, ended <-chan error) {
	t.Helper()
	for {
		s.mu.Lock()
		got, arrival := s.count[page], s.arrival
		s.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-arrival:
		case err := <-ended:
			t.Fatalf("/slow/%s asked for %d times, want %d; the call asking for it ended: %v", page, got, n, err)
		case <-ctx.Done():
			t.Fatalf("/slow/%s asked for %d times, want %d", page, got, n)
		}
	}
}

// metric sums the samples of a Prometheus counter that a replica serves whose labels hold all
// of labels.
func metric(t *testing.T, p *e2e.Process, name string, labels ...string) int {
	t.Helper()
	sum := 0
	for line := range strings.Lines(e2e.Metrics(t, p.MetricsAddr)) {
		if !strings.HasPrefix(line, name+"{") || slices.ContainsFunc(labels, func(l string) bool { return !strings.Contains(line, l) }) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(line[strings.LastIndex(line, " "):]), 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += int(v)
	}
	return sum
}

func host(addr net.Addr) string {
	if addr == nil {
		return ""
	}
	h, _, _ := net.SplitHostPort(addr.String())
	return h
}

func ignore(err, want error) error {
	if errors.Is(err, want) {
		return nil
	}
	return err
}

// runUnderPrivateHosts runs this test again in a mount namespace of its own, with a hosts
// file that gives the name the three replicas' addresses bind-mounted over /etc/hosts.
func runUnderPrivateHosts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("test/replicas needs root: it runs itself under unshare -m (util-linux) to bind-mount a private /etc/hosts")
	}
	for _, cmd := range []string{"unshare", "mount"} {
		if _, err := exec.LookPath(cmd); err != nil {
			t.Fatalf("test/replicas needs %s, from util-linux: %v", cmd, err)
		}
	}
	system, err := os.ReadFile("/etc/hosts")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "hosts")
	var b strings.Builder
	b.Write(system)
	for _, h := range hosts {
		fmt.Fprintf(&b, "\n%s %s", h, name)
	}
	if err := os.WriteFile(file, []byte(b.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--mount", "--propagation", "private", "sh", "-c", `mount --bind "$0" /etc/hosts && exec "$@"`,
		file, self, "-test.run=^" + t.Name() + "$", "-test.v=" + strconv.FormatBool(testing.Verbose())}
	if d, ok := t.Deadline(); ok {
		args = append(args, "-test.timeout="+time.Until(d).String())
	}
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), inside+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("under a private /etc/hosts: %v\n> %s", err, strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "\n> "))
	}
	// Quoted, so that a reader of go test's output takes the child's lines for a log.
	t.Logf("under a private /etc/hosts:\n> %s", strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "\n> "))
}
