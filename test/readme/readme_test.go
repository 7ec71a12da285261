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

// plan says how to run the grpcurl examples of one section ("## ") of a document.
type plan struct {
	// blocks holds, for each grpcurl block of the section in order, the fewest grpcurl
	// commands it must have, so that a parser finding nothing cannot pass.
	blocks []int
	// restartBefore is a block that runs on concurd restarted with the same flags (0: none).
	restartBefore int
	// prepare, when set, puts in the session's folder, before concurd starts, the files the
	// section takes for granted (a token, certificates), under the names it gives them.
	prepare func(t *testing.T, s *session)
	// atRestart checks what the document says of the concurd stopped at the restart, given
	// the blocks that ran on it.
	atRestart func(t *testing.T, s *session, stopped *e2e.Process, blocks []readme.Block)
}

// plans holds, for each document, how to run each section with grpcurl examples. The
// examples of a section share one concurd, started with the flags of the last
// `go run ./cmd/concurd` the section shows before its first block (in its text or its code),
// or with none.
var plans = map[string]map[string]plan{
	"README.md": {
		"Call the services": {blocks: []int{5}},
	},
	"docs/integrating.md": {
		"From grpcurl": {blocks: []int{3}},
	},
	"docs/operating.md": {
		"Health":       {blocks: []int{2}},
		"Bearer token": {blocks: []int{5}, prepare: writeToken},
		"TLS and mTLS": {blocks: []int{1}, prepare: linkCerts},
	},
	"docs/printer.md": {
		"With grpcurl": {blocks: []int{6, 1, 3}, restartBefore: 2, atRestart: printerStdout},
	},
	"docs/counter.md": {
		"With grpcurl": {blocks: []int{1, 3, 1, 3, 3}},
	},
	"docs/sitesize.md": {
		"With grpcurl": {blocks: []int{1, 1, 2}},
	},
	"docs/caser.md": {
		"With grpcurl": {blocks: []int{1, 3}},
	},
}

// documents are the README and every Markdown file of docs/, as paths from the root.
func documents(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join(e2e.Root(t), "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"README.md"}
	for _, d := range docs {
		names = append(names, "docs/"+filepath.Base(d))
	}
	return names
}

// Every grpcurl command of the README and of docs/, run as a user types it: through bash,
// with grpcurl the binary pinned in tools/go.mod, against concurd started the way the section
// says, in a folder of its own. Only addresses, ports and file names are rewritten. Where the
// document shows output, grpcurl's real output (stdout and stderr, as a terminal shows them)
// must be the same once what truly varies is set aside, and the exit status must be
// grpcurl's for what is shown (0 when no error is shown).
func TestReadmeGrpcurlExamples(t *testing.T) {
	testkit.NoLeaks(t)
	root := e2e.Root(t)
	sections := map[string]map[string][]readme.Block{}
	for _, doc := range documents(t) {
		text, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			t.Fatal(err)
		}
		blocks, err := readme.Parse(string(text))
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		sections[doc] = map[string][]readme.Block{}
		for _, b := range blocks {
			if !slices.ContainsFunc(b.Commands, isGrpcurl) {
				continue // a client's session: its own tests run it
			}
			if _, ok := plans[doc][b.Section]; !ok {
				t.Errorf("%s:%d: grpcurl examples under %q, a section the test does not know how to run: add it to plans", doc, b.Line, b.Section)
			}
			sections[doc][b.Section] = append(sections[doc][b.Section], b)
		}
	}
	grpcurl := e2e.Grpcurl(t)
	for doc, docPlans := range plans {
		for title, p := range docPlans {
			t.Run(doc+"/"+title, func(t *testing.T) {
				t.Parallel()
				if _, ok := sections[doc]; !ok {
					t.Fatalf("%s: no such document: remove it from plans, or say where its examples went", doc)
				}
				bs := sections[doc][title]
				if len(bs) != len(p.blocks) {
					t.Fatalf("%s has %d grpcurl blocks under %q; the test expects %d: say in plans how to run them", doc, len(bs), title, len(p.blocks))
				}
				for i, b := range bs {
					if n := count(b.Commands, isGrpcurl); n < p.blocks[i] {
						t.Errorf("%s:%d: found %d grpcurl commands, want at least %d", doc, b.Line, n, p.blocks[i])
					}
				}
				run(t, newSession(t, doc, grpcurl), p, bs)
			})
		}
	}
}

