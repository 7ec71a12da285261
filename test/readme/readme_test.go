package readme_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/concur-dev/concur/internal/e2e"
	"github.com/concur-dev/concur/internal/testkit"
	"github.com/concur-dev/concur/test/readme"
)

func TestMain(m *testing.M) { e2e.Main(m) }

// plan says how to run the grpcurl examples of one README section.
type plan struct {
	// blocks holds, for each grpcurl block of the section in order, the fewest grpcurl
	// commands it must have, so that a parser finding nothing cannot pass.
	blocks []int
	// restartBefore is a block that runs on concurd restarted with the same flags (0: none).
	restartBefore int
	// server, when set, starts a concurd of its own for each command. Otherwise the section's
	// examples share one, started with the flags of the `go run ./cmd/concurd` the section
	// shows before its first block, or with none.
	server func(t *testing.T, s *session, c readme.Command) *e2e.Process
	// atRestart checks what the README says of the concurd stopped at the restart, given
	// the blocks that ran on it.
	atRestart func(t *testing.T, stopped *e2e.Process, blocks []readme.Block)
}

var plans = map[string]plan{
	"Calling the services with grpcurl": {blocks: []int{5}},
	"Running concurd":                   {blocks: []int{2}, server: securedConcurd},
	"The printer":                       {blocks: []int{6, 1, 3}, restartBefore: 2, atRestart: printerStdout},
	"The counter":                       {blocks: []int{1, 3, 1, 3, 3}},
	"The sitesize service: page sizes in batches": {blocks: []int{1, 1, 1}},
	"The caser: the talk's async sessions":        {blocks: []int{1, 3}},
}

