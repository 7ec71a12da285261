package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/internal/e2e"
)

func TestMain(m *testing.M) { e2e.Main(m) }

// The client, built and run for real against a real concurd that allows loopback, fetching
// pages from a local web server.
func TestClient(t *testing.T) {
	bin := e2e.Build(t, "./clients/sitesize")
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind, arg, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		n, _ := strconv.Atoi(arg)
		switch kind {
		case "size":
			w.Write(bytes.Repeat([]byte{'x'}, n))
		case "status":
			w.WriteHeader(n)
		}
	}))
	defer web.Close()
	concurd := e2e.StartConcurd(t, "--services=sitesize", "--sitesize-allow=127.0.0.0/8", "--sitesize-allow-ports=1024-65535")
	addr := "--addr=" + concurd.Addr

	t.Run("arguments, as they come, a failure", func(t *testing.T) {
		stdout, stderr, code := runClient(t, bin, "", addr, web.URL+"/size/1024", web.URL+"/status/404", "http://10.0.0.1/")
		if code != 1 {
			t.Errorf("exit status %d; want 1, since a URL failed", code)
		}
		lines := sortedLines(stdout)
		want := []*regexp.Regexp{
			regexp.MustCompile(`^http://10\.0\.0\.1/ 0 - \S+ BLOCKED: .*10\.0\.0\.1 is not a permitted destination`),
			regexp.MustCompile(`^` + regexp.QuoteMeta(web.URL) + `/size/1024 1024 200 \S+$`),
			regexp.MustCompile(`^` + regexp.QuoteMeta(web.URL) + `/status/404 0 404 \S+$`),
		}
		if len(lines) != len(want) {
			t.Fatalf("stdout:\n%s", stdout)
		}
		for i, re := range want {
			if !re.MatchString(lines[i]) {
				t.Errorf("line %q does not match %v", lines[i], re)
			}
		}
		if !strings.Contains(stderr, "2 of 3 URLs measured, 1024 bytes in all, 1 failed") {
			t.Errorf("summary:\n%s", stderr)
		}
	})

	t.Run("a file, in order", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "urls.txt")
		var urls []string
		for n := range 20 {
			urls = append(urls, fmt.Sprintf("%s/size/%d", web.URL, n*100))
		}
		os.WriteFile(file, []byte("# some pages\n\n"+strings.Join(urls, "\n")+"\n"), 0o600)
		stdout, stderr, code := runClient(t, bin, "", addr, "-f", file, "--ordered", "--concurrency=5")
		if code != 0 {
			t.Fatalf("exit status %d\n%s", code, stderr)
		}
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		if len(lines) != len(urls) {
			t.Fatalf("stdout:\n%s", stdout)
		}
		for i, line := range lines {
			if !strings.HasPrefix(line, fmt.Sprintf("%s %d 200 ", urls[i], i*100)) {
				t.Errorf("line %d: %q", i, line)
			}
		}
	})

	t.Run("standard input, JSON lines", func(t *testing.T) {
		in := web.URL + "/size/7\n" + web.URL + "/size/7\n" + web.URL + "/size/3\n"
		stdout, stderr, code := runClient(t, bin, in, addr, "--json", "--max-bytes=5")
		if code != 0 {
			t.Fatalf("exit status %d\n%s", code, stderr)
		}
		var got []jsonResult
		for line := range strings.Lines(stdout) {
			var r jsonResult
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			got = append(got, r)
		}
		slices.SortFunc(got, func(a, b jsonResult) int { return cmp.Compare(a.Index, b.Index) })
		if len(got) != 3 || got[0].Size != 5 || !got[0].Truncated || got[1].Size != 5 || got[2].Size != 3 || got[2].Truncated || *got[2].Status != 200 {
			t.Fatalf("results: %+v", got)
		}
	})

	t.Run("the address from the environment", func(t *testing.T) {
		t.Setenv("CONCUR_ADDR", concurd.Addr)
		stdout, stderr, code := runClient(t, bin, "", web.URL+"/size/3")
		if code != 0 || !strings.HasPrefix(stdout, web.URL+"/size/3 3 200 ") {
			t.Fatalf("exit status %d\n%s\n%s", code, stdout, stderr)
		}
	})

	t.Run("usage errors", func(t *testing.T) {
		for _, tt := range []struct {
			args []string
			says string
		}{
			{nil, "no URLs given: pass them as arguments, with -f FILE or on standard input"},
			{[]string{"ftp://example.com/"}, `invalid request: urls[0]: has scheme "ftp"; only http and https URLs can be measured`},
			{[]string{"-f", "x", "http://a/"}, "give URLs as arguments or with -f, not both"},
			{[]string{"--no-such-flag"}, "unknown flag --no-such-flag"},
			{[]string{"--timeout=soon", "http://a/"}, `invalid value "soon" for flag --timeout: want a duration such as 300ms, 10s or 1h30m`},
		} {
			stdout, stderr, code := runClient(t, bin, "", append([]string{addr}, tt.args...)...)
			if want := "sitesize: " + tt.says + "\nrun 'sitesize --help' for usage\n"; code != 2 || stderr != want || stdout != "" {
				t.Errorf("sitesize %v: exit status %d, stderr %q; want 2, saying %q", tt.args, code, stderr, want)
			}
		}
		stdout, stderr, code := runClient(t, bin, "", "--help")
		if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "Usage: sitesize [flags] [URL...]\n") ||
			!strings.Contains(stdout, "\nConnection:\n  --addr address\n") || !strings.Contains(stdout, "\n  1    a URL could not be measured\n") {
			t.Errorf("--help: exit status %d, stderr %q, stdout:\n%s", code, stderr, stdout)
		}
	})

	t.Run("no server", func(t *testing.T) {
		stdout, stderr, code := runClient(t, bin, "", "--addr=127.0.0.1:1", web.URL+"/size/1")
		if want := "sitesize: no concur service answered at 127.0.0.1:1: is concurd running? (connection refused)\n"; code != 3 || stderr != want || stdout != "" {
			t.Errorf("exit status %d, stderr %q; want 3, saying %q", code, stderr, want)
		}
	})
}

