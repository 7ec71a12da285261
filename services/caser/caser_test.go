package caser_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	caserv1 "github.com/concur-dev/concur/api/concur/caser/v1"
	"github.com/concur-dev/concur/api/violation"
	"github.com/concur-dev/concur/internal/e2e"
	"github.com/concur-dev/concur/internal/jitter"
	"github.com/concur-dev/concur/internal/serve"
	"github.com/concur-dev/concur/internal/testkit"
	"github.com/concur-dev/concur/services/caser"
	"github.com/concur-dev/concur/services/caser/pycase"
)

func TestMain(m *testing.M) { e2e.Main(m) }

// testTimeout bounds every test's waiting, so that a bug fails a test instead of hanging it;
// it is never a performance assertion.
const testTimeout = 2 * time.Minute

// defaults is the caser's configuration with its flags' defaults.
func defaults() caser.Config {
	var c caser.Config
	c.RegisterFlags(flag.NewFlagSet("test", flag.ContinueOnError))
	return c
}

// start serves a caser with cfg on a loopback port, with the stack concurd runs (serve's
// interceptors, validation included), until the test ends or stop is called; stop returns
// Serve's result. Nothing the test started may outlive it.
func start(t *testing.T, cfg caser.Config, j jitter.Jitter) (addr string, stop func() error) {
	t.Helper()
	testkit.NoLeaks(t) // first, so that it checks last
	svc, err := caser.New(cfg, caser.Deps{Jitter: j})
	if err != nil {
		t.Fatalf("caser.New: %v", err)
	}
	return e2e.Serve(t, nil, svc)
}

func dial(t *testing.T, addr string, opts ...grpc.DialOption) caserv1.CaserServiceClient {
	t.Helper()
	return caserv1.NewCaserServiceClient(e2e.Dial(t, addr, opts...))
}

// session is the client's side of a Session, for tests.
type session struct {
	t      *testing.T
	stream caserv1.CaserService_SessionClient
	beats  []time.Time // the announcements received so far
}

// open starts a session and checks its welcome.
func open(t *testing.T, client caserv1.CaserServiceClient) *session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	stream, err := client.Session(ctx)
	if err != nil {
		t.Fatalf("Session: %v", err)
	}
	s := &session{t: t, stream: stream}
	w := s.recv().GetWelcome()
	if w.GetMode() != caserv1.Mode_MODE_UPPER || w.GetText() != "<welcome: starting in upper case mode>" {
		t.Fatalf("the session opened with %v, want the talk's welcome", w)
	}
	return s
}

func (s *session) send(line string) {
	s.t.Helper()
	if err := s.stream.Send(&caserv1.SessionRequest{Line: line}); err != nil {
		s.t.Fatalf("send %q: %v", line, err)
	}
}

func (s *session) recv() *caserv1.SessionResponse {
	s.t.Helper()
	resp, err := s.stream.Recv()
	if err != nil {
		s.t.Fatalf("recv: %v", err)
	}
	return resp
}

// reply returns the next message that is not an announcement, recording announcements.
func (s *session) reply() *caserv1.SessionResponse {
	s.t.Helper()
	for {
		resp := s.recv()
		a := resp.GetAnnouncement()
		if a == nil {
			return resp
		}
		s.beats = append(s.beats, a.GetTime().AsTime())
	}
}

// ask sends a line and returns the reply to it.
func (s *session) ask(line string) *caserv1.SessionResponse {
	s.t.Helper()
	s.send(line)
	return s.reply()
}

// ended checks that the stream has ended with code.
func (s *session) ended(code codes.Code) error {
	s.t.Helper()
	resp, err := s.stream.Recv()
	if err == nil {
		s.t.Fatalf("received %v after the session should have ended", resp)
	}
	if code == codes.OK && !errors.Is(err, io.EOF) || code != codes.OK && status.Code(err) != code {
		s.t.Fatalf("the session ended with %v, want %v", err, code)
	}
	return err
}

func casedOf(t *testing.T, resp *caserv1.SessionResponse, line string, mode caserv1.Mode) {
	t.Helper()
	c := resp.GetCased()
	want := pycase.Upper(line)
	if mode == caserv1.Mode_MODE_TITLE {
		want = pycase.Title(line)
	}
	if c.GetLine() != line || c.GetText() != want || c.GetMode() != mode {
		t.Fatalf("%q answered with %v, want %q cased %v", line, resp, want, mode)
	}
}

