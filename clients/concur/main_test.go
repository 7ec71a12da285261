package main

import (
	"bufio"
	"bytes"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	caserv1 "github.com/concur-dev/concur/api/concur/caser/v1"
	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/internal/e2e"
	"github.com/concur-dev/concur/internal/testkit"
)

func TestMain(m *testing.M) { e2e.Main(m) }

// testTimeout bounds the tests' waiting, so that a bug fails a test instead of hanging it.
const testTimeout = 2 * time.Minute

// concur runs the built command to its end and returns its output and exit status.
func concur(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	stdout, stderr, err := e2e.RunErr(t, "", e2e.Build(t, "./clients/concur"), args...)
	if code = e2e.ExitCode(err); code < 0 {
		t.Fatal(err)
	}
	return stdout, stderr, code
}

// ok runs a command that must succeed and print nothing on standard error, and returns its
// standard output.
func ok(t *testing.T, args ...string) string {
	t.Helper()
	stdout, stderr, code := concur(t, args...)
	if code != 0 || stderr != "" {
		t.Fatalf("concur %q: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
	}
	return stdout
}

// unmarshal reads a line of --json output into m, failing the test unless it is exactly one
// line of protojson.
func unmarshal(t *testing.T, out string, m proto.Message) {
	t.Helper()
	line, ok := strings.CutSuffix(out, "\n")
	if !ok || strings.Contains(line, "\n") {
		t.Fatalf("want one line of JSON, got %q", out)
	}
	if err := protojson.Unmarshal([]byte(line), m); err != nil {
		t.Fatalf("%q: %v", line, err)
	}
}

// startConcurd starts a concurd for the test, with a counter in memory, and points concur at
// it through CONCUR_ADDR.
func startConcurd(t *testing.T, args ...string) *e2e.Process {
	t.Helper()
	p := e2e.StartConcurd(t, append([]string{"--counter-db=:memory:", "--printer-stdout=false"}, args...)...)
	t.Setenv("CONCUR_ADDR", p.Addr)
	return p
}

func TestCounter(t *testing.T) {
	startConcurd(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"incr", "hits"}, "1\n"},
		{[]string{"incr", "hits", "--by", "5"}, "6\n"},
		{[]string{"incr", "--by=-2", "hits"}, "4\n"},
		{[]string{"get", "hits"}, "4\n"},
		{[]string{"get", "hits", "--json"}, `{"name":"hits","value":"4"}` + "\n"},
		{[]string{"get", "never"}, "0\n"},
		{[]string{"incr"}, "1\n"},
		{[]string{"get", "default"}, "1\n"},
		{[]string{"incr", "once", "--request-id=r1"}, "1\n"},
		{[]string{"incr", "once", "--request-id=r1"}, "1 (replayed: this --request-id was applied before)\n"},
	} {
		if got := ok(t, c.args...); got != c.want {
			t.Errorf("concur %q printed %q, want %q", c.args, got, c.want)
		}
	}
	var r counterv1.IncrementResponse
	unmarshal(t, ok(t, "--json", "incr", "hits", "--by", "10"), &r)
	if r.GetName() != "hits" || r.GetValue() != 14 || r.GetSequence() == 0 || r.GetReplayed() {
		t.Errorf("incr --json: %v", &r)
	}
	unmarshal(t, ok(t, "incr", "once", "--request-id=r1", "--json"), &r)
	if r.GetValue() != 1 || !r.GetReplayed() {
		t.Errorf("a replayed incr --json: %v", &r)
	}

	// A request the contract refuses is a usage error; one the server refuses, a failed call.
	if _, stderr, code := concur(t, "incr", "--by", "0"); code != 2 ||
		!strings.HasPrefix(stderr, "concur incr: invalid request: delta: must not be 0") || !strings.HasSuffix(stderr, "\nrun 'concur incr --help' for usage\n") {
		t.Errorf("incr --by 0: exit %d, stderr %q", code, stderr)
	}
	ok(t, "incr", "big", "--by", "9223372036854775807")
	if _, stderr, code := concur(t, "incr", "big"); code != 3 || !strings.HasPrefix(stderr, "concur incr: OutOfRange: ") {
		t.Errorf("an overflow: exit %d, stderr %q", code, stderr)
	}
}