// Every grpcurl command of the README, run as a user types it: through bash, with grpcurl
// the binary pinned in tools/go.mod, against concurd started the way the section says, in a
// folder of its own. Only addresses, ports and file names are rewritten. Where the README
// shows output, grpcurl's real output (stdout and stderr, as a terminal shows them) must be
// the same once what truly varies is set aside, and the exit status must be grpcurl's for
// the code shown (0 when no error is shown).
func TestReadmeGrpcurlExamples(t *testing.T) {
	testkit.NoLeaks(t)
	doc, err := os.ReadFile(filepath.Join(e2e.Root(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := readme.Parse(string(doc))
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	sections := map[string][]readme.Block{}
	for _, b := range blocks {
		if !slices.ContainsFunc(b.Commands, isGrpcurl) {
			continue // a client's session: its own tests run it
		}
		if _, ok := plans[b.Section]; !ok {
			t.Errorf("README.md:%d: grpcurl examples under %q, a section the test does not know how to run: add it to plans", b.Line, b.Section)
		}
		sections[b.Section] = append(sections[b.Section], b)
	}
	grpcurl := e2e.Grpcurl(t)
	for title, p := range plans {
		t.Run(title, func(t *testing.T) {
			t.Parallel()
			bs := sections[title]
			if len(bs) != len(p.blocks) {
				t.Fatalf("the README has %d grpcurl blocks under %q; the test expects %d: say in plans how to run them", len(bs), title, len(p.blocks))
			}
			for i, b := range bs {
				if n := count(b.Commands, isGrpcurl); n < p.blocks[i] {
					t.Errorf("README.md:%d: found %d grpcurl commands, want at least %d", b.Line, n, p.blocks[i])
				}
			}
			run(t, newSession(t, grpcurl), p, bs)
		})
	}
}

// session is what one section's examples share: a folder, concurd, a web server to measure.
type session struct {
	dir  string // the shell's working folder
	path string // PATH, the built grpcurl first
	web  *httptest.Server
	p    *e2e.Process
}

func newSession(t *testing.T, grpcurl string) *session {
	t.Helper()
	s := &session{dir: t.TempDir()}
	bin := t.TempDir()
	if err := os.Symlink(grpcurl, filepath.Join(bin, "grpcurl")); err != nil {
		t.Fatal(err)
	}
	s.path = bin + string(os.PathListSeparator) + os.Getenv("PATH")
	// In place of `python3 -m http.server 8000` in the repository's root.
	s.web = httptest.NewServer(http.FileServer(http.Dir(e2e.Root(t))))
	t.Cleanup(s.web.Close)
	return s
}

func run(t *testing.T, s *session, p plan, blocks []readme.Block) {
	args := s.concurdArgs(blocks[0].Concurd)
	if p.server == nil {
		s.p = e2e.StartConcurd(t, args...)
	}
	for i, b := range blocks {
		if i > 0 && i == p.restartBefore {
			stopped := s.p
			s.stop(t)
			if p.atRestart != nil {
				p.atRestart(t, stopped, blocks[:i])
			}
			s.p = e2e.StartConcurd(t, args...)
		}
		for _, c := range b.Commands {
			switch c.Program() {
			case "#":
			case "alias":
				// The README's way to get the pinned grpcurl; PATH has it built already.
				if c.Text != "alias grpcurl='go tool -modfile=tools/go.mod grpcurl'" {
					t.Errorf("README.md:%d: an alias the test does not know: %s", c.Line, c.Text)
				}
			case "grpcurl", "cat":
				if p.server != nil {
					s.p = p.server(t, s, c)
				}
				s.check(t, c)
			default:
				t.Errorf("README.md:%d: a command the test does not know how to run: %s", c.Line, c.Text)
			}
		}
	}
}

// concurdArgs are the README's flags for concurd, with a file name in the session's folder
// and port 8000 (where the README serves pages to measure) the web server's.
func (s *session) concurdArgs(readmeArgs []string) []string {
	var args []string
	for _, a := range readmeArgs {
		if name, value, ok := strings.Cut(a, "="); ok && name == "--printer-file" && !filepath.IsAbs(value) {
			a = name + "=" + filepath.Join(s.dir, value)
		}
		args = append(args, s.rewrite(a))
	}
	return args
}

// rewrite puts the addresses of this test where the README has its own.
func (s *session) rewrite(text string) string {
	port := strconv.Itoa(s.web.Listener.Addr().(*net.TCPAddr).Port)
	pairs := []string{":8000", ":" + port, "=8000", "=" + port}
	if s.p != nil {
		pairs = append(pairs, "localhost:50051", s.p.Addr)
	}
	return strings.NewReplacer(pairs...).Replace(text)
}

// check runs c and compares what it does with what the README shows.
func (s *session) check(t *testing.T, c readme.Command) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", s.rewrite(c.Text))
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "PATH="+s.path)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out // one pipe: interleaved as a terminal shows them
	err := cmd.Run()
	code := e2e.ExitCode(err)
	if code < 0 {
		t.Fatalf("README.md:%d: %v", c.Line, err)
	}
	want, err := exitStatus(c.Output)
	if err != nil {
		t.Errorf("README.md:%d: %v", c.Line, err)
	}
	if code != want {
		t.Errorf("README.md:%d: %s\nexited %d, want %d; it printed:\n%s", c.Line, c.Text, code, want, out.String())
	}
	if c.Output == "" {
		return
	}
	got, shown := s.normalise(c, out.String(), false), s.normalise(c, s.rewrite(c.Output), true)
	if got != shown {
		t.Errorf("README.md:%d: %s\nprinted:\n%s\nthe README shows (normalised):\n%s", c.Line, c.Text, got, shown)
	}
}

var grpcCodes = func() map[string]codes.Code {
	m := map[string]codes.Code{}
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		m[c.String()] = c
	}
	return m
}()

var errorCode = regexp.MustCompile(`(?m)^ERROR:\n  Code: (\w+)$`)

// exitStatus is grpcurl's exit status for the output shown: 64 plus the code of the error
// shown, 0 when none is.
func exitStatus(output string) (int, error) {
	m := errorCode.FindStringSubmatch(output)
	if m == nil {
		return 0, nil
	}
	c, ok := grpcCodes[m[1]]
	if !ok {
		return 0, errors.New("the output shows an unknown code " + m[1])
	}
	return 64 + int(c), nil
}