// The talk's session: welcome, "hello" upper-cased, "title", "hello world" title-cased,
// "quit" answered with goodbye, and the stream ends.
func TestTalkSession(t *testing.T) {
	addr, _ := start(t, defaults(), jitter.New(0))
	s := open(t, dial(t, addr))

	casedOf(t, s.ask("hello"), "hello", caserv1.Mode_MODE_UPPER)
	if got := s.ask("hello").GetCased().GetText(); got != "HELLO" {
		t.Fatalf("hello upper-cased is %q", got)
	}
	if m := s.ask("title").GetModeChanged(); m.GetMode() != caserv1.Mode_MODE_TITLE || m.GetText() != "<switching to title case mode>" {
		t.Fatalf("title answered with %v", m)
	}
	if c := s.ask("hello world").GetCased(); c.GetText() != "Hello World" || c.GetMode() != caserv1.Mode_MODE_TITLE {
		t.Fatalf("hello world in title mode answered with %v", c)
	}
	if m := s.ask("title").GetModeChanged(); m.GetMode() != caserv1.Mode_MODE_TITLE {
		t.Fatalf("a switch to the mode already on answered with %v", m)
	}
	if m := s.ask("upper").GetModeChanged(); m.GetMode() != caserv1.Mode_MODE_UPPER || m.GetText() != "<switching to upper case mode>" {
		t.Fatalf("upper answered with %v", m)
	}
	casedOf(t, s.ask("straße ﬁsh"), "straße ﬁsh", caserv1.Mode_MODE_UPPER)
	if g := s.ask("quit").GetGoodbye(); g.GetReason() != caserv1.GoodbyeReason_GOODBYE_REASON_QUIT || g.GetText() != "<goodbye: you said quit>" {
		t.Fatalf("quit answered with %v", g)
	}
	s.ended(codes.OK)
}

// The talk's two-user test (1:11:16): one session switches to title, the other does not,
// and each keeps its own mode, with the jitter shuffling the steps.
func TestSessionsKeepTheirOwnMode(t *testing.T) {
	addr, _ := start(t, defaults(), jitter.New(time.Millisecond))
	client := dial(t, addr)
	a, b := open(t, client), open(t, client)
	a.ask("title")
	for range 3 {
		casedOf(t, a.ask("they're bill's"), "they're bill's", caserv1.Mode_MODE_TITLE)
		casedOf(t, b.ask("they're bill's"), "they're bill's", caserv1.Mode_MODE_UPPER)
	}
	b.ask("title")
	a.ask("upper")
	casedOf(t, a.ask("hello world"), "hello world", caserv1.Mode_MODE_UPPER)
	casedOf(t, b.ask("hello world"), "hello world", caserv1.Mode_MODE_TITLE)
}

// Python's outputs (the pycase test data) through the Case RPC, in both modes, and in a
// session.
func TestCaseMatchesPython(t *testing.T) {
	b, err := os.ReadFile("pycase/testdata/python.json")
	if err != nil {
		t.Fatal(err)
	}
	var data struct {
		Cases []struct{ Text, Upper, Title string }
	}
	if err := json.Unmarshal(b, &data); err != nil {
		t.Fatal(err)
	}
	addr, _ := start(t, defaults(), jitter.New(0))
	client := dial(t, addr)
	ctx := context.Background()
	s := open(t, client)
	s.ask("title")
	for _, c := range data.Cases {
		for mode, want := range map[caserv1.Mode]string{caserv1.Mode_MODE_UPPER: c.Upper, caserv1.Mode_MODE_TITLE: c.Title} {
			resp, err := client.Case(ctx, &caserv1.CaseRequest{Text: c.Text, Mode: mode})
			if err != nil || resp.GetText() != want || resp.GetMode() != mode {
				t.Errorf("Case(%+q, %v) = %v, %v; Python gives %+q", c.Text, mode, resp, err, want)
			}
		}
		if got := s.ask(c.Text).GetCased().GetText(); got != c.Title {
			t.Errorf("session in title mode cased %+q as %+q; Python gives %+q", c.Text, got, c.Title)
		}
	}
	resp, err := client.Case(ctx, &caserv1.CaseRequest{Text: "hello"})
	if err != nil || resp.GetText() != "HELLO" || resp.GetMode() != caserv1.Mode_MODE_UPPER {
		t.Fatalf("Case without a mode = %v, %v; want HELLO in MODE_UPPER", resp, err)
	}
}