func TestJoin(t *testing.T) {
	startConcurd(t)
	ok(t, "incr")
	ok(t, "incr")
	if got := ok(t, "join"); got != "every increment up to 2 is on disk and printed\n" {
		t.Errorf("join printed %q", got)
	}
	var counter counterv1.JoinResponse
	unmarshal(t, ok(t, "join", "--json"), &counter)
	if counter.GetSequence() != 2 || !counter.GetPrinted() {
		t.Errorf("join --json: %v", &counter)
	}
	if got := ok(t, "join", "--printer"); got != "every job up to 2 is written\n" {
		t.Errorf("join --printer printed %q", got)
	}
	var printer printerv1.JoinResponse
	unmarshal(t, ok(t, "--json", "join", "--printer"), &printer)
	if printer.GetSequence() != 2 {
		t.Errorf("join --printer --json: %v", &printer)
	}

	startConcurd(t, "--services=counter")
	if got := ok(t, "join"); got != "every increment up to 0 is on disk (this counter has no printer)\n" {
		t.Errorf("join without a printer printed %q", got)
	}
}

func TestPrintAndTail(t *testing.T) {
	startConcurd(t)
	if got := ok(t, "print", "Starting up"); got != "accepted as job 1\n" {
		t.Errorf("print printed %q", got)
	}
	var printed printerv1.PrintResponse
	unmarshal(t, ok(t, "print", "--json", "hello", "--", "-world-"), &printed)
	if printed.GetSequence() != 2 {
		t.Errorf("print --json: %v", &printed)
	}
	ok(t, "join", "--printer")
	if got := ok(t, "tail"); got != "Starting up\nhello\n-world-\n" {
		t.Errorf("tail printed %q", got)
	}
	if got := ok(t, "tail", "--from", "2"); got != "hello\n-world-\n" {
		t.Errorf("tail --from 2 printed %q", got)
	}
	var job printerv1.TailResponse
	unmarshal(t, ok(t, "tail", "--from=2", "--json"), &job)
	if job.GetSequence() != 2 || !slices.Equal(job.GetLines(), []string{"hello", "-world-"}) || job.GetWrittenAt() == nil {
		t.Errorf("tail --json: %v", &job)
	}

	// A line the contract refuses is a usage error.
	if _, stderr, code := concur(t, "print", "a\tb", "bell\a"); code != 2 || !strings.HasPrefix(stderr, "concur print: invalid request: lines[1]: ") {
		t.Errorf("print of a control character: exit %d, stderr %q", code, stderr)
	}
}

func TestFollow(t *testing.T) {
	testkit.NoLeaks(t)
	startConcurd(t)
	ok(t, "print", "before")
	tail := start(t, "tail", "-f")
	tail.expect(t, "before")
	ok(t, "incr")
	tail.expect(t, "The count is 1")
	tail.expect(t, "---------------")
	tail.interrupt(t)
}

func TestWatch(t *testing.T) {
	testkit.NoLeaks(t)
	startConcurd(t)
	ok(t, "incr", "w", "--by", "41")
	watch := start(t, "watch", "w")
	watch.expect(t, "41")
	ok(t, "incr", "w")
	watch.expect(t, "42")
	watch.interrupt(t)

	watch = start(t, "watch", "--json", "w")
	var r counterv1.WatchResponse
	unmarshal(t, watch.next(t)+"\n", &r)
	if r.GetName() != "w" || r.GetValue() != 42 || r.GetSequence() != 2 {
		t.Errorf("watch --json: %v", &r)
	}
	watch.interrupt(t)
}

func TestCase(t *testing.T) {
	startConcurd(t, "--services=caser")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"case", "hello"}, "HELLO\n"},
		{[]string{"case", "--title", "thinking", "about", "concurrency"}, "Thinking About Concurrency\n"},
		{[]string{"case", "they're bill's", "--title"}, "They'Re Bill'S\n"},
		{[]string{"case", "straße"}, "STRASSE\n"},
	} {
		if got := ok(t, c.args...); got != c.want {
			t.Errorf("concur %q printed %q, want %q", c.args, got, c.want)
		}
	}
	var r caserv1.CaseResponse
	unmarshal(t, ok(t, "case", "--json", "--title", "hello world"), &r)
	if r.GetText() != "Hello World" || r.GetMode() != caserv1.Mode_MODE_TITLE {
		t.Errorf("case --json: %v", &r)
	}
}

