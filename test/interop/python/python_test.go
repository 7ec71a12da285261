// Package python proves that Python can use concur from its .proto files alone: it generates
// Python stubs with the machine's protoc (clients/python/generate.sh), runs the Python talk
// and check of clients/python against a real concurd, and checks what they printed and what
// concurd printed.
package python

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/concur-dev/concur/internal/demosites"
	"github.com/concur-dev/concur/internal/e2e"
	"github.com/concur-dev/concur/internal/testkit"
)

func TestMain(m *testing.M) { e2e.Main(m) }

// install says how to get what the test needs: a machine without it must not pass this test
// by skipping it.
const install = "This test runs concur's Python clients and needs Python 3 with grpcio and " +
	"protobuf, protoc with its Python gRPC plugin, and the well-known types: on Debian or " +
	"Ubuntu, `sudo apt-get install -y python3-grpcio python3-protobuf protobuf-compiler " +
	"protobuf-compiler-grpc libprotobuf-dev`. .ci/run installs them itself. $CONCUR_PYTHON " +
	"names another Python to try first."

var announcement = regexp.MustCompile(`(?m)^ *The event loop is still running at: .*\n`)

func TestPythonClients(t *testing.T) {
	py := &python{path: findPython(t), root: e2e.Root(t), gen: t.TempDir()}
	readInputs(t, py.root)
	generate(t, py.root, py.gen)
	testkit.NoLeaks(t) // first of the cleanups, so that it checks last

	site := e2e.ServePages(t)
	// An address for the talk's demo sites, which concurd must be allowed to fetch from before
	// the talk serves them.
	demoAddr := e2e.FreeAddr(t)
	_, demoPort, _ := net.SplitHostPort(demoAddr)
	p := e2e.StartConcurd(t,
		"--counter-db="+filepath.Join(t.TempDir(), "counter.db"),
		"--sitesize-allow=127.0.0.1/32", "--sitesize-allow-ports="+site.Port()+","+demoPort,
		"--caser-announce=2ms") // often enough that the clients hear some, which they must pass over
	var pageURLs []string
	for _, path := range []string{"/small", "/large", "/missing"} {
		pageURLs = append(pageURLs, "http://"+site.Host+path)
	}
	// A port concurd refuses to fetch from, so that a result is an error.
	blocked := "http://127.0.0.1:1/"

	t.Run("talk", func(t *testing.T) {
		stdout := py.run(t, 0, "talk.py", append([]string{"--addr", p.Addr, "--workers=4", "--increments=3", "--jitter=0.002"}, append(pageURLs, blocked)...)...)
		// On a fresh counter the workers count 1 to 12, and the printer wrote exactly the talk's
		// output, which concurd printed too.
		checkThreading(t, stdout, 1, 12)
		if out := p.WaitStdout(t, len(e2e.TalkOutput(1, 12))); out != e2e.TalkOutput(1, 12) {
			t.Errorf("concurd printed:\n%s\nwant:\n%s", out, e2e.TalkOutput(1, 12))
		}
		for _, u := range pageURLs {
			if want := fmt.Sprintf("(%s, %d)\n", pyString(u), len(e2e.Pages[strings.TrimPrefix(u, "http://"+site.Host)].Body)); !strings.Contains(stdout, want) {
				t.Errorf("the talk does not show %q", want)
			}
		}
		if want := fmt.Sprintf("(%s, 'FETCH_ERROR_CODE_BLOCKED: ", pyString(blocked)); !strings.Contains(stdout, want) {
			t.Errorf("the talk does not show %q...", want)
		}
		i, j := strings.Index(stdout, "user A "), strings.Index(stdout, "\nCheck passed: user A switched")
		if i < 0 || j < i {
			t.Fatalf("no caser sessions in the talk's output")
		}
		// The same exchange as the Go talk's, which keeps it in its testdata.
		want, err := os.ReadFile(filepath.Join(py.root, "clients", "talk", "testdata", "async.txt"))
		if err != nil {
			t.Fatal(err)
		}
		if got := announcement.ReplaceAllString(stdout[i:j], ""); got != string(want) {
			t.Errorf("the caser sessions showed:\n%s\nwant:\n%s", got, want)
		}
	})

	// Without URLs the talk serves the talk's sites, at the sizes of internal/demosites.
	t.Run("talk with the demo sites", func(t *testing.T) {
		stdout := py.run(t, 0, "talk.py", "--addr", p.Addr, "--demo-sites-listen="+demoAddr)
		checkThreading(t, stdout, 13, 22) // the ten workers of the talk, after the 12 above
		for _, s := range demosites.Sites {
			line, want := fmt.Sprintf("('http://%s/%s/', %d)\n", demoAddr, s.Host, s.Size), 1
			if s.Host == "www.cnbc.com" {
				want = 2 // listed twice, as in the talk
			}
			if n := strings.Count(stdout, line); n != want {
				t.Errorf("the talk shows %q %d times, want %d", line, n, want)
			}
		}
		if !strings.Contains(stdout, "Check passed: every demo site measured at the size the talk printed.") {
			t.Errorf("no check of the demo sites' sizes")
		}
	})

	var checkArgs []string
	for _, u := range pageURLs {
		pg := e2e.Pages[strings.TrimPrefix(u, "http://"+site.Host)]
		checkArgs = append(checkArgs, "--page", fmt.Sprintf("%d:%d:%s", pg.Status, len(pg.Body), u))
	}

	t.Run("check", func(t *testing.T) {
		stdout := py.run(t, 0, "check.py", append([]string{"--addr", p.Addr}, checkArgs...)...)
		for _, want := range []string{
			"Increment {delta: 0}: INVALID_ARGUMENT, its BadRequest names delta\n",
			"INVALID_ARGUMENT, its BadRequest names source_sequence\n",
			"INVALID_ARGUMENT, its BadRequest names urls[1]\n",
			"Measure: 3 URLs at their status and size",
			"Session: cased its lines, switched to title case and said goodbye to quit\n",
			"all checks passed against " + p.Addr + "\n",
		} {
			if !strings.Contains(stdout, want) {
				t.Errorf("the check does not say %q", want)
			}
		}
	})

	// The check can fail: told to expect a size the page does not have, it exits 1 and says
	// which result differs and how.
	t.Run("a mismatch fails", func(t *testing.T) {
		small := e2e.Pages["/small"]
		stderr := py.run(t, 1, "check.py", "--addr", p.Addr, "--page", fmt.Sprintf("200:%d:%s", len(small.Body)+1, pageURLs[0]))
		want := fmt.Sprintf("MISMATCH: Measure result 0 (url, status, size, truncated, error): got (%[1]s, 200, %[2]d, False, False), want (%[1]s, 200, %[3]d, False, False)\n",
			pyString(pageURLs[0]), len(small.Body), len(small.Body)+1)
		if stderr != want {
			t.Errorf("the check said %q, want %q", stderr, want)
		}
	})

	t.Run("concurd unreachable", func(t *testing.T) {
		addr := e2e.FreeAddr(t)
		stderr := py.run(t, 1, "talk.py", "--addr", addr)
		if want := "talk.py: cannot reach concurd at " + addr + ": "; !strings.HasPrefix(stderr, want) {
			t.Errorf("the talk said %q, want it to start with %q", stderr, want)
		}
	})
}