// The runtime checks the caser's length limit beside Validate: one INVALID_ARGUMENT names
// every violation, in field order, whichever check found it.
var _ serve.LimitChecker = (*caser.Service)(nil)

func TestCaseRefusesBadInput(t *testing.T) {
	cfg := defaults()
	cfg.MaxLineBytes = 8
	addr, _ := start(t, cfg, jitter.New(0))
	client := dial(t, addr)
	for _, tt := range []struct {
		req    *caserv1.CaseRequest
		fields []string
	}{
		{&caserv1.CaseRequest{Text: "hello", Mode: 7}, []string{"mode"}},
		{&caserv1.CaseRequest{Text: "123456789"}, []string{"text"}},
		// Validate finds the mode, the limit the text, which comes first in the request.
		{&caserv1.CaseRequest{Text: "123456789", Mode: 7}, []string{"text", "mode"}},
	} {
		t.Run(fmt.Sprintf("%+q mode %d", tt.req.GetText(), tt.req.GetMode()), func(t *testing.T) {
			_, err := client.Case(context.Background(), tt.req)
			if status.Code(err) != codes.InvalidArgument || !slices.Equal(violation.Fields(err), tt.fields) {
				t.Errorf("Case(%v) = %v, want INVALID_ARGUMENT on %q", tt.req, err, tt.fields)
			}
		})
	}
	if resp, err := client.Case(context.Background(), &caserv1.CaseRequest{Text: "12345678"}); err != nil || resp.GetText() != "12345678" {
		t.Errorf("Case of a text at the limit = %v, %v", resp, err)
	}
}

// A line over the limit ends the session with INVALID_ARGUMENT naming the line, after the
// replies to the lines before it. (Invalid UTF-8 never reaches the session: gRPC refuses the
// message while decoding it, see cmd/concurd's TestInvalidUTF8IsRefusedWhileDecoding.)
func TestSessionRefusesALineOverTheLimit(t *testing.T) {
	cfg := defaults()
	cfg.MaxLineBytes = 16
	addr, _ := start(t, cfg, jitter.New(0))
	client := dial(t, addr)
	s := open(t, client)
	s.send("fine")
	s.send(strings.Repeat("x", 17))
	casedOf(t, s.reply(), "fine", caserv1.Mode_MODE_UPPER)
	err := s.ended(codes.InvalidArgument)
	if !slices.Equal(violation.Fields(err), []string{"line"}) || !strings.Contains(status.Convert(err).Message(), "--caser-max-line-bytes") {
		t.Errorf("a line over the limit ended the session with %v, want a violation on line naming --caser-max-line-bytes", err)
	}
	s = open(t, client)
	casedOf(t, s.ask(strings.Repeat("é", 8)), strings.Repeat("é", 8), caserv1.Mode_MODE_UPPER) // 16 bytes
}

// A client that closes its side has had every line answered, and the stream ends cleanly.
func TestSessionEndsWhenTheClientCloses(t *testing.T) {
	addr, _ := start(t, defaults(), jitter.New(time.Millisecond))
	s := open(t, dial(t, addr))
	for _, line := range []string{"one", "title", "two"} {
		s.send(line)
	}
	if err := s.stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	casedOf(t, s.reply(), "one", caserv1.Mode_MODE_UPPER)
	s.reply()
	casedOf(t, s.reply(), "two", caserv1.Mode_MODE_TITLE)
	s.ended(codes.OK)
}

func TestIdleSessionGetsGoodbye(t *testing.T) {
	cfg := defaults()
	cfg.Idle = 50 * time.Millisecond
	addr, _ := start(t, cfg, jitter.New(0))
	s := open(t, dial(t, addr))
	g := s.reply().GetGoodbye()
	if g.GetReason() != caserv1.GoodbyeReason_GOODBYE_REASON_IDLE || g.GetText() != "<goodbye: no line for 50ms, closing the session>" {
		t.Fatalf("a silent session got %v, want an idle goodbye", g)
	}
	s.ended(codes.OK)
}