// SIGTERM in the middle of a batch: the hanging fetch stops, the client gets what finished and
// then UNAVAILABLE, and concurd exits 0.
func TestSigtermMidBatch(t *testing.T) {
	hung := make(chan struct{})
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			<-r.Context().Done()
			close(hung)
			return
		}
		w.Write(make([]byte, 10))
	}))
	defer web.Close()
	concurd := e2e.StartConcurd(t, "--services=sitesize", "--sitesize-allow=127.0.0.0/8", "--sitesize-allow-ports=1024-65535")
	client := sitesizev1.NewSiteSizeServiceClient(e2e.Dial(t, concurd.Addr))
	stream, err := client.Measure(t.Context(), &sitesizev1.MeasureRequest{Urls: []string{web.URL + "/hang", web.URL + "/ten"}, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	r, err := stream.Recv()
	if err != nil || r.GetIndex() != 1 || r.GetSize() != 10 {
		t.Fatalf("first result: %v, %v", r, err)
	}
	concurd.Signal(t, syscall.SIGTERM)
	_, err = stream.Recv()
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "shutting down") {
		t.Fatalf("after SIGTERM: %v", err)
	}
	select {
	case <-hung:
	case <-time.After(time.Minute):
		t.Fatal("the hanging fetch never ended")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if code := concurd.Wait(ctx, t); code != 0 || !strings.Contains(concurd.Logs(), "shutdown complete") {
		t.Fatalf("exit status %d\n%s", code, concurd.Logs())
	}
}

func runClient(t *testing.T, bin, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	stdout, stderr, err := e2e.RunErr(t, stdin, bin, args...)
	if code = e2e.ExitCode(err); code < 0 {
		t.Fatal(err)
	}
	return stdout, stderr, code
}

func sortedLines(s string) []string {
	return slices.Sorted(slices.Values(strings.Split(strings.TrimSpace(s), "\n")))
}

// The progress bar fills as results come and is erased before each line and the summary.
func TestProgress(t *testing.T) {
	var b bytes.Buffer
	bar := &progress{w: &b, total: 4}
	bar.draw()
	bar.clear()
	bar.advance()
	bar.advance()
	bar.clear()
	want := "\r[..............................] 0/4\r\033[K" +
		"\r[#######.......................] 1/4" +
		"\r[###############...............] 2/4\r\033[K"
	if b.String() != want {
		t.Fatalf("drew %q\nwant %q", b.String(), want)
	}
	var none *progress
	none.advance() // no terminal, no bar
	none.clear()
}