// Every relative link of the README and of docs/ leads to a file or folder of the repository
// and, when it names a heading of a Markdown file (#anchor), to a heading that is there.
// The files others are writing at the same time, which arrive in a later merge, may be
// missing; once they are there, links into them are checked like the others.
func TestDocumentLinks(t *testing.T) {
	root := e2e.Root(t)
	arriving := map[string]bool{"docs/commands.md": true, "docs/replicas.md": true, "clients/python/README.md": true}
	anchors := func(path string) (map[string]bool, error) {
		text, err := os.ReadFile(filepath.Join(root, path))
		return readme.Anchors(string(text)), err
	}
	for _, doc := range documents(t) {
		text, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			t.Fatal(err)
		}
		links := readme.Links(string(text))
		if len(links) == 0 && doc == "README.md" {
			t.Errorf("%s: no links found: the parser is broken", doc)
		}
		for _, l := range links {
			if scheme.MatchString(l.Target) {
				continue // a URL: not this test's business
			}
			path, fragment, _ := strings.Cut(l.Target, "#")
			target := doc // a link to #anchor is to the document itself
			if path != "" {
				target = filepath.ToSlash(filepath.Join(filepath.Dir(doc), path))
			}
			if strings.HasPrefix(target, "../") || filepath.IsAbs(path) {
				t.Errorf("%s:%d: %s leads out of the repository", doc, l.Line, l.Target)
				continue
			}
			if _, err := os.Stat(filepath.Join(root, target)); err != nil {
				if !arriving[target] {
					t.Errorf("%s:%d: %s leads to %s, which is not there", doc, l.Line, l.Target, target)
				}
				continue
			}
			if fragment == "" || !strings.HasSuffix(target, ".md") {
				continue
			}
			if a, err := anchors(target); err != nil {
				t.Errorf("%s:%d: %v", doc, l.Line, err)
			} else if !a[fragment] {
				t.Errorf("%s:%d: %s: %s has no heading whose anchor is #%s", doc, l.Line, l.Target, target, fragment)
			}
		}
	}
}

// scheme starts a URL: https:, mailto:, ...
var scheme = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)

// session is what one section's examples share: a folder, concurd, a web server to measure.
type session struct {
	doc  string // the document, for messages
	dir  string // the shell's working folder
	path string // PATH, the built grpcurl first
	web  *httptest.Server
	p    *e2e.Process
}

func newSession(t *testing.T, doc, grpcurl string) *session {
	t.Helper()
	s := &session{doc: doc, dir: t.TempDir()}
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
	if p.prepare != nil {
		p.prepare(t, s)
	}
	args := s.concurdArgs(blocks[0].Concurd)
	s.p = e2e.StartConcurd(t, args...)
	for i, b := range blocks {
		if i > 0 && i == p.restartBefore {
			stopped := s.p
			s.stop(t)
			if p.atRestart != nil {
				p.atRestart(t, s, stopped, blocks[:i])
			}
			s.p = e2e.StartConcurd(t, args...)
		}
		for _, c := range b.Commands {
			switch c.Program() {
			case "#":
			case "alias":
				// The documents' way to get the pinned grpcurl; PATH has it built already.
				if c.Text != "alias grpcurl='go tool -modfile=tools/go.mod grpcurl'" {
					t.Errorf("%s:%d: an alias the test does not know: %s", s.doc, c.Line, c.Text)
				}
			case "grpcurl", "cat":
				s.check(t, c)
			default:
				t.Errorf("%s:%d: a command the test does not know how to run: %s", s.doc, c.Line, c.Text)
			}
		}
	}
}

// fileFlags are concurd's flags that name a file or folder.
var fileFlags = map[string]bool{
	"--printer-file": true, "--counter-db": true, "--auth-token-file": true,
	"--tls-cert": true, "--tls-key": true, "--tls-client-ca": true,
}