// python runs the Python clients with the stubs in gen.
type python struct{ path, root, gen string }

// run runs a script of clients/python and checks its exit status; it returns its stdout when
// it exits 0 and its stderr otherwise.
func (py *python) run(t *testing.T, code int, script string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py.path, append([]string{filepath.Join(py.root, "clients", "python", script)}, args...)...)
	// The stubs of this test, and no __pycache__ left in the source tree.
	cmd.Env = append(os.Environ(), "PYTHONPATH="+py.gen, "PYTHONDONTWRITEBYTECODE=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("%s %s:\n%s%s", script, strings.Join(args, " "), stdout.String(), stderr.String())
	if e2e.ExitCode(err) != code {
		t.Fatalf("%s: %v, want exit status %d", script, err, code)
	}
	if code == 0 {
		if stderr.Len() > 0 {
			t.Errorf("%s wrote to stderr: %s", script, stderr.String())
		}
		return stdout.String()
	}
	return stderr.String()
}

// checkThreading checks that the talk read back exactly the talk's output for the counts
// first to last, and the counter's final value.
func checkThreading(t *testing.T, stdout string, first, last int) {
	t.Helper()
	if !strings.Contains(stdout, "):\n"+e2e.TalkOutput(first, last)+"\n") {
		t.Fatalf("the talk did not read back the talk's output for the counts %d to %d:\n%s", first, last, e2e.TalkOutput(first, last))
	}
	n := last - first + 1
	if want := fmt.Sprintf("The counter reads %d after %d increments from %d.\n", last, n, first-1); !strings.Contains(stdout, want) {
		t.Errorf("the talk does not say %q", want)
	}
}