var (
	timestamp = regexp.MustCompile(`"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"`)
	elapsed   = regexp.MustCompile(`"elapsed": "[0-9.]+s"`)
	size      = regexp.MustCompile(`"size": "\d+"`)
	finalURL  = regexp.MustCompile(`"finalUrl": "([^"]+)"`)
	// Which of grpcurl's -max-time and the server's deadline ends a call first varies, and
	// with it the message.
	deadline = regexp.MustCompile(`(?m)^(  Code: DeadlineExceeded\n  Message: ).*$`)
)

// normalise sets aside what truly varies from one run to the next: times, elapsed times,
// the message of a deadline, the order of sitesize's unordered results and, in what the README shows, the size of a page it
// measured (that of the file as this checkout has it, served by this test's web server).
func (s *session) normalise(c readme.Command, out string, shown bool) string {
	out = timestamp.ReplaceAllString(out, `"TIMESTAMP"`)
	out = elapsed.ReplaceAllString(out, `"elapsed": "ELAPSED"`)
	out = deadline.ReplaceAllString(out, "${1}DEADLINE")
	if !strings.Contains(c.Text, "SiteSizeService/Measure") {
		return out
	}
	results := strings.SplitAfter(out, "\n}\n")
	for i, r := range results {
		if m := finalURL.FindStringSubmatch(r); m != nil && shown {
			results[i] = size.ReplaceAllString(r, `"size": "`+strconv.Itoa(s.served(m[1]))+`"`)
		}
	}
	if !strings.Contains(c.Text, `"ordered": true`) {
		slices.Sort(results)
	}
	return strings.Join(results, "")
}

// served is the size of the body the web server sends for rawURL.
func (s *session) served(rawURL string) int {
	resp, err := http.Get(rawURL)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return -1
	}
	return int(n)
}

// securedConcurd starts concurd as "Running concurd" asks for the command: with a bearer
// token for the one that sends it, with TLS and client certificates for the one that
// presents them. The token and the PEM files are in the session's folder, named as in the
// README.
func securedConcurd(t *testing.T, s *session, c readme.Command) *e2e.Process {
	switch {
	case strings.Contains(c.Text, "authorization: Bearer $(cat token)"):
		token := e2e.WriteToken(t, s.dir, "s3cret")
		return e2e.StartConcurd(t, "--auth-token-file="+token)
	case strings.Contains(c.Text, "-cacert ca.pem -cert client.pem -key client-key.pem"):
		certs := e2e.WriteCerts(t)
		for name, from := range map[string]string{"ca.pem": certs.CA, "client.pem": certs.ClientCert, "client-key.pem": certs.ClientKey} {
			if err := os.Symlink(from, filepath.Join(s.dir, name)); err != nil {
				t.Fatal(err)
			}
		}
		return e2e.StartConcurd(t, "--tls-cert="+certs.ServerCert, "--tls-key="+certs.ServerKey, "--tls-client-ca="+certs.CA)
	}
	t.Fatalf("README.md:%d: no secured concurd for %s", c.Line, c.Text)
	return nil
}

// printerStdout checks that "concurd's standard output shows the same lines" as the file
// the printer wrote: the output of the `cat` the README shows.
func printerStdout(t *testing.T, stopped *e2e.Process, blocks []readme.Block) {
	for _, b := range blocks {
		for _, c := range b.Commands {
			if c.Program() == "cat" {
				if got := stopped.Stdout(); got != c.Output {
					t.Errorf("concurd's standard output:\n%s\nthe file, as the README shows it:\n%s", got, c.Output)
				}
				return
			}
		}
	}
	t.Errorf("README.md:%d: no `cat` of the printer's file", blocks[0].Line)
}

// stop ends the session's concurd, if it runs, with SIGTERM and checks that it drained and
// exited 0.
func (s *session) stop(t *testing.T) {
	t.Helper()
	p := s.p
	if p == nil {
		return
	}
	s.p = nil
	p.Stop(t)
}

func isGrpcurl(c readme.Command) bool { return c.Program() == "grpcurl" }

func count[T any](s []T, f func(T) bool) int {
	n := 0
	for _, v := range s {
		if f(v) {
			n++
		}
	}
	return n
}