// concurdArgs are the document's flags for concurd, with a relative file name in the
// session's folder and port 8000 (where the documents serve pages to measure) the web
// server's.
func (s *session) concurdArgs(docArgs []string) []string {
	var args []string
	for _, a := range docArgs {
		if name, value, ok := strings.Cut(a, "="); ok && fileFlags[name] && value != ":memory:" && !filepath.IsAbs(value) {
			a = name + "=" + filepath.Join(s.dir, value)
		}
		args = append(args, s.rewrite(a))
	}
	return args
}

// rewrite puts the addresses of this test where the document has its own.
func (s *session) rewrite(text string) string {
	port := strconv.Itoa(s.web.Listener.Addr().(*net.TCPAddr).Port)
	pairs := []string{":8000", ":" + port, "=8000", "=" + port}
	if s.p != nil {
		pairs = append(pairs, "localhost:50051", s.p.Addr)
	}
	return strings.NewReplacer(pairs...).Replace(text)
}

// check runs c and compares what it does with what the document shows.
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
		t.Fatalf("%s:%d: %v", s.doc, c.Line, err)
	}
	want, err := exitStatus(c.Output)
	if err != nil {
		t.Errorf("%s:%d: %v", s.doc, c.Line, err)
	}
	if code != want {
		t.Errorf("%s:%d: %s\nexited %d, want %d; it printed:\n%s", s.doc, c.Line, c.Text, code, want, out.String())
	}
	if c.Output == "" {
		return
	}
	got, shown := s.normalise(c, out.String(), false), s.normalise(c, s.rewrite(c.Output), true)
	if got != shown {
		t.Errorf("%s:%d: %s\nprinted:\n%s\nthe document shows (normalised):\n%s", s.doc, c.Line, c.Text, got, shown)
	}
}

var grpcCodes = func() map[string]codes.Code {
	m := map[string]codes.Code{}
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		m[c.String()] = c
	}
	return m
}()

var (
	errorCode = regexp.MustCompile(`(?m)^ERROR:\n  Code: (\w+)$`)
	// failure is how grpcurl says it could not get as far as the call: the listing, or the
	// descriptor of the method, was refused.
	failure = regexp.MustCompile(`(?m)^(Failed to |Error invoking method ).*: rpc error: code = \w+ desc = `)
)

// exitStatus is grpcurl's exit status for the output shown: 64 plus the code of the error
// shown, 1 when grpcurl failed before the call, 0 when no error is shown.
func exitStatus(output string) (int, error) {
	if failure.MatchString(output) {
		return 1, nil
	}
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
// the message of a deadline, the order of sitesize's unordered results and, in what the
// document shows, the size of a page it measured (that of the file as this checkout has it,
// served by this test's web server).
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

// writeToken writes the bearer token that "Bearer token" names `token`.
func writeToken(t *testing.T, s *session) {
	e2e.WriteToken(t, s.dir, "s3cret")
}

// linkCerts puts in the session's folder the certificates that "TLS and mTLS" names: a CA,
// a server certificate for localhost and 127.0.0.1, and a client certificate.
func linkCerts(t *testing.T, s *session) {
	certs := e2e.WriteCerts(t)
	for _, from := range []string{certs.CA, certs.ServerCert, certs.ServerKey, certs.ClientCert, certs.ClientKey} {
		if err := os.Symlink(from, filepath.Join(s.dir, filepath.Base(from))); err != nil {
			t.Fatal(err)
		}
	}
}

// printerStdout checks that "concurd's standard output shows the same lines" as the file
// the printer wrote: the output of the `cat` the document shows.
func printerStdout(t *testing.T, s *session, stopped *e2e.Process, blocks []readme.Block) {
	for _, b := range blocks {
		for _, c := range b.Commands {
			if c.Program() == "cat" {
				if got := stopped.Stdout(); got != c.Output {
					t.Errorf("concurd's standard output:\n%s\nthe file, as %s shows it:\n%s", got, s.doc, c.Output)
				}
				return
			}
		}
	}
	t.Errorf("%s:%d: no `cat` of the printer's file", s.doc, blocks[0].Line)
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
