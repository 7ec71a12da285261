// Package deploy proves that concur's services deploy separately: four concurd processes,
// one service each on its own port, the counter forwarding to the printer's process, and
// clients/talk run against them by address, as a user deploys and runs them.
package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	"github.com/concur-dev/concur/internal/demosites"
	"github.com/concur-dev/concur/internal/e2e"
	"github.com/concur-dev/concur/internal/testkit"
)

func TestMain(m *testing.M) { e2e.Main(m) }

// deployment is the four services, each in its own concurd, with the printer and the
// counter keeping their state in dir.
type deployment struct {
	dir                               string
	printer, counter, sitesize, caser *e2e.Process
}

func (d *deployment) startPrinter(t *testing.T) {
	d.printer = e2e.StartConcurd(t, "--services=printer", "--jitter=1ms",
		"--printer-file="+filepath.Join(d.dir, "printed.txt"), "--printer-stdout=false")
}

func (d *deployment) startCounter(t *testing.T) {
	d.counter = e2e.StartConcurd(t, "--services=counter", "--jitter=1ms",
		"--counter-db="+filepath.Join(d.dir, "counter.db"), "--printer-addr="+d.printer.Addr)
}

// talk runs clients/talk against the deployment, each service by its own address.
func (d *deployment) talk(t *testing.T, args ...string) string {
	t.Helper()
	stdout, _ := e2e.Run(t, "", e2e.Build(t, "./clients/talk"), append([]string{"--jitter=1ms",
		"--printer-addr=" + d.printer.Addr, "--counter-addr=" + d.counter.Addr,
		"--sitesize-addr=" + d.sitesize.Addr, "--caser-addr=" + d.caser.Addr}, args...)...)
	return stdout
}

func (d *deployment) printed(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.dir, "printed.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The talk against four separately deployed services: every section passes its check, the
// printer's file holds exactly the talk's output, and each process exits 0 on SIGTERM with
// nothing lost: the file is whole, and a counter and a printer started again on their files
// go on where they stopped (the counts from 11, the printer's jobs from 13).
func TestFourProcesses(t *testing.T) {
	testkit.NoLeaks(t) // first, so that it checks last
	demo, err := demosites.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { demo.Close() })
	sites := filepath.Join(t.TempDir(), "sites.txt")
	if err := os.WriteFile(sites, []byte(strings.Join(demo.URLs(), "\n")), 0o644); err != nil {
		t.Fatal(err)
	}

	d := &deployment{dir: t.TempDir()}
	d.startPrinter(t)
	d.startCounter(t)
	d.sitesize = e2e.StartConcurd(t, "--services=sitesize", "--sitesize-allow=127.0.0.1", fmt.Sprintf("--sitesize-allow-ports=%d", demo.Port()))
	d.caser = e2e.StartConcurd(t, "--services=caser", "--caser-announce=300ms")

	stdout := d.talk(t, "--sites="+sites)
	want := "The printer wrote, read back with Tail (its jobs 1 to 12):\n" + e2e.TalkOutput(1, 10) + "\n"
	for _, s := range []string{want, "Every check passed: threading, sites, async.", "The event loop is still running at: "} {
		if !strings.Contains(stdout, s) {
			t.Fatalf("no %q in the talk's output:\n%s", s, stdout)
		}
	}
	for i, url := range demo.URLs() { // measured by the sitesize, then fetched one by one
		if line := fmt.Sprintf("(%q, %d)", url, demosites.Sites[i].Size); !strings.Contains(stdout, line) {
			t.Errorf("no %s in the talk's output:\n%s", line, stdout)
		}
	}
	if got := d.printed(t); got != e2e.TalkOutput(1, 10) {
		t.Fatalf("the printer's file:\n%s\nwant:\n%s", got, e2e.TalkOutput(1, 10))
	}

	// The counter first, so that it hands the printer all it has; then the others.
	d.counter.Stop(t)
	d.printer.Stop(t)
	d.sitesize.Stop(t)
	d.caser.Stop(t)
	if got := d.printed(t); got != e2e.TalkOutput(1, 10) {
		t.Fatalf("after SIGTERM, the printer's file:\n%s\nwant:\n%s", got, e2e.TalkOutput(1, 10))
	}

	d.startPrinter(t)
	d.startCounter(t)
	g, err := counterv1.NewCounterServiceClient(e2e.Dial(t, d.counter.Addr)).Get(t.Context(), &counterv1.GetRequest{})
	if err != nil || g.GetValue() != 10 {
		t.Fatalf("the counter started again on its database reads %v, %v; want 10", g, err)
	}
	stdout = d.talk(t, "--section=threading")
	if want := "The printer wrote, read back with Tail (its jobs 13 to 24):\n" + e2e.TalkOutput(11, 20) + "\n"; !strings.Contains(stdout, want) {
		t.Fatalf("the second talk:\n%s\nwant:\n%s", stdout, want)
	}
	d.counter.Stop(t)
	d.printer.Stop(t)
	if got, want := d.printed(t), e2e.TalkOutput(1, 10)+e2e.TalkOutput(11, 20); got != want {
		t.Fatalf("the printer's file after two talks:\n%s\nwant:\n%s", got, want)
	}
}
