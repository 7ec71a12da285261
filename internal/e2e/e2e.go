// Package e2e runs concur the way its users do, for end-to-end tests: it builds cmd/concurd
// and the pinned grpcurl once per test binary, starts real processes on real ports, and dials
// them over TCP.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/concur-dev/concur/internal/testkit"
)

var (
	binDir  string
	builds  sync.Map // binary name -> *build
	rootDir = sync.OnceValues(func() (string, error) {
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
		return strings.TrimSpace(string(out)), err
	})
)

type build struct {
	once sync.Once
	path string
	err  error
}

// Main runs the tests of a package that uses e2e and removes the binaries it built. Call it
// from TestMain.
func Main(m *testing.M) {
	dir, err := os.MkdirTemp("", "concur-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Root is the repository's root folder.
func Root(t testing.TB) string {
	t.Helper()
	dir, err := rootDir()
	if err != nil {
		t.Fatalf("find the module root: %v", err)
	}
	return dir
}

// Concurd returns the path of cmd/concurd built for this test run, with the race detector
// when the tests have it.
func Concurd(t testing.TB) string {
	t.Helper()
	return Build(t, "./cmd/concurd")
}

// Build builds the command in pkg (from the repository root, like "./clients/talk") once for
// this test run, with the race detector when the tests have it, and returns its path.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	args := []string{"build"}
	if raceEnabled() {
		args = append(args, "-race")
	}
	return buildOnce(t, path.Base(pkg), append(args, pkg)...)
}

// BuildWithoutRace builds the command in pkg without the race detector, whatever the tests
// run with: for measuring its memory, which the race detector multiplies.
func BuildWithoutRace(t testing.TB, pkg string) string {
	t.Helper()
	return buildOnce(t, path.Base(pkg)+"-norace", "build", pkg)
}

// Grpcurl returns the path of grpcurl built at the version pinned in tools/go.mod.
func Grpcurl(t testing.TB) string {
	t.Helper()
	return buildOnce(t, "grpcurl", "build", "-modfile=tools/go.mod", "github.com/fullstorydev/grpcurl/cmd/grpcurl")
}

func buildOnce(t testing.TB, name string, goArgs ...string) string {
	t.Helper()
	if binDir == "" {
		t.Fatal("e2e: call e2e.Main from TestMain")
	}
	v, _ := builds.LoadOrStore(name, &build{})
	b := v.(*build)
	b.once.Do(func() {
		b.path = filepath.Join(binDir, name)
		args := append(goArgs[:1:1], append([]string{"-o", b.path}, goArgs[1:]...)...)
		cmd := exec.Command("go", args...)
		cmd.Dir = Root(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}

// Process is a running concurd.
type Process struct {
	// Addr is the gRPC address it serves on.
	Addr string
	// MetricsAddr is where it serves metrics, when asked to.
	MetricsAddr string

	cmd  *exec.Cmd
	logs *testkit.Buffer
	out  *testkit.Buffer
	done chan struct{}
	err  error
}

// StartConcurd starts concurd with args plus --listen=127.0.0.1:0 and JSON logs, and waits
// until it serves. The process is killed at the end of the test if it still runs.
func StartConcurd(t testing.TB, args ...string) *Process {
	t.Helper()
	return Start(t, Concurd(t), append([]string{"--listen=127.0.0.1:0", "--log-format=json"}, args...)...)
}

// Start runs bin with args, a concurd-like server that logs JSON to stderr, and waits for its
// "serving" line. Its state folder ($XDG_STATE_HOME) is the test's own, so that a default
// file (the counter's database) is never shared with the user or with another test.
func Start(t testing.TB, bin string, args ...string) *Process {
	t.Helper()
	p := &Process{cmd: exec.Command(bin, args...), logs: &testkit.Buffer{}, out: &testkit.Buffer{}, done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+t.TempDir())
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	serving := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			p.logs.Write(append(line, '\n'))
			var rec struct{ Msg, Addr, Metrics string }
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "serving" {
				select {
				case serving <- [2]string{rec.Addr, rec.Metrics}:
				default:
				}
			}
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), p.Logs())
		}
	})
	select {
	case a := <-serving:
		p.Addr, p.MetricsAddr = a[0], a[1]
	case <-p.done:
		t.Fatalf("%s exited before serving: %v\n%s", bin, p.err, p.Logs())
	case <-time.After(2 * time.Minute):
		t.Fatalf("%s did not start serving\n%s", bin, p.Logs())
	}
	return p
}

// Logs returns what the process has written to stderr so far.
func (p *Process) Logs() string { return p.logs.String() }

// Stdout returns what the process has written to stdout so far.
func (p *Process) Stdout() string { return p.out.String() }

// WaitStdout returns the process's stdout once it holds at least n bytes, or once the
// process has ended. A server that answered a call has written its output, but the pipe
// brings it to the test in its own time.
func (p *Process) WaitStdout(t testing.TB, n int) string {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		if out := p.Stdout(); len(out) >= n {
			return out
		}
		select {
		case <-p.done:
			return p.Stdout()
		case <-deadline:
			t.Fatalf("stdout holds %d bytes after 2 minutes, want %d", len(p.Stdout()), n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// PeakRSS is the most resident memory the process has used so far (VmHWM), in bytes.
func (p *Process) PeakRSS(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read the process's status: %v", err)
	}
	for line := range strings.Lines(string(b)) {
		if kb, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", kb, err)
			}
			return n << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", p.cmd.Process.Pid)
	return 0
}

// Wait waits for the process to exit and returns its exit code; it fails the test if the
// process is still running when ctx ends.
func (p *Process) Wait(ctx context.Context, t testing.TB) int {
	t.Helper()
	select {
	case <-p.done:
	case <-ctx.Done():
		t.Fatalf("process still running: %v\n%s", ctx.Err(), p.Logs())
	}
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		return exit.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("wait: %v", p.err)
	}
	return 0
}

// Stop sends SIGTERM and fails the test unless the process drains cleanly: it exits 0 within
// two minutes, having logged "shutdown complete".
func (p *Process) Stop(t testing.TB) {
	t.Helper()
	p.Signal(t, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if code := p.Wait(ctx, t); code != 0 || !strings.Contains(p.Logs(), `"msg":"shutdown complete"`) {
		t.Fatalf("exit code %d after SIGTERM, without a clean shutdown:\n%s", code, p.Logs())
	}
}

// Dial connects to addr in plaintext; the connection is closed at the end of the test.
func Dial(t testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Run runs a command (grpcurl, say) in the repository root with stdin as its input and
// returns its stdout and stderr; it fails the test when the command fails.
func Run(t testing.TB, stdin string, bin string, args ...string) (stdout, stderr string) {
	t.Helper()
	stdout, stderr, err := RunErr(t, stdin, bin, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(bin), strings.Join(args, " "), err, stdout, stderr)
	}
	return stdout, stderr
}

// RunErr is Run for a command expected to fail: it returns the error too.
func RunErr(t testing.TB, stdin string, bin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = Root(t)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// ExitCode is the exit status of a command that ended with err: 0 for nil, the process's
// status for an exec.ExitError, and -1 for a command that did not run to its end.
func ExitCode(err error) int {
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.ExitCode()
	}
	return -1
}