// pyString is s as Python's repr() shows it, for the strings of this test.
func pyString(s string) string { return "'" + s + "'" }

// findPython returns the first of $CONCUR_PYTHON, python3 on PATH and /usr/bin/python3 that
// can import grpc and google.protobuf: python3 on PATH may be one without them (a pyenv
// Python, say) on a machine whose Debian Python has them.
func findPython(t *testing.T) string {
	t.Helper()
	candidates := []string{"python3", "/usr/bin/python3"}
	if env := os.Getenv("CONCUR_PYTHON"); env != "" {
		candidates = append([]string{env}, candidates...)
	}
	var tried []string
	for _, c := range candidates {
		path, err := exec.LookPath(c)
		if err != nil {
			tried = append(tried, err.Error())
			continue
		}
		out, err := exec.Command(path, "-c", "import sys, grpc, google.protobuf as pb; print(sys.version.split()[0], grpc.__version__, pb.__version__)").CombinedOutput()
		versions := strings.Fields(string(out))
		if err != nil || len(versions) != 3 {
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			tried = append(tried, fmt.Sprintf("%s: %v: %s", path, err, lines[len(lines)-1])) // a traceback ends with its error
			continue
		}
		t.Logf("Python: %s (Python %s, grpcio %s, protobuf %s)", path, versions[0], versions[1], versions[2])
		return path
	}
	t.Fatalf("no Python that can import grpc and google.protobuf:\n\t%s\n%s", strings.Join(tried, "\n\t"), install)
	return ""
}

// readInputs reads what the Python side reads, so that go test's cache knows them: a change
// to a script or a contract runs the test again instead of reporting a cached pass.
func readInputs(t *testing.T, root string) {
	t.Helper()
	var files []string
	for _, pattern := range []string{"api/concur/*/v1/*.proto", "clients/python/*.py", "clients/python/*.sh", "clients/python/*/*.go"} {
		matches, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil || len(matches) == 0 {
			t.Fatalf("no %s: %v", pattern, err)
		}
		files = append(files, matches...)
	}
	for _, file := range files {
		if _, err := os.ReadFile(file); err != nil {
			t.Fatal(err)
		}
	}
}

// generate makes the Python stubs in gen with generate.sh, which takes the machine's protoc
// and grpc_python_plugin when it finds both: the test insists on them.
func generate(t *testing.T, root, gen string) {
	t.Helper()
	for _, name := range []string{"protoc", "grpc_python_plugin"} {
		if _, err := exec.LookPath(name); err != nil {
			t.Fatalf("%v\n%s", err, install)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(root, "clients", "python", "generate.sh"), gen).CombinedOutput()
	if err != nil {
		t.Fatalf("generate.sh: %v\n%s\n%s", err, out, install)
	}
}