func TestSize(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(bytes.Repeat([]byte{'x'}, len(r.URL.Path)))
	}))
	defer web.Close()
	startConcurd(t, "--services=sitesize", "--sitesize-allow=127.0.0.0/8", "--sitesize-allow-ports=1024-65535")
	stdout := ok(t, "size", web.URL+"/abc", web.URL+"/abcdefgh")
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	slices.Sort(lines)
	if len(lines) != 2 || !regexp.MustCompile(`^`+regexp.QuoteMeta(web.URL)+`/abc 4 200 \S+$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^`+regexp.QuoteMeta(web.URL)+`/abcdefgh 9 200 \S+$`).MatchString(lines[1]) {
		t.Errorf("size printed:\n%s", stdout)
	}
	var r sitesizev1.MeasureResponse
	unmarshal(t, ok(t, "size", "--json", web.URL+"/ab"), &r)
	if r.GetUrl() != web.URL+"/ab" || r.GetSize() != 3 || r.GetStatus() != 200 || r.GetIndex() != 0 {
		t.Errorf("size --json: %v", &r)
	}

	stdout, stderr, code := concur(t, "size", web.URL+"/a", "http://10.0.0.1/")
	if code != 1 || stderr != "concur size: 1 of 2 URLs could not be measured\n" || !strings.Contains(stdout, "http://10.0.0.1/ 0 - ") || !strings.Contains(stdout, " BLOCKED: ") {
		t.Errorf("a URL that fails: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if _, stderr, code := concur(t, "size", "ftp://example.com/"); code != 2 || !strings.HasPrefix(stderr, `concur size: invalid request: urls[0]: has scheme "ftp"`) {
		t.Errorf("an ftp URL: exit %d, stderr %q", code, stderr)
	}
}

// concur connects as internal/dial says: TLS with a CA to trust and a bearer token.
func TestTLSAndToken(t *testing.T) {
	certs := e2e.WriteCerts(t)
	token := e2e.WriteToken(t, t.TempDir(), "s3cret")
	startConcurd(t, "--services=caser", "--tls-cert="+certs.ServerCert, "--tls-key="+certs.ServerKey, "--auth-token-file="+token)
	if got := ok(t, "case", "--tls-ca", certs.CA, "--token-file", token, "hi"); got != "HI\n" {
		t.Errorf("with TLS and the token: %q", got)
	}
	if _, stderr, code := concur(t, "--tls-ca", certs.CA, "case", "hi"); code != 3 || !strings.HasPrefix(stderr, "concur case: Unauthenticated: ") {
		t.Errorf("without the token: exit %d, stderr %q", code, stderr)
	}
}

func TestUnreachable(t *testing.T) {
	for _, args := range [][]string{{"get"}, {"watch", "w"}, {"tail", "-f"}, {"size", "http://example.com/"}} {
		stdout, stderr, code := concur(t, append([]string{"--addr", "127.0.0.1:1"}, args...)...)
		if want := "concur " + args[0] + ": no concur service answered at 127.0.0.1:1: is concurd running? (connection refused)\n"; code != 3 || stderr != want || stdout != "" {
			t.Errorf("concur %q: exit %d, stderr %q; want 3, saying %q", args, code, stderr, want)
		}
	}
}

