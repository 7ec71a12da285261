package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/concur-dev/concur/internal/demosites"
	"github.com/concur-dev/concur/internal/e2e"
	"github.com/concur-dev/concur/internal/testkit"
)

func TestMain(m *testing.M) { e2e.Main(m) }

// runTalk runs the command in this process and returns its exit status and output; nothing it
// started may outlive it.
func runTalk(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	before := goleak.IgnoreCurrent() // a concurd the test started is not the talk's
	var out, errOut strings.Builder
	code = run(context.Background(), args, &out, &errOut)
	goleak.VerifyNone(t, before)
	return code, out.String(), errOut.String()
}

// printed is the printer's output as the talk shows it, read back with Tail.
var printed = regexp.MustCompile(`(?s)The printer wrote, read back with Tail \(its jobs (\d+) to (\d+)\):\n(.*?)\n\n`)

// checkPrinted checks that the talk showed the printer's jobs first to last, and that they
// are the talk's output for the counts from to last.
func checkPrinted(t *testing.T, stdout string, first, last, from, to int) {
	t.Helper()
	m := printed.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no printer output in:\n%s", stdout)
	}
	if m[1] != fmt.Sprint(first) || m[2] != fmt.Sprint(last) {
		t.Errorf("the talk read the printer's jobs %s to %s, want %d to %d", m[1], m[2], first, last)
	}
	if want := talkOutput(from, to); m[3]+"\n" != want {
		t.Fatalf("the printer printed:\n%s\nwant:\n%s", m[3], want)
	}
}

// The whole talk, as a newcomer runs it: the built command, on its embedded stack, with the
// race amplifier on. It exits 0, shows the talk's printer output exactly, and every section
// passed its check.
func TestTalkBuilt(t *testing.T) {
	stdout, stderr := e2e.Run(t, "", e2e.Build(t, "./clients/talk"), "--jitter=2ms")
	checkPrinted(t, stdout, 1, 12, 1, 10)
	for _, want := range []string{
		"The counter reads ", "Check passed: the counter counted 1 to 10",
		"Check passed: one result per URL, each carrying its URL, every size the page's size both ways.",
		"Check passed: user A switched to title case", "Every check passed: threading, sites, async.",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("no %q in the talk's output:\n%s", want, stdout)
		}
	}
	if stderr != "" {
		t.Errorf("stderr: %s", stderr)
	}
}

// The threading section alone, with more workers than the talk's ten, many times: the
// printer's output is exact every time, under jitter.
func TestThreadingSection(t *testing.T) {
	for range 5 {
		code, stdout, stderr := runTalk(t, "--section=threading", "--workers=25", "--jitter=1ms")
		if code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
		}
		checkPrinted(t, stdout, 1, 27, 1, 25)
		// The broken way ran too: it is a logical race, so -race has nothing to report.
		if !regexp.MustCompile(`The counter reads \d+ after 25 increments: `).MatchString(stdout) {
			t.Fatalf("no broken way in:\n%s", stdout)
		}
	}
}

// The sites section alone: every demo site, at its size, as it completes and one after another.
func TestSitesSection(t *testing.T) {
	code, stdout, stderr := runTalk(t, "--section=sites")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, s := range demosites.Sites {
		line := regexp.MustCompile(`\("http://127\.0\.0\.1:\d+/` + regexp.QuoteMeta(s.Host) + `/", ` + fmt.Sprint(s.Size) + `\)`)
		want := 2 // as it completed, then one after another
		if s.Host == "www.cnbc.com" {
			want = 4 // listed twice, as in the talk
		}
		if got := len(line.FindAllString(stdout, -1)); got != want {
			t.Errorf("%s at %d bytes shown %d times, want %d:\n%s", s.Host, s.Size, got, want, stdout)
		}
	}
	if !regexp.MustCompile(`One trip, 10 at a time: \S+ +one after another: \S+ `).MatchString(stdout) {
		t.Errorf("no wall times in:\n%s", stdout)
	}
}

var announcement = regexp.MustCompile(`(?m)^ *The event loop is still running at: .*\n|^\(waiting up to .*\n`)

