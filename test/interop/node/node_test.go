// Package node proves that a language other than Go can use concur from its .proto files
// alone: it runs client.js, a Node.js client built on @grpc/proto-loader and @grpc/grpc-js,
// against a real concurd, and checks the client's answers and what concurd printed.
package node

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/concur-dev/concur/internal/e2e"
	"github.com/concur-dev/concur/internal/testkit"
)

func TestMain(m *testing.M) { e2e.Main(m) }

func TestNodeClient(t *testing.T) {
	node, npm := lookPath(t, "node"), lookPath(t, "npm")
	npmCI(t, npm)
	readInputs(t)
	testkit.NoLeaks(t) // first, so that it checks last

	site := e2e.ServePages(t)
	p := e2e.StartConcurd(t,
		"--counter-db="+filepath.Join(t.TempDir(), "counter.db"),
		"--sitesize-allow=127.0.0.1/32", "--sitesize-allow-ports="+site.Port())
	// The same URL twice: sitesize reports it at each index.
	urls := []string{"/small", "/large", "/missing", "/small"}
	var args []string
	for _, path := range urls {
		pg := e2e.Pages[path]
		args = append(args, "--page", fmt.Sprintf("%d:%d:http://%s%s", pg.Status, len(pg.Body), site.Host, path))
	}

	t.Run("agrees", func(t *testing.T) {
		out, err := runClient(t, node, p.Addr, args...)
		if err != nil {
			t.Fatalf("node client.js: %v\n%s", err, out)
		}
		t.Logf("node client.js:\n%s", out)
		// The Go side of the same calls: on a fresh database, the counter named node went to
		// 5, then 6, and the printer wrote those updates and the client's own job.
		for _, line := range []string{"The count of node is 5", "The count of node is 6", "Hello from Node.js"} {
			if !strings.Contains(p.Stdout(), line+"\n") {
				t.Errorf("concurd's output lacks %q:\n%s", line, p.Stdout())
			}
		}
	})

	// The client's checks can fail: told to expect a size the page does not have, it exits
	// non-zero and says which result differs and how.
	t.Run("a mismatch fails", func(t *testing.T) {
		small := e2e.Pages["/small"]
		out, err := runClient(t, node, p.Addr, "--page", fmt.Sprintf("200:%d:http://%s/small", len(small.Body)+1, site.Host))
		if e2e.ExitCode(err) != 1 {
			t.Fatalf("node client.js with a wrong size: %v, want exit status 1\n%s", err, out)
		}
		want := fmt.Sprintf(`MISMATCH: Measure result 0: got {"url":"http://%s/small","status":200,"size":"%d"`, site.Host, len(small.Body))
		if !strings.Contains(out, want) {
			t.Fatalf("node client.js with a wrong size said:\n%s\nwant a line starting %s", out, want)
		}
	})
}

// readInputs reads what node reads, the client and the contracts it loads, so that go test's
// cache knows them: a change to either runs the test again instead of reporting a cached pass.
func readInputs(t *testing.T) {
	t.Helper()
	protos, err := filepath.Glob(filepath.Join(e2e.Root(t), "api", "concur", "*", "v1", "*.proto"))
	if err != nil || len(protos) == 0 {
		t.Fatalf("find the .proto files under api/: %v", err)
	}
	for _, file := range append(protos, "client.js") {
		if _, err := os.ReadFile(file); err != nil {
			t.Fatal(err)
		}
	}
}

// lookPath finds a command the test needs, or fails saying how to install it: a machine
// without Node.js must not pass this test by skipping it.
func lookPath(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed (%v). This test runs a Node.js client of concur and needs Node.js 18 or "+
			"later with npm: on Debian or Ubuntu, `sudo apt-get install -y nodejs npm`; elsewhere, "+
			"https://nodejs.org/en/download. .ci/run installs them itself.", name, err)
	}
	return path
}

// npmCI installs the packages pinned in package-lock.json into node_modules, unless they are
// there already at the versions it pins.
func npmCI(t *testing.T, npm string) {
	t.Helper()
	if installed(t) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}
	if !installed(t) {
		t.Fatal("npm ci succeeded, but node_modules does not hold what package-lock.json pins")
	}
}

// installed reports whether node_modules holds each package of package-lock.json at its
// version and integrity, as npm recorded in node_modules/.package-lock.json when it installed.
func installed(t *testing.T) bool {
	t.Helper()
	want := lockedPackages(t, "package-lock.json")
	delete(want, "") // the root project, which npm leaves out of node_modules
	if _, err := os.Stat(filepath.Join("node_modules", ".package-lock.json")); err != nil {
		return false
	}
	return maps.Equal(lockedPackages(t, filepath.Join("node_modules", ".package-lock.json")), want)
}

type lockedPackage struct{ Version, Integrity string }

func lockedPackages(t *testing.T, file string) map[string]lockedPackage {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var lock struct{ Packages map[string]lockedPackage }
	if err := json.Unmarshal(data, &lock); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return lock.Packages
}

// runClient runs client.js against addr and returns what it printed, stdout and stderr.
func runClient(t *testing.T, node, addr string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, append([]string{"client.js", "--addr", addr}, args...)...).CombinedOutput()
	return string(out), err
}
