package main

import (
	"bufio"
	"context"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/concur-dev/concur/internal/e2e"
	"github.com/concur-dev/concur/internal/testkit"
)

func TestMain(m *testing.M) { e2e.Main(m) }

// testTimeout bounds the tests' waiting, so that a bug fails a test instead of hanging it.
const testTimeout = 2 * time.Minute

// concurd starts a real concurd serving the caser with args; nothing the test started may
// outlive it.
func concurd(t *testing.T, args ...string) *e2e.Process {
	t.Helper()
	testkit.NoLeaks(t) // first, so that it checks last
	return e2e.StartConcurd(t, append([]string{"--services=caser", "--caser-announce=0"}, args...)...)
}

// session runs the client on stdin and returns its exit status and output.
func session(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut strings.Builder
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

const talk = `<welcome: starting in upper case mode>
Upper-cased: 'HELLO'
<switching to title case mode>
Title-cased: 'Hello World'
<goodbye: you said quit>
`

// The talk's session, piped into the built command, as the README shows it.
func TestTalkSessionPiped(t *testing.T) {
	p := concurd(t)
	bin := e2e.Build(t, "./clients/caser")
	stdout, _ := e2e.Run(t, "hello\ntitle\nhello world\nquit\n", bin, "--addr", p.Addr)
	if stdout != talk {
		t.Fatalf("the talk's session printed:\n%s\nwant:\n%s", stdout, talk)
	}
	stdout, stderr, err := e2e.RunErr(t, "hello\n", bin, "--addr", "127.0.0.1:1")
	if want := "caser: no concur service answered at 127.0.0.1:1: is concurd running? (connection refused)\n"; e2e.ExitCode(err) != 3 || stderr != want {
		t.Fatalf("with no server: %v, stdout %q, stderr %q; want exit 3 saying %q", err, stdout, stderr, want)
	}
	t.Setenv("CONCUR_ADDR", p.Addr)
	if stdout, _ := e2e.Run(t, "hello\ntitle\nhello world\nquit\n", bin); stdout != talk {
		t.Fatalf("with CONCUR_ADDR, the talk's session printed:\n%s", stdout)
	}
}

// At the end of its input the client says quit itself; lines end with \n or \r\n.
func TestEndOfInputSaysQuit(t *testing.T) {
	p := concurd(t)
	code, stdout, stderr := session(t, "they're bill's\r\ntitle\nthey're bill's", "--addr", p.Addr)
	want := `<welcome: starting in upper case mode>
Upper-cased: "THEY'RE BILL'S"
<switching to title case mode>
Title-cased: "They'Re Bill'S"
<goodbye: you said quit>
`
	if code != 0 || stdout != want {
		t.Fatalf("exit %d, stdout:\n%s\nstderr: %s\nwant exit 0 and:\n%s", code, stdout, stderr, want)
	}
	if code, stdout, _ := session(t, "", "--addr", p.Addr); code != 0 || !strings.HasSuffix(stdout, "<goodbye: you said quit>\n") {
		t.Fatalf("empty input: exit %d, stdout %q", code, stdout)
	}
}

func TestASCIIFlag(t *testing.T) {
	p := concurd(t)
	for flag, want := range map[string]string{
		"--ascii=false": "Upper-cased: 'ÉCOLE'\nUpper-cased: 'STRASSE'\n",
		"--ascii":       "Upper-cased: '\\xc9COLE'\nUpper-cased: 'STRASSE'\n",
	} {
		code, stdout, _ := session(t, "école\nstraße\n", "--addr", p.Addr, flag)
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("%s: exit %d, stdout:\n%s\nwant:\n%s", flag, code, stdout, want)
		}
	}
}