// The async section alone: the two sessions' exact exchange, and an announcement heard.
func TestAsyncSection(t *testing.T) {
	code, stdout, stderr := runTalk(t, "--section=async")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !announcement.MatchString(stdout) || !strings.Contains(stdout, "The event loop is still running at: ") {
		t.Errorf("no announcement in:\n%s", stdout)
	}
	i := strings.Index(stdout, "user A ")
	j := strings.Index(stdout, "\nCheck passed: ")
	if i < 0 || j < i {
		t.Fatalf("no session in:\n%s", stdout)
	}
	want, err := os.ReadFile(filepath.Join("testdata", "async.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if got := announcement.ReplaceAllString(stdout[i:j], ""); got != string(want) {
		t.Fatalf("the sessions showed:\n%s\nwant:\n%s", got, want)
	}
}

// Against deployed services, by address: one concurd with every service and a counter on
// disk. The second run finds the counter at 10 and the printer's numbering at 12: it checks
// only its own jobs, 13 to 24, and the counts go on from 11. Then a real misconfiguration
// fails the check: the talk prints to one printer while the counter forwards to another.
func TestRemote(t *testing.T) {
	db := filepath.Join(t.TempDir(), "counter.db")
	p := e2e.StartConcurd(t, "--counter-db="+db, "--printer-stdout=false", "--caser-announce=300ms")
	other := e2e.StartConcurd(t, "--services=printer", "--printer-stdout=false")
	bin := e2e.Build(t, "./clients/talk")

	stdout, _ := e2e.Run(t, "", bin, "--addr="+p.Addr, "--section=threading")
	checkPrinted(t, stdout, 1, 12, 1, 10)
	stdout, _ = e2e.Run(t, "", bin, "--addr="+p.Addr, "--section=threading")
	checkPrinted(t, stdout, 13, 24, 11, 20)
	if !strings.Contains(stdout, "(The counter already read 10, so the counts go on from there.)") {
		t.Errorf("no word of the counter's earlier value:\n%s", stdout)
	}

	stdout, stderr, err := e2e.RunErr(t, "", bin, "--addr="+p.Addr, "--printer-addr="+other.Addr, "--section=threading")
	if e2e.ExitCode(err) != 1 {
		t.Fatalf("talk with the counter forwarding elsewhere: %v, want exit 1\n%s\n%s", err, stdout, stderr)
	}
	if !strings.Contains(stdout, "FAILED: threading: the printer's jobs 1 to 2 are not the talk's output: job 2 is [\"Finishing up\"], want [\"The count is 21\" \"---------------\"]") ||
		!strings.Contains(stderr, "talk: the check of threading failed") {
		t.Fatalf("talk with the counter forwarding elsewhere:\n%s\n%s", stdout, stderr)
	}
}

// --sites measures the URLs of a file; a deployed sitesize that may not reach the demo sites
// fails the check, saying how to allow them.
func TestRemoteSites(t *testing.T) {
	demo, err := demosites.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { demo.Close() })
	p := e2e.StartConcurd(t, "--services=sitesize", "--sitesize-allow=127.0.0.1", fmt.Sprintf("--sitesize-allow-ports=%d", demo.Port()))
	file := filepath.Join(t.TempDir(), "sites.txt")
	urls := demo.URLs()
	if err := os.WriteFile(file, []byte("# two of the talk's sites\n"+urls[4]+"\n\n"+urls[5]+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, _ := e2e.Run(t, "", e2e.Build(t, "./clients/talk"), "--sitesize-addr="+p.Addr, "--section=sites", "--sites="+file)
	for _, i := range []int{4, 5} { // as it completed, then one after another
		if want := fmt.Sprintf("(%q, %d)", urls[i], demosites.Sites[i].Size); strings.Count(stdout, want) != 2 {
			t.Errorf("%s shown %d times, want 2:\n%s", want, strings.Count(stdout, want), stdout)
		}
	}
	if !strings.Contains(stdout, "Check passed: one result per URL, each carrying its URL, none failed.") || strings.Count(stdout, "(\"") != 4 {
		t.Errorf("want the two sites of the file, and a passed check:\n%s", stdout)
	}

	blocked := e2e.StartConcurd(t, "--services=sitesize")
	stdout, stderr, err := e2e.RunErr(t, "", e2e.Build(t, "./clients/talk"), "--sitesize-addr="+blocked.Addr, "--section=sites")
	if e2e.ExitCode(err) != 1 || !strings.Contains(stdout, "FAILED: sites: the sitesize could not measure") ||
		!strings.Contains(stdout, "run the sitesize's concurd with --sitesize-allow=127.0.0.1") {
		t.Fatalf("a sitesize that refuses loopback: %v\n%s\n%s", err, stdout, stderr)
	}
}

// Usage errors exit 2 and say what is wrong, in one line.
func TestUsage(t *testing.T) {
	bin := e2e.Build(t, "./clients/talk")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--section=locks"}, `--section "locks": choose one of threading, sites, async`},
		{[]string{"--workers=0"}, "--workers 0: must be at least 1"},
		{[]string{"--workers=ten"}, `invalid value "ten" for flag --workers: want a whole number`},
		{[]string{"--printer-addr=127.0.0.1:1"}, "the threading section needs the counter: give --addr or --counter-addr (or no address at all, for an embedded stack)"},
		{[]string{"--sites=/nonexistent/sites.txt"}, "--sites: open /nonexistent/sites.txt: no such file or directory"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		stdout, stderr, err := e2e.RunErr(t, "", bin, c.args...)
		if want := "talk: " + c.want + "\nrun 'talk --help' for usage\n"; e2e.ExitCode(err) != 2 || stderr != want || stdout != "" {
			t.Errorf("talk %v: %v, stderr %q, stdout %q; want exit 2 and %q", c.args, err, stderr, stdout, want)
		}
	}
	stdout, stderr, err := e2e.RunErr(t, "", bin, "--help")
	if err != nil || stderr != "" || !strings.HasPrefix(stdout, "Usage: talk [flags]\n") ||
		!strings.Contains(stdout, "\nConnection to the caser:\n  --caser-addr address\n") || !strings.Contains(stdout, "\n  1    a check failed\n") {
		t.Errorf("--help: %v, stderr %q, stdout:\n%s", err, stderr, stdout)
	}
}

// A section that cannot reach its service fails, and the talk exits 3 (a call failed)
// rather than 1 (a check found the talk's output wrong).
func TestUnreachable(t *testing.T) {
	code, stdout, stderr := runTalk(t, "--addr=127.0.0.1:1", "--section=async")
	if code != 3 || !strings.Contains(stdout, "FAILED: async: caser Session: no concur service answered at 127.0.0.1:1: is concurd running? (connection refused)\n") ||
		stderr != "talk: the check of async failed\n" {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
}

// Ctrl-C stops the talk at once, exit 130, with nothing more printed on its account: here
// it comes while the sites section fetches the first of three pages one after another (the
// sitesize had each page at once; this client's second fetch hangs), and the talk used to go
// on with a line for each page.
func TestInterrupt(t *testing.T) {
	testkit.NoLeaks(t)
	hung := make(chan struct{}, 3)
	var mu sync.Mutex
	fetched := map[string]bool{}
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		again := fetched[r.URL.Path]
		fetched[r.URL.Path] = true
		mu.Unlock()
		if again {
			hung <- struct{}{}
			<-r.Context().Done()
			return
		}
		w.Write([]byte("0123456789"))
	}))
	defer web.Close()
	port := web.Listener.Addr().(*net.TCPAddr).Port
	p := e2e.StartConcurd(t, "--services=sitesize", "--sitesize-allow=127.0.0.1", fmt.Sprintf("--sitesize-allow-ports=%d", port))
	sites := filepath.Join(t.TempDir(), "sites.txt")
	if err := os.WriteFile(sites, []byte(web.URL+"/a\n"+web.URL+"/b\n"+web.URL+"/c\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(e2e.Build(t, "./clients/talk"), "--sitesize-addr="+p.Addr, "--section=sites", "--sites="+sites)
	var stdout, stderr testkit.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-hung:
	case err := <-exited:
		t.Fatalf("the talk ended before its fetch of /a hung: %v\n%s\n%s", err, stdout.String(), stderr.String())
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("the talk never fetched /a a second time:\n%s", stdout.String())
	}
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-exited:
		if e2e.ExitCode(err) != 130 || stderr.String() != "talk: interrupted\n" {
			t.Errorf("after SIGINT: %v, stderr %q; want exit 130, saying interrupted", err, stderr.String())
		}
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatal("the talk still runs after SIGINT")
	}
	out := stdout.String()
	for _, page := range []string{"/a", "/b", "/c"} {
		if n := strings.Count(out, web.URL+page); n != 1 {
			t.Errorf("%s shown %d times, want once, as the sitesize measured it:\n%s", page, n, out)
		}
	}
	for _, never := range []string{"FAILED", "canceled", "interrupt"} {
		if strings.Contains(out, never) {
			t.Errorf("after SIGINT the talk printed %q:\n%s", never, out)
		}
	}
}

