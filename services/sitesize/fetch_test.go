package sitesize_test

import (
	"bufio"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/api/violation"
)

// Sizes are the body's bytes exactly as the server sent them: with a Content-Length or
// chunked, and still compressed when the server compressed them, since the fetcher asks for
// no encoding and decompresses nothing.
func TestSizesAreExact(t *testing.T) {
	web := newSite(t)
	s := start(t, config())
	tests := []struct {
		path string
		size int64
	}{
		{"/size/0", 0},
		{"/size/1024", 1024},
		{"/size/10485760", 10 << 20},
		{"/chunked/123457", 123457},
		{"/gzip", int64(len(gzipped))},
	}
	req := &sitesizev1.MeasureRequest{}
	for _, tt := range tests {
		req.Urls = append(req.Urls, web.url(tt.path))
	}
	got := s.measureOK(t, req)
	for i, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			r := got[i]
			if r.Size == nil || r.GetSize() != tt.size || r.GetStatus() != 200 || r.GetError() != nil || r.GetTruncated() {
				t.Errorf("%s: size %v, status %d, error %v, truncated %v; want size %d, status 200", tt.path, r.Size, r.GetStatus(), r.GetError(), r.GetTruncated(), tt.size)
			}
			if r.GetFinalUrl() != req.Urls[i] || r.GetElapsed().AsDuration() <= 0 {
				t.Errorf("%s: final URL %q, elapsed %v", tt.path, r.GetFinalUrl(), r.GetElapsed().AsDuration())
			}
		})
	}
	web.mu.Lock()
	defer web.mu.Unlock()
	for _, enc := range web.encoding {
		if enc != "" {
			t.Errorf("a request asked for Accept-Encoding %q; sizes must be the server's bytes", enc)
		}
	}
}

// A gigabyte is counted as it streams: the heap grows by less than 32 MB while it is.
func TestGigabyteIsCountedNotHeld(t *testing.T) {
	const size = 1 << 30
	web := newSite(t)
	c := config()
	c.MaxBytes = 2 << 30
	c.MaxTimeout = 10 * time.Minute
	s := start(t, c)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	got := s.measureOK(t, &sitesizev1.MeasureRequest{Urls: []string{web.url("/size/1073741824")}, Timeout: durationpb.New(10 * time.Minute)})
	runtime.ReadMemStats(&after)
	if r := got[0]; r.GetSize() != size || r.GetError() != nil || r.GetTruncated() {
		t.Fatalf("1 GiB page: size %d, error %v, truncated %v", r.GetSize(), r.GetError(), r.GetTruncated())
	}
	// HeapSys is the heap obtained from the system: it only grows, so it holds the peak.
	grew := int64(after.HeapSys) - int64(before.HeapSys)
	t.Logf("heap grew by %d KiB; %d MiB allocated in all while counting 1 GiB", grew>>10, (after.TotalAlloc-before.TotalAlloc)>>20)
	if grew >= 32<<20 {
		t.Fatalf("the heap grew by %d MiB while counting 1 GiB; want under 32 MiB", grew>>20)
	}
}

// The byte cap stops counting and marks the result truncated; a body of exactly the cap is
// whole.
func TestByteCap(t *testing.T) {
	web := newSite(t)
	c := config()
	c.MaxBytes = 500
	s := start(t, c)
	got := s.measureOK(t, &sitesizev1.MeasureRequest{
		Urls:     []string{web.url("/size/100"), web.url("/size/101"), web.url("/size/10485760")},
		MaxBytes: 100,
	})
	want := []struct {
		size      int64
		truncated bool
	}{{100, false}, {100, true}, {100, true}}
	for i, w := range want {
		t.Run(fmt.Sprintf("urls[%d]", i), func(t *testing.T) {
			if got[i].GetSize() != w.size || got[i].GetTruncated() != w.truncated || got[i].GetError() != nil {
				t.Errorf("%s with max_bytes 100: size %d, truncated %v, error %v", got[i].GetUrl(), got[i].GetSize(), got[i].GetTruncated(), got[i].GetError())
			}
		})
	}
	// The server's cap bounds what a request asks.
	got = s.measureOK(t, &sitesizev1.MeasureRequest{Urls: []string{web.url("/size/1000")}, MaxBytes: 1 << 40})
	if got[0].GetSize() != 500 || !got[0].GetTruncated() {
		t.Errorf("max_bytes 1 TiB under a server cap of 500: size %d, truncated %v", got[0].GetSize(), got[0].GetTruncated())
	}
}

// Redirects are followed up to the server's limit and reported; one more is an error.
func TestRedirects(t *testing.T) {
	web := newSite(t)
	c := config()
	c.MaxRedirects = 3
	s := start(t, c)
	got := s.measureOK(t, &sitesizev1.MeasureRequest{Urls: []string{
		web.url("/redirect/3"),
		web.url("/redirect/4"),
		web.url("/to?url=ftp://example.com/file"),
	}})
	if r := got[0]; r.GetError() != nil || r.GetRedirects() != 3 || r.GetFinalUrl() != web.url("/redirect/0") || r.GetSize() != 4 || r.GetStatus() != 200 {
		t.Errorf("3 redirects: %v", r)
	}
	if r := got[1]; r.GetError().GetCode() != sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_TOO_MANY_REDIRECTS || r.GetRedirects() != 3 || r.GetStatus() != 302 {
		t.Errorf("4 redirects with a limit of 3: %v", r)
	}
	if r := got[2]; r.GetError().GetCode() != sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_BLOCKED || !strings.Contains(r.GetError().GetMessage(), `"ftp"`) {
		t.Errorf("a redirect to ftp: %v", r)
	}
}