func TestFailures(t *testing.T) {
	p := concurd(t, "--caser-max-line-bytes=8")
	code, stdout, stderr := session(t, "hello\n123456789\nnever sent\n", "--addr", p.Addr)
	if code != 3 || stdout != "<welcome: starting in upper case mode>\nUpper-cased: 'HELLO'\n" ||
		stderr != "caser: InvalidArgument: invalid request: line: is 9 bytes long; at most 8 bytes are allowed (--caser-max-line-bytes)\n" {
		t.Errorf("a line over the limit: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// Usage errors are one line and exit 2; --help goes to standard output.
func TestUsage(t *testing.T) {
	bin := e2e.Build(t, "./clients/caser")
	for _, tt := range []struct {
		args []string
		says string
	}{
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"--no-such-flag"}, "unknown flag --no-such-flag"},
		{[]string{"--ascii=sometimes"}, `invalid value "sometimes" for flag --ascii: want true or false`},
	} {
		stdout, stderr, err := e2e.RunErr(t, "", bin, tt.args...)
		if want := "caser: " + tt.says + "\nrun 'caser --help' for usage\n"; e2e.ExitCode(err) != 2 || stderr != want || stdout != "" {
			t.Errorf("caser %q: %v, stderr %q; want exit 2, saying %q", tt.args, err, stderr, want)
		}
	}
	stdout, stderr, err := e2e.RunErr(t, "", bin, "--help")
	if err != nil || stderr != "" || !strings.HasPrefix(stdout, "Usage: caser [flags]\n") || !strings.Contains(stdout, "\n  --ascii\n") {
		t.Errorf("--help: %v, stderr %q, stdout:\n%s", err, stderr, stdout)
	}
}

// Ctrl-C ends a session at once, with exit 130.
func TestInterrupt(t *testing.T) {
	p := concurd(t)
	cmd := exec.Command(e2e.Build(t, "./clients/caser"), "--addr", p.Addr)
	stdin, err := cmd.StdinPipe() // left open: the session waits for lines
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "<welcome: starting in upper case mode>" {
		cmd.Process.Kill()
		t.Fatalf("first line %q, want the welcome", lines.Text())
	}
	cmd.Process.Signal(syscall.SIGINT)
	exited := make(chan error, 1)
	go func() {
		for lines.Scan() {
		}
		exited <- cmd.Wait()
	}()
	select {
	case err := <-exited:
		if e2e.ExitCode(err) != 130 || stderr.String() != "caser: interrupted\n" {
			t.Fatalf("after SIGINT: %v, stderr %q; want exit 130, saying interrupted", err, stderr.String())
		}
	case <-time.After(testTimeout):
		cmd.Process.Kill()
		t.Fatal("the client still runs after SIGINT")
	}
}

// The client connects as internal/dial says: TLS with a CA to trust and a bearer token.
func TestTLSAndToken(t *testing.T) {
	certs := e2e.WriteCerts(t)
	token := e2e.WriteToken(t, t.TempDir(), "s3cret")
	p := concurd(t, "--tls-cert="+certs.ServerCert, "--tls-key="+certs.ServerKey, "--auth-token-file="+token)
	if code, stdout, stderr := session(t, "hello\ntitle\nhello world\nquit\n", "--addr", p.Addr, "--tls-ca", certs.CA, "--token-file", token); code != 0 || stdout != talk {
		t.Fatalf("with TLS and the token: exit %d, stdout:\n%s\nstderr: %s", code, stdout, stderr)
	}
	if code, _, stderr := session(t, "hello\n", "--addr", p.Addr, "--tls-ca", certs.CA); code != 3 || !strings.Contains(stderr, "caser: Unauthenticated: ") {
		t.Fatalf("without the token: exit %d, stderr %q; want Unauthenticated", code, stderr)
	}
}

// live is a client session whose input a test writes as it goes and whose output it reads
// line by line as it comes, like a person at a terminal.
type live struct {
	t     *testing.T
	in    *io.PipeWriter
	lines chan string
	code  chan int
}

func startLive(t *testing.T, args ...string) *live {
	t.Helper()
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	l := &live{t: t, in: stdinW, lines: make(chan string, 100), code: make(chan int, 1)}
	var wg sync.WaitGroup
	wg.Go(func() {
		l.code <- run(context.Background(), args, stdinR, stdoutW, io.Discard)
		stdoutW.Close()
	})
	wg.Go(func() {
		out := bufio.NewScanner(stdoutR)
		for out.Scan() {
			l.lines <- out.Text()
		}
		close(l.lines)
	})
	t.Cleanup(func() {
		stdinW.Close()
		wg.Wait()
	})
	return l
}

func (l *live) say(line string) {
	l.t.Helper()
	if _, err := io.WriteString(l.in, line+"\n"); err != nil {
		l.t.Fatalf("say %q: %v", line, err)
	}
}

// until reads lines up to the first that matches pattern, and returns it.
func (l *live) until(pattern string) string {
	l.t.Helper()
	re := regexp.MustCompile(pattern)
	timeout := time.After(testTimeout)
	for {
		select {
		case line, ok := <-l.lines:
			if !ok {
				l.t.Fatalf("the output ended before a line matching %s", pattern)
			}
			if re.MatchString(line) {
				return line
			}
		case <-timeout:
			l.t.Fatalf("no line matching %s", pattern)
		}
	}
}

func (l *live) exited() int {
	l.t.Helper()
	select {
	case code := <-l.code:
		return code
	case <-time.After(testTimeout):
		l.t.Fatal("the client did not exit")
		return -1
	}
}

// ctime is Python's time.ctime() format.
const ctime = `[A-Z][a-z]{2} [A-Z][a-z]{2} [ 1-3]\d \d\d:\d\d:\d\d \d{4}`

// Announcements are printed as they come, between the answers.
func TestAnnouncementsAsTheyCome(t *testing.T) {
	p := concurd(t, "--caser-announce=20ms")
	l := startLive(t, "--addr", p.Addr)
	l.until(`^<welcome: starting in upper case mode>$`)
	l.say("hello")
	l.until(`^Upper-cased: 'HELLO'$`)
	l.until(`^The event loop is still running at: ` + ctime + `$`)
	l.say("quit")
	l.until(`^<goodbye: you said quit>$`)
	if code := l.exited(); code != 0 {
		t.Fatalf("exit %d after goodbye", code)
	}
}

// A session the server ends ends the client with the goodbye, exit 0, though its input is
// still open: when the session was idle too long, and when the server shuts down.
func TestIdleGoodbye(t *testing.T) {
	p := concurd(t, "--caser-idle=50ms")
	l := startLive(t, "--addr", p.Addr)
	l.until(`^<goodbye: no line for 50ms, closing the session>$`)
	if code := l.exited(); code != 0 {
		t.Fatalf("exit %d after the idle goodbye", code)
	}
}

func TestShutdownGoodbye(t *testing.T) {
	p := concurd(t)
	l := startLive(t, "--addr", p.Addr)
	l.until(`^<welcome: starting in upper case mode>$`)
	p.Signal(t, syscall.SIGTERM)
	l.until(`^<goodbye: the server is shutting down>$`)
	if code := l.exited(); code != 0 {
		t.Fatalf("exit %d after the shutdown goodbye", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if code := p.Wait(ctx, t); code != 0 {
		t.Fatalf("concurd exited %d", code)
	}
}