// The talk connects as internal/dial says, with --addr's TLS and token flags or a service's
// own, which win over --addr's.
func TestTLSAndToken(t *testing.T) {
	certs := e2e.WriteCerts(t)
	token := e2e.WriteToken(t, t.TempDir(), "s3cret")
	p := e2e.StartConcurd(t, "--services=caser", "--caser-announce=200ms",
		"--tls-cert="+certs.ServerCert, "--tls-key="+certs.ServerKey, "--auth-token-file="+token)
	for _, args := range [][]string{
		{"--addr=" + p.Addr, "--tls-ca=" + certs.CA, "--token-file=" + token},
		{"--addr=127.0.0.1:1", "--caser-addr=" + p.Addr, "--caser-tls-ca=" + certs.CA, "--caser-token-file=" + token},
	} {
		if code, stdout, stderr := runTalk(t, append(args, "--section=async")...); code != 0 || !strings.Contains(stdout, "Check passed: user A switched") {
			t.Fatalf("talk %v: exit %d\n%s\n%s", args, code, stdout, stderr)
		}
	}
	code, stdout, _ := runTalk(t, "--addr="+p.Addr, "--tls-ca="+certs.CA, "--section=async")
	if code != 3 || !strings.Contains(stdout, "FAILED: async: ") || !strings.Contains(stdout, "Unauthenticated") {
		t.Fatalf("without the token: exit %d\n%s", code, stdout)
	}
}

// A connection that cannot be made is a usage error, named by its service.
func TestDialError(t *testing.T) {
	code, _, stderr := runTalk(t, "--caser-addr=127.0.0.1:1", "--caser-token-file=/nonexistent/token", "--section=async")
	if code != 2 || !strings.Contains(stderr, "talk: the caser: read token file: open /nonexistent/token") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}