// Every way a fetch fails is a result, and the stream goes on; a 404 is a measured page.
func TestFailuresAreResults(t *testing.T) {
	web := newSite(t)
	tlsWeb := httptest.NewUnstartedServer(web)
	tlsWeb.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake the fetcher refuses
	tlsWeb.StartTLS()
	defer tlsWeb.Close()
	refused, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedURL := "http://" + refused.Addr().String() + "/"
	refused.Close()
	garbage := garbageServer(t)

	s := start(t, config())
	urls := []string{
		web.url("/status/404"),
		refusedURL,
		tlsWeb.URL + "/size/10",
		"http://no-such-host.onion/", // Go resolves no .onion name (RFC 7686): no query leaves
		web.url("/short"),
		garbage,
		web.url("/size/10"),
	}
	got := s.measureOK(t, &sitesizev1.MeasureRequest{Urls: urls})
	want := []struct {
		code   sitesizev1.FetchErrorCode
		status int32
		size   int64
		says   string
	}{
		{0, 404, int64(len("status 404")), ""},
		{sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_CONNECT, 0, 0, "refused"},
		{sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_TLS, 0, 0, "certificate"},
		{sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_DNS, 0, 0, "no-such-host.onion"},
		{sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_PROTOCOL, 200, 10, "EOF"},
		{sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_PROTOCOL, 0, 0, "malformed"},
		{0, 200, 10, ""},
	}
	for i, w := range want {
		t.Run(fmt.Sprintf("urls[%d]", i), func(t *testing.T) {
			r := got[i]
			if r.GetError().GetCode() != w.code || r.GetStatus() != w.status || r.GetSize() != w.size || !strings.Contains(r.GetError().GetMessage(), w.says) {
				t.Errorf("%s: code %v, status %d, size %d, message %q; want %v, %d, %d, saying %q",
					r.GetUrl(), r.GetError().GetCode(), r.GetStatus(), r.GetSize(), r.GetError().GetMessage(), w.code, w.status, w.size, w.says)
			}
			if (r.Status == nil) != (w.status == 0) {
				t.Errorf("%s: status present %v; want it only when a response arrived", r.GetUrl(), r.Status != nil)
			}
		})
	}
}

// A page that does not answer within the request's timeout is a TIMEOUT result, and its
// request is stopped.
func TestTimeout(t *testing.T) {
	web := newSite(t)
	s := start(t, config())
	got := s.measureOK(t, &sitesizev1.MeasureRequest{Urls: []string{web.url("/gate/never")}, Timeout: durationpb.New(100 * time.Millisecond)})
	if e := got[0].GetError(); e.GetCode() != sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_TIMEOUT || !strings.Contains(e.GetMessage(), "100ms") || got[0].Status != nil {
		t.Errorf("a page that never answers: %v", got[0])
	}
	if gone := receive(t, web.gone, "the timed-out request to end"); gone != "never" {
		t.Errorf("the site saw %q end; want the timed-out request", gone)
	}
}

// garbageServer answers every request with something that is not HTTP.
func garbageServer(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			// Read the request first, so that the answer is to it.
			if _, err := http.ReadRequest(bufio.NewReader(conn)); err == nil {
				conn.Write([]byte("SMTP ready, not HTTP at all\r\n\r\n"))
			}
			conn.Close()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		<-done
	})
	return "http://" + lis.Addr().String() + "/"
}

// A batch over the server's limits fails whole, naming the field and index, and nothing of
// it is fetched.
func TestLimitsFailBeforeAnyFetch(t *testing.T) {
	web := newSite(t)
	c := config()
	c.MaxURLs, c.MaxURLBytes = 3, len(web.url("/size/1"))
	s := start(t, c)
	for _, tt := range []struct {
		urls  []string
		field string
	}{
		{[]string{web.url("/size/1"), web.url("/size/10")}, "urls[1]"},
		{[]string{web.url("/size/1"), web.url("/size/2"), web.url("/size/3"), web.url("/size/4")}, "urls"},
		{[]string{web.url("/size/1"), "http://", web.url("/size/2")}, "urls[1]"},
	} {
		t.Run(fmt.Sprintf("%d URLs, %s", len(tt.urls), tt.field), func(t *testing.T) {
			_, err := s.measure(t, &sitesizev1.MeasureRequest{Urls: tt.urls})
			if status.Code(err) != codes.InvalidArgument || !slices.Equal(violation.Fields(err), []string{tt.field}) {
				t.Errorf("%v: %v; want INVALID_ARGUMENT naming %s", tt.urls, err, tt.field)
			}
		})
	}
	web.mu.Lock()
	defer web.mu.Unlock()
	if len(web.hits) != 0 {
		t.Fatalf("the site was asked for %v", web.hits)
	}
}
