package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
)

// Peak memory is measured on real processes, from the kernel's VmHWM (the peak resident set):
// a built concurd measuring a batch, and, as the yardstick, the plain client pool in a process
// of its own, which is this bench binary run again with poolChildEnv set.
const poolChildEnv = "CONCUR_BENCH_SITESIZE_POOL"

func init() {
	if spec := os.Getenv(poolChildEnv); spec != "" {
		os.Exit(poolChild(spec))
	}
}

// poolChild runs the plain pool on "BASE URLS CONCURRENCY" and prints its own peak RSS in kB.
func poolChild(spec string) int {
	var base string
	var n, c int
	if _, err := fmt.Sscan(spec, &base, &n, &c); err != nil {
		fmt.Fprintln(os.Stderr, "pool child:", err)
		return 2
	}
	w := &web{base: base}
	if _, err := plainPool(context.Background(), w.pages(n), c); err != nil {
		fmt.Fprintln(os.Stderr, "pool child:", err)
		return 1
	}
	kb, err := vmHWM(os.Getpid())
	if err != nil {
		fmt.Fprintln(os.Stderr, "pool child:", err)
		return 1
	}
	fmt.Println(kb)
	return 0
}

// peakRSS measures concurd's peak RSS during the 1,000-URL batch next to the plain pool's
// process, round by round, and a fresh concurd's while it counts a 1 GB body. concurd is
// built once.
func peakRSS(ctx context.Context, e *env, w *web) ([]figure, error) {
	bin, cleanup, err := buildConcurd()
	if err != nil {
		return nil, err
	}
	defer cleanup()
	flags := []string{"--services=sitesize", "--sitesize-allow=127.0.0.0/8", "--sitesize-allow-ports=1024-65535"}
	batch, pool, ratio, err := versus(e.rounds, func() (float64, error) {
		return kilobytes(concurdPeak(ctx, bin, flags, func(client sitesizev1.SiteSizeServiceClient) error {
			_, err := measureBatch(ctx, client, w.pages(1000), 200)
			return err
		}))
	}, func() (float64, error) { return kilobytes(poolPeak(ctx, w, 1000, 200)) })
	if err != nil {
		return nil, err
	}
	const gig = 1 << 30
	gigKB, err := repeat(e.rounds, func() (float64, error) {
		return kilobytes(concurdPeak(ctx, bin, append(flags, "--sitesize-max-bytes=2147483648", "--sitesize-max-timeout=10m"), func(client sitesizev1.SiteSizeServiceClient) error {
			stream, err := client.Measure(ctx, &sitesizev1.MeasureRequest{Urls: []string{fmt.Sprintf("%s/bytes/%d", w.base, gig)}, Timeout: durationpb.New(10 * time.Minute)})
			if err != nil {
				return err
			}
			r, err := stream.Recv()
			if err != nil {
				return err
			}
			if r.GetSize() != gig || r.GetError() != nil || r.GetTruncated() {
				return fmt.Errorf("1 GB body measured as %d bytes, error %v", r.GetSize(), r.GetError())
			}
			return nil
		}))
	})
	if err != nil {
		return nil, err
	}
	return []figure{
		{name: "concurd peak RSS, 1,000 URLs at 200", value: batch, show: mebibytes, unit: "MiB",
			ratio: &ratio, per: "x plain pool process", target: "<= 2x plain pool process", met: new(ratio.median <= 2)},
		{name: "plain pool process peak RSS, 1,000 URLs at 200 (the yardstick)", value: pool, show: mebibytes, unit: "MiB"},
		{name: "concurd peak RSS counting a 1 GB body", value: gigKB, show: mebibytes, unit: "MiB", target: "< 64 MiB", met: new(gigKB.median < 64<<10)},
	}, nil
}

// poolPeak runs the plain pool on urls pages of w at concurrency in a process of its own and
// returns its peak RSS.
func poolPeak(ctx context.Context, w *web, urls, concurrency int) (int64, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	child := exec.CommandContext(ctx, self)
	child.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d", poolChildEnv, w.base, urls, concurrency))
	child.Stderr = os.Stderr
	out, err := child.Output()
	if err != nil {
		return 0, fmt.Errorf("plain pool process: %w", err)
	}
	kb, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("plain pool process said %q", out)
	}
	return kb, nil
}

// concurdPeak starts concurd with flags, runs load against it, and returns its peak RSS.
func concurdPeak(ctx context.Context, bin string, flags []string, load func(sitesizev1.SiteSizeServiceClient) error) (int64, error) {
	cmd := exec.CommandContext(ctx, bin, append([]string{"--listen=127.0.0.1:0", "--log-format=json"}, flags...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	sc := bufio.NewScanner(stderr)
	var addr string
	for addr == "" && sc.Scan() {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "serving" {
			addr = rec.Addr
		}
	}
	if addr == "" {
		return 0, fmt.Errorf("concurd did not start serving: %v", sc.Err())
	}
	go func() {
		for sc.Scan() { // keep draining, so that concurd never blocks on its log
		}
	}()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if err := load(sitesizev1.NewSiteSizeServiceClient(conn)); err != nil {
		return 0, err
	}
	return vmHWM(cmd.Process.Pid)
}

// buildConcurd builds cmd/concurd, as deployed (no race detector), into a temporary folder.
func buildConcurd() (string, func(), error) {
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", nil, fmt.Errorf("find the module root: %w", err)
	}
	dir, err := os.MkdirTemp("", "concur-bench-")
	if err != nil {
		return "", nil, err
	}
	bin := filepath.Join(dir, "concurd")
	build := exec.Command("go", "build", "-o", bin, "./cmd/concurd")
	build.Dir = strings.TrimSpace(string(root))
	if out, err := build.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("go build ./cmd/concurd: %v\n%s", err, out)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

// vmHWM reads a process's peak resident set size, in kB.
func vmHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("VmHWM:")); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(string(v)), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// kilobytes is a peak RSS in kB, for versus and repeat.
func kilobytes(kb int64, err error) (float64, error) { return float64(kb), err }

// mebibytes formats kB as MiB.
func mebibytes(kb float64) string { return fmt.Sprintf("%.1f", kb/1024) }
