// Package observability proves what an operator of concurd relies on: /metrics of a real
// concurd after known work shows each owner's series with the values the work implies; the
// Grafana dashboard and the Prometheus alert rules ask only for series concurd shows; the
// rules pass promtool's checks and unit tests; logs write durations readably.
package observability

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	caserv1 "github.com/concur-dev/concur/api/concur/caser/v1"
	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/internal/e2e"
)

func TestMain(m *testing.M) { e2e.Main(m) }

// One concurd runs every service and does known work on each; its /metrics then shows each
// owner's series with the values that work implies, and every expression of the dashboard and
// of the alert rules asks only for series that /metrics shows.
func TestMetricsAfterKnownWork(t *testing.T) {
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "twelve bytes")
	}))
	t.Cleanup(site.Close)
	_, port, _ := net.SplitHostPort(site.Listener.Addr().String())

	p := e2e.StartConcurd(t, "--metrics-listen=127.0.0.1:0",
		"--printer-file="+filepath.Join(t.TempDir(), "printed.txt"), "--printer-stdout=false",
		"--printer-queue=500", "--printer-history=1",
		"--caser-announce=200ms", "--caser-idle=2s",
		"--sitesize-allow=127.0.0.1/32", "--sitesize-allow-ports="+port)
	conn := e2e.Dial(t, p.Addr)
	ctx := t.Context()

	// The counter: five increments, printed (Join waits for the printer's receipts).
	counter := counterv1.NewCounterServiceClient(conn)
	for range 5 {
		if _, err := counter.Increment(ctx, &counterv1.IncrementRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := counter.Join(ctx, &counterv1.JoinRequest{}); err != nil {
		t.Fatal(err)
	}

	// The printer: three jobs and one resent, then a Tail cut off: with a history of one job,
	// a batch of two written while it waits leaves it behind.
	printer := printerv1.NewPrinterServiceClient(conn)
	for _, seq := range []uint64{1, 2, 2, 3} {
		if _, err := printer.Print(ctx, &printerv1.PrintRequest{Lines: []string{"line"}, Source: "test", SourceSequence: seq}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := printer.Join(ctx, &printerv1.JoinRequest{}); err != nil {
		t.Fatal(err)
	}
	tail, err := printer.Tail(ctx, &printerv1.TailRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tail.Recv(); err != nil {
		t.Fatal(err)
	}
	open := scrapeMetrics(t, p.MetricsAddr)
	stream, err := printer.PrintStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	two := &printerv1.PrintJob{Lines: []string{"line"}}
	if err := stream.Send(&printerv1.PrintStreamRequest{Jobs: []*printerv1.PrintJob{two, two}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil { // the receipts: both jobs are written
		t.Fatal(err)
	}
	stream.CloseSend()
	if _, err := tail.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("Tail after a batch of two with a history of one: %v, want RESOURCE_EXHAUSTED", err)
	}

	// The caser: one session says three lines, the last quit; another idles out. Each
	// counts the announcements it hears.
	caser := caserv1.NewCaserServiceClient(conn)
	var announced int
	quit, during := session(t, caser, p.MetricsAddr, &announced, "hello", "title", "quit")
	idle, _ := session(t, caser, p.MetricsAddr, &announced)
	if quit != caserv1.GoodbyeReason_GOODBYE_REASON_QUIT || idle != caserv1.GoodbyeReason_GOODBYE_REASON_IDLE {
		t.Fatalf("the sessions ended with goodbyes %v and %v, want QUIT and IDLE", quit, idle)
	}
	if announced == 0 {
		t.Fatal("no session heard an announcement in 2s at --caser-announce=200ms")
	}

	// sitesize: a URL measured, and one refused.
	sitesize := sitesizev1.NewSiteSizeServiceClient(conn)
	measure, err := sitesize.Measure(ctx, &sitesizev1.MeasureRequest{Urls: []string{site.URL, "http://127.0.0.2:" + port + "/"}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := measure.Recv(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}

	s := scrapeMetrics(t, p.MetricsAddr)
	t.Run("serving", func(t *testing.T) {
		for _, svc := range []string{"concur.printer.v1.PrinterService", "concur.counter.v1.CounterService", "concur.sitesize.v1.SiteSizeService", "concur.caser.v1.CaserService"} {
			s.want(t, 1, "concur_service_serving", "service", svc)
		}
	})
	t.Run("counter", func(t *testing.T) {
		s.want(t, 5, "concur_counter_increments_total")
		s.want(t, 0, "concur_counter_outbox_jobs")
		s.want(t, 100000, "concur_counter_outbox_max_jobs")
		s.want(t, 0, "concur_counter_outbox_oldest_age_seconds")
		s.want(t, 0, "concur_counter_forwarder_resent_jobs_total")
		if n := s.value(t, "concur_counter_commit_seconds_count"); n < 1 || n > 5 {
			t.Errorf("concur_counter_commit_seconds_count = %v, want 1 to 5 commits for 5 increments", n)
		}
	})
	t.Run("printer", func(t *testing.T) {
		// 5 jobs from the counter, 3 printed and 1 resent, 2 in one message.
		s.want(t, 10, "concur_printer_batch_jobs_sum")
		s.want(t, 1, "concur_printer_duplicate_jobs_total")
		s.want(t, 0, "concur_printer_queue_jobs")
		s.want(t, 0, "concur_printer_queue_bytes")
		s.want(t, 500, "concur_printer_queue_max_jobs")
		s.want(t, 16<<20, "concur_printer_queue_max_bytes")
		batches := s.value(t, "concur_printer_batch_jobs_count")
		if batches < 3 || batches > 9 {
			t.Errorf("concur_printer_batch_jobs_count = %v, want 3 to 9 batches of 10 jobs (Joins split them; the two of one message share one)", batches)
		}
		s.want(t, batches, "concur_printer_write_seconds_count")
		s.want(t, batches, "concur_printer_fsync_seconds_count")
		s.want(t, batches, "concur_printer_batch_jobs_bucket", "le", "+Inf")
		open.want(t, 1, "concur_printer_tail_readers")
		s.want(t, 0, "concur_printer_tail_readers")
		open.want(t, 0, "concur_printer_tail_readers_cut_off_total")
		s.want(t, 1, "concur_printer_tail_readers_cut_off_total")
	})
	t.Run("caser", func(t *testing.T) {
		during.want(t, 1, "concur_caser_sessions")
		s.want(t, 0, "concur_caser_sessions")
		s.want(t, 3, "concur_caser_lines_total")
		s.want(t, float64(announced), "concur_caser_announcements_total")
		s.want(t, 1, "concur_caser_goodbyes_total", "reason", "quit")
		s.want(t, 1, "concur_caser_goodbyes_total", "reason", "idle")
		s.want(t, 0, "concur_caser_goodbyes_total", "reason", "shutdown")
	})
	t.Run("sitesize", func(t *testing.T) {
		s.want(t, 1, "concur_sitesize_fetches_total", "outcome", "ok")
		s.want(t, 1, "concur_sitesize_fetches_total", "outcome", "blocked")
		s.want(t, 12, "concur_sitesize_fetched_bytes_total")
	})
	t.Run("dashboard", func(t *testing.T) { checkExprs(t, s, dashboardExprs(t)) })
	t.Run("rules", func(t *testing.T) { checkExprs(t, s, ruleExprs(t)) })
	t.Run("docs", func(t *testing.T) { checkDocumented(t, s) })
	t.Run("logs", func(t *testing.T) {
		line := logLine(t, p, "caser ready")
		if line["announce"] != "200ms" || line["idle"] != "2s" {
			t.Errorf("caser ready logs announce %v and idle %v, want the strings 200ms and 2s", line["announce"], line["idle"])
		}
	})
}

// checkDocumented checks that docs/operating.md's table of metrics names every concur_ series
// of the scrape, and no other.
func checkDocumented(t *testing.T, s scrape) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e2e.Root(t), "docs/operating.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`(concur_[a-z_]+)`").FindAllStringSubmatch(string(b), -1) {
		documented[m[1]] = true
	}
	shown := map[string]bool{}
	for _, name := range s.names() {
		if !strings.HasPrefix(name, "concur_") {
			continue
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && documented[base] {
				name = base
			}
		}
		shown[name] = true
		if !documented[name] {
			t.Errorf("docs/operating.md does not document %s", name)
		}
	}
	for name := range documented {
		if !shown[name] {
			t.Errorf("docs/operating.md documents %s, which concurd's /metrics does not show", name)
		}
	}
}

// session opens a caser session, says lines, and reads until its goodbye, which it returns
// with a scrape of /metrics taken while the session was open. It adds the announcements it
// heard to announced.
func session(t *testing.T, c caserv1.CaserServiceClient, metrics string, announced *int, lines ...string) (caserv1.GoodbyeReason, scrape) {
	t.Helper()
	stream, err := c.Session(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if r, err := stream.Recv(); err != nil || r.GetWelcome() == nil {
		t.Fatalf("the session's first message: %v, %v; want its welcome", r, err)
	}
	during := scrapeMetrics(t, metrics)
	for _, line := range lines {
		if err := stream.Send(&caserv1.SessionRequest{Line: line}); err != nil {
			t.Fatal(err)
		}
	}
	for {
		r, err := stream.Recv()
		if err != nil {
			t.Fatalf("the session ended without a goodbye: %v", err)
		}
		if r.GetAnnouncement() != nil {
			*announced++
		}
		if bye := r.GetGoodbye(); bye != nil {
			if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
				t.Fatalf("after the goodbye: %v, want the end of the stream", err)
			}
			return bye.GetReason(), during
		}
	}
}

// With the printer away, the counter's oldest print job ages between scrapes although the
// counter does nothing; once the printer is up, the job is printed and the age is back to 0.
// The forwarder's retries log their wait as a duration string.
func TestOutboxAgeWhilePrinterAway(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	printerAddr := lis.Addr().String()
	lis.Close()
	c := e2e.StartConcurd(t, "--services=counter", "--counter-db=:memory:", "--metrics-listen=127.0.0.1:0", "--printer-addr="+printerAddr)
	counter := counterv1.NewCounterServiceClient(e2e.Dial(t, c.Addr))
	if _, err := counter.Increment(t.Context(), &counterv1.IncrementRequest{}); err != nil {
		t.Fatal(err)
	}
	before := scrapeMetrics(t, c.MetricsAddr)
	time.Sleep(300 * time.Millisecond)
	after := scrapeMetrics(t, c.MetricsAddr)
	before.want(t, 1, "concur_counter_outbox_jobs")
	young, old := before.value(t, "concur_counter_outbox_oldest_age_seconds"), after.value(t, "concur_counter_outbox_oldest_age_seconds")
	if young <= 0 || old < young+0.3 {
		t.Errorf("the oldest print job's age went from %v to %v in 300ms, want it above 0 and growing", young, old)
	}

	p := e2e.StartConcurd(t, "--services=printer", "--listen="+printerAddr, "--metrics-listen=127.0.0.1:0")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := counter.Join(ctx, &counterv1.JoinRequest{}); err != nil {
		t.Fatal(err)
	}
	printed := scrapeMetrics(t, c.MetricsAddr)
	printed.want(t, 0, "concur_counter_outbox_jobs")
	printed.want(t, 0, "concur_counter_outbox_oldest_age_seconds")
	printed.want(t, 0, "concur_counter_forwarder_resent_jobs_total")
	scrapeMetrics(t, p.MetricsAddr).want(t, 1, "concur_printer_batch_jobs_sum")

	line := logLine(t, c, "printer stream failed; retrying")
	if wait, ok := line["retry_in"].(string); !ok {
		t.Errorf("retry_in is %#v, want a duration string", line["retry_in"])
	} else if _, err := time.ParseDuration(wait); err != nil {
		t.Errorf("retry_in: %v", err)
	}
}

// logLine returns the first JSON log line of p with the message msg.
func logLine(t *testing.T, p *e2e.Process, msg string) map[string]any {
	t.Helper()
	for line := range strings.Lines(p.Logs()) {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			return rec
		}
	}
	t.Fatalf("no log line %q", msg)
	return nil
}