// Usage errors are one line and exit 2, whatever the command; --help and concur help print
// help on standard output.
func TestUsage(t *testing.T) {
	for _, c := range []struct {
		env  string
		args []string
		says string
	}{
		{"", nil, "concur: missing COMMAND\nrun 'concur --help' for usage\n"},
		{"", []string{"nope"}, "concur: unknown command \"nope\"\nrun 'concur --help' for usage\n"},
		{"", []string{"help", "nope"}, "concur: unknown command \"nope\"\nrun 'concur --help' for usage\n"},
		{"", []string{"--nope", "get"}, "concur: unknown flag --nope\nrun 'concur --help' for usage\n"},
		{"", []string{"get", "a", "b"}, "concur get: unexpected argument \"b\"\nrun 'concur get --help' for usage\n"},
		{"", []string{"print"}, "concur print: missing LINE...\nrun 'concur print --help' for usage\n"},
		{"", []string{"join", "now"}, "concur join: unexpected argument \"now\"\nrun 'concur join --help' for usage\n"},
		{"", []string{"incr", "--by", "x"}, "concur incr: invalid value \"x\" for flag --by: want a whole number\nrun 'concur incr --help' for usage\n"},
		{"", []string{"tail", "--from=-1"}, "concur tail: invalid value \"-1\" for flag --from: want a whole number, 0 or more\nrun 'concur tail --help' for usage\n"},
		{"", []string{"get", "--title"}, "concur get: unknown flag --title\nrun 'concur get --help' for usage\n"},
		{"CONCUR_JSON=maybe", []string{"get"}, "concur: invalid value \"maybe\" for CONCUR_JSON (--json): want true or false\nrun 'concur --help' for usage\n"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			if name, value, ok := strings.Cut(c.env, "="); ok {
				t.Setenv(name, value)
			}
			stdout, stderr, code := concur(t, c.args...)
			if code != 2 || stderr != c.says || stdout != "" {
				t.Errorf("%s concur %q: exit %d, stdout %q, stderr %q; want exit 2 and %q", c.env, c.args, code, stdout, stderr, c.says)
			}
		})
	}

	help := ok(t, "help")
	if ok(t, "--help") != help || !strings.HasPrefix(help, "Usage: concur [flags] COMMAND [ARGS...]\n") ||
		!strings.Contains(help, "\nConnection:\n  --addr address\n") || !strings.Contains(help, "\n  --json\n") {
		t.Errorf("concur help:\n%s", help)
	}
	for _, c := range commands {
		if !strings.Contains(help, "\n  "+strings.TrimSpace(c.name+" "+c.args)+" ") {
			t.Errorf("concur help does not list %s:\n%s", c.name, help)
		}
		sub := ok(t, c.name, "--help")
		if ok(t, "help", c.name) != sub || !strings.HasPrefix(sub, strings.TrimSpace("Usage: concur "+c.name+" [flags] "+c.args)+"\n") ||
			!strings.Contains(sub, "The flags of 'concur --help' work here too.") || strings.Contains(sub, "--addr") {
			t.Errorf("concur %s --help:\n%s", c.name, sub)
		}
	}
	if got := ok(t, "--version"); !strings.HasPrefix(got, "github.com/concur-dev/concur ") {
		t.Errorf("--version: %q", got)
	}
}

// running is a concur command left running, whose output a test reads line by line.
type running struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr bytes.Buffer // read once the command has exited
	exited chan error
}

func start(t *testing.T, args ...string) *running {
	t.Helper()
	r := &running{cmd: exec.Command(e2e.Build(t, "./clients/concur"), args...), lines: make(chan string, 100), exited: make(chan error, 1)}
	out, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	r.cmd.Stderr = &r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			r.lines <- sc.Text()
		}
		close(r.lines)
		r.exited <- r.cmd.Wait()
	}()
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		for range r.lines {
		}
	})
	return r
}

// next is the command's next line of output.
func (r *running) next(t *testing.T) string {
	t.Helper()
	select {
	case line, ok := <-r.lines:
		if !ok {
			t.Fatalf("the command ended: %v\n%s", <-r.exited, r.stderr.String())
		}
		return line
	case <-time.After(testTimeout):
		t.Fatal("no line from the command")
		return ""
	}
}

func (r *running) expect(t *testing.T, want string) {
	t.Helper()
	if got := r.next(t); got != want {
		t.Fatalf("the command printed %q, want %q", got, want)
	}
}

// interrupt sends SIGINT, as Ctrl-C does, and checks that the command exits 130, printing
// nothing more but that it was interrupted.
func (r *running) interrupt(t *testing.T) {
	t.Helper()
	r.cmd.Process.Signal(syscall.SIGINT)
	var more []string
	deadline := time.After(testTimeout)
	for {
		select {
		case line, ok := <-r.lines:
			if ok {
				more = append(more, line)
				continue
			}
			err := <-r.exited
			if name := "concur " + r.cmd.Args[1]; e2e.ExitCode(err) != 130 || r.stderr.String() != name+": interrupted\n" || len(more) > 0 {
				t.Fatalf("after SIGINT: %v, stderr %q, further output %q; want exit 130, saying %s: interrupted", err, r.stderr.String(), more, name)
			}
			return
		case <-deadline:
			t.Fatal("the command still runs after SIGINT")
		}
	}
}