func checkAnnouncement(t *testing.T, a *caserv1.Announcement) {
	t.Helper()
	want := "The event loop is still running at: " + a.GetTime().AsTime().Local().Format("Mon Jan _2 15:04:05 2006")
	if a.GetText() != want || a.GetTime().AsTime().IsZero() {
		t.Fatalf("announcement %v, want the text %q", a, want)
	}
}

// Every open session hears the announcements, and a session whose client does not read,
// its flow-control window full and its Send blocked, delays no other session's.
func TestStuckSessionDelaysNoAnnouncement(t *testing.T) {
	cfg := defaults()
	cfg.Announce = 20 * time.Millisecond
	cfg.MaxLineBytes = 1 << 20
	addr, _ := start(t, cfg, jitter.New(0))

	// The stuck client's connection counts the bytes it takes in. Its windows are fixed at
	// 64 KiB, so once it has taken 64 KiB the server can send it nothing more until it reads.
	// The reply to a 100,000-byte line (the line and its casing) is larger than that window
	// and the stream's 64 KiB write quota together: once the reply is on its way, the
	// session's next Send blocks, and stays blocked.
	const window = 64 << 10
	conn := &countingConn{atLeast: window, reached: make(chan struct{})}
	stuck := open(t, dial(t, addr,
		grpc.WithInitialWindowSize(window), grpc.WithInitialConnWindowSize(window),
		grpc.WithContextDialer(conn.dial)))
	line := strings.Repeat("a", 100000)
	stuck.send(line)
	select {
	case <-conn.reached:
	case <-time.After(testTimeout):
		t.Fatalf("the stuck connection took in only %d bytes", conn.read.Load())
	}

	// While it stays stuck, every other session hears five announcements.
	client := dial(t, addr)
	others := make([]*session, 20)
	for i := range others {
		others[i] = open(t, client)
	}
	var wg sync.WaitGroup
	heard := make([][]time.Time, len(others))
	for i, s := range others {
		wg.Go(func() {
			for len(heard[i]) < 5 {
				resp, err := s.stream.Recv()
				if err != nil {
					t.Errorf("session %d: %v", i, err)
					return
				}
				checkAnnouncement(t, resp.GetAnnouncement())
				heard[i] = append(heard[i], resp.GetAnnouncement().GetTime().AsTime())
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	// Read at last: the reply is whole, and the session announces again, having skipped
	// the beats it was blocked through instead of queueing them: it sends at most one message
	// after the reply before blocking, and the newest beat once unblocked.
	casedOf(t, stuck.reply(), line, caserv1.Mode_MODE_UPPER)
	newest := slices.MaxFunc(heard[0], time.Time.Compare)
	for len(stuck.beats) == 0 || stuck.beats[len(stuck.beats)-1].Before(newest) {
		a := stuck.recv().GetAnnouncement()
		checkAnnouncement(t, a)
		stuck.beats = append(stuck.beats, a.GetTime().AsTime())
	}
	skipped := 0
	for _, beat := range heard[0] {
		if !slices.ContainsFunc(stuck.beats, beat.Equal) {
			skipped++
		}
	}
	if skipped < 3 {
		t.Fatalf("the stuck session announced %v; the others heard %v: it should have skipped at least 3", stuck.beats, heard[0])
	}
}

// countingConn is a client connection that counts the bytes it reads and closes reached
// once it has read atLeast.
type countingConn struct {
	net.Conn
	read    atomic.Int64
	atLeast int64
	reached chan struct{}
	once    sync.Once
}

func (c *countingConn) dial(ctx context.Context, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	c.Conn = conn
	return c, err
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.read.Add(int64(n)) >= c.atLeast {
		c.once.Do(func() { close(c.reached) })
	}
	return n, err
}

// A thousand sessions at once, each doing ten round trips with switches of mode, while
// announcements interleave and the jitter shuffles the steps: each session keeps its mode
// and gets its own answers. Run with -race.
func TestThousandSessions(t *testing.T) {
	cfg := defaults()
	// Every session hears every announcement: at 100ms they outnumbered the round trips
	// twenty to one and starved a loaded CI machine past the test's timeout.
	cfg.Announce = 500 * time.Millisecond
	addr, stop := start(t, cfg, jitter.New(200*time.Microsecond))
	client := dial(t, addr)
	var wg sync.WaitGroup
	for i := range 1000 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			stream, err := client.Session(ctx)
			if err != nil {
				t.Errorf("session %d: %v", i, err)
				return
			}
			if err := roundTrips(stream, i); err != nil {
				t.Errorf("session %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if err := stop(); err != nil {
		t.Fatalf("shutdown after a thousand sessions: %v", err)
	}
}

// roundTrips plays session i's script (welcome, ten lines, quit) and checks every answer.
func roundTrips(stream caserv1.CaserService_SessionClient, i int) error {
	next := func() (*caserv1.SessionResponse, error) {
		for {
			resp, err := stream.Recv()
			if err != nil || resp.GetAnnouncement() == nil {
				return resp, err
			}
		}
	}
	if resp, err := next(); err != nil || resp.GetWelcome() == nil {
		return fmt.Errorf("welcome: %v, %v", resp, err)
	}
	mode := caserv1.Mode_MODE_UPPER
	for n := range 10 {
		line := fmt.Sprintf("session %d, line %d: straße ﬁsh", i, n)
		switch (i + n) % 4 {
		case 1:
			line, mode = "title", caserv1.Mode_MODE_TITLE
		case 3:
			line, mode = "upper", caserv1.Mode_MODE_UPPER
		}
		if err := stream.Send(&caserv1.SessionRequest{Line: line}); err != nil {
			return err
		}
		resp, err := next()
		if err != nil {
			return err
		}
		want := pycase.Upper(line)
		if mode == caserv1.Mode_MODE_TITLE {
			want = pycase.Title(line)
		}
		if c := resp.GetCased(); c != nil && (c.GetText() != want || c.GetMode() != mode) ||
			c == nil && resp.GetModeChanged().GetMode() != mode {
			return fmt.Errorf("%q in %v answered with %v", line, mode, resp)
		}
	}
	if err := stream.Send(&caserv1.SessionRequest{Line: "quit"}); err != nil {
		return err
	}
	if resp, err := next(); err != nil || resp.GetGoodbye().GetReason() != caserv1.GoodbyeReason_GOODBYE_REASON_QUIT {
		return fmt.Errorf("quit: %v, %v", resp, err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("after goodbye: %v, want the end of the stream", err)
	}
	return nil
}

// Shutdown says goodbye to every open session, whether it is waiting for a line or not, and
// ends each stream, so the server stops cleanly.
func TestShutdownSaysGoodbye(t *testing.T) {
	addr, stop := start(t, defaults(), jitter.New(time.Millisecond))
	client := dial(t, addr)
	sessions := make([]*session, 100)
	for i := range sessions {
		sessions[i] = open(t, client)
		if i%2 == 0 {
			sessions[i].ask("title")
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("shutdown with open sessions: %v", err)
	}
	for _, s := range sessions {
		if g := s.reply().GetGoodbye(); g.GetReason() != caserv1.GoodbyeReason_GOODBYE_REASON_SHUTDOWN || g.GetText() != "<goodbye: the server is shutting down>" {
			t.Fatalf("an open session got %v at shutdown", g)
		}
		s.ended(codes.OK)
	}
}

func TestBadConfiguration(t *testing.T) {
	for _, tt := range []struct {
		mutate func(*caser.Config)
		says   string
	}{
		{func(c *caser.Config) { c.Announce = -time.Second }, "--caser-announce"},
		{func(c *caser.Config) { c.Idle = -time.Second }, "--caser-idle"},
		{func(c *caser.Config) { c.MaxLineBytes = 0 }, "--caser-max-line-bytes"},
	} {
		t.Run(tt.says, func(t *testing.T) {
			cfg := defaults()
			tt.mutate(&cfg)
			if _, err := caser.New(cfg, caser.Deps{}); err == nil || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("New(%+v) = %v, want an error about %s", cfg, err, tt.says)
			}
		})
	}
}

// Shutdown may be called again after the server's, while the session it said goodbye to is
// still open on the client's side.
func TestShutdownTwice(t *testing.T) {
	testkit.NoLeaks(t)
	svc, err := caser.New(defaults(), caser.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	addr, stop := e2e.Serve(t, nil, svc)
	open(t, dial(t, addr)).ask("hello")
	if err := stop(); err != nil {
		t.Fatalf("the server's shutdown: %v", err)
	}
	if err := svc.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown after the server's: %v", err)
	}
}
