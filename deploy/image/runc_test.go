package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	caserv1 "github.com/concur-dev/concur/api/concur/caser/v1"
	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/internal/e2e"
	"github.com/concur-dev/concur/internal/testkit"
)

// The image runs for real, with no Docker: umoci unpacks it into a bundle and runc runs it,
// as a Kubernetes node would: read-only root with a writable state folder, no capabilities,
// sharing the host's network so that the test reaches it on loopback. Every service answers
// its health check and one call; SIGTERM to the container drains it and it exits 0.
func TestRunc(t *testing.T) {
	for _, tool := range []string{"umoci", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: install Debian's packages umoci and runc (apt-get install umoci runc), as .ci/run does", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Fatal("runc runs this image as root only: run the test as root, as CI does")
	}
	b, dir, _ := image(t)
	work := t.TempDir()
	bundle, state := filepath.Join(work, "bundle"), filepath.Join(work, "runc")
	mustRun(t, "umoci", "unpack", "--image", filepath.Join(dir, "oci")+":"+b.tag.TagStr(), bundle)
	addr := e2e.FreeAddr(t)
	configure(t, filepath.Join(bundle, "config.json"), "--listen="+addr)

	id := fmt.Sprintf("concur-image-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	var stdout, stderr testkit.Buffer
	cmd := exec.Command("runc", "--root", state, "run", "--bundle", bundle, id)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var exitErr error
	exited := make(chan struct{})
	go func() {
		exitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		exec.Command("runc", "--root", state, "delete", "--force", id).Run()
		select {
		case <-exited:
		case <-time.After(time.Minute):
			cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("concurd's stderr:\n%s\nstdout:\n%s", stderr.String(), stdout.String())
		}
	})

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	waitServing(ctx, t, healthpb.NewHealthClient(conn), exited)
	callEach(ctx, t, conn)
	for _, line := range []string{"hello from the image", "The count of image is 1"} {
		if !strings.Contains(stdout.String(), line+"\n") {
			t.Errorf("the printer's output lacks %q:\n%s", line, stdout.String())
		}
	}

	mustRun(t, "runc", "--root", state, "kill", id, "TERM")
	select {
	case <-exited:
		if exitErr != nil || !strings.Contains(stderr.String(), "shutdown complete") {
			t.Fatalf("after SIGTERM: %v, without a clean shutdown", exitErr)
		}
	case <-ctx.Done():
		t.Fatal("the container still runs two minutes after SIGTERM")
	}
}

// configure makes the bundle run as a Kubernetes pod of the manifests does, but on the host's
// network: no network namespace, concurd listening on loopback at the test's port (a flag
// wins over the image's CONCUR_LISTEN), no terminal, no capabilities, a read-only root, and a
// tmpfs for the counter's database owned by the image's user.
func configure(t *testing.T, path string, args ...string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	process, linux := spec["process"].(map[string]any), spec["linux"].(map[string]any)
	if u, _ := process["user"].(map[string]any); u["uid"] != float64(user) || u["gid"] != float64(user) {
		t.Errorf("umoci's bundle runs as %v, want the image's user %d:%d", u, user, user)
	}
	process["terminal"] = false
	for _, a := range args {
		process["args"] = append(process["args"].([]any), a)
	}
	process["capabilities"] = map[string]any{}
	spec["root"].(map[string]any)["readonly"] = true
	spec["mounts"] = append(spec["mounts"].([]any), map[string]any{"destination": stateDir, "type": "tmpfs", "source": "tmpfs",
		"options": []string{"nosuid", "nodev", "mode=0700", fmt.Sprintf("uid=%d", user), fmt.Sprintf("gid=%d", user)}})
	var namespaces []any
	for _, ns := range linux["namespaces"].([]any) {
		if ns.(map[string]any)["type"] != "network" {
			namespaces = append(namespaces, ns)
		}
	}
	linux["namespaces"] = namespaces
	if b, err = json.Marshal(spec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitServing waits until the server in the container answers its health check.
func waitServing(ctx context.Context, t *testing.T, health healthpb.HealthClient, exited <-chan struct{}) {
	t.Helper()
	for {
		r, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && r.Status == healthpb.HealthCheckResponse_SERVING {
			return
		}
		select {
		case <-exited:
			t.Fatal("the container exited before serving")
		case <-ctx.Done():
			t.Fatalf("concurd in the container did not serve: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// callEach checks every service's health and calls each once. Sitesize is asked for the
// cloud metadata address, which its guard refuses without sending a packet: the call works
// with no network.
func callEach(ctx context.Context, t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	health := healthpb.NewHealthClient(conn)
	for _, svc := range []string{"", "concur.printer.v1.PrinterService", "concur.counter.v1.CounterService",
		"concur.sitesize.v1.SiteSizeService", "concur.caser.v1.CaserService"} {
		r, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %q: %v, %v", svc, r.GetStatus(), err)
		}
	}
	if _, err := printerv1.NewPrinterServiceClient(conn).Print(ctx, &printerv1.PrintRequest{Lines: []string{"hello from the image"}}); err != nil {
		t.Errorf("Print: %v", err)
	}
	counter := counterv1.NewCounterServiceClient(conn)
	if r, err := counter.Increment(ctx, &counterv1.IncrementRequest{Name: "image"}); err != nil || r.GetValue() != 1 {
		t.Errorf("Increment: %v, %v; want 1", r.GetValue(), err)
	}
	if _, err := counter.Join(ctx, &counterv1.JoinRequest{}); err != nil {
		t.Errorf("counter Join: %v", err)
	}
	stream, err := sitesizev1.NewSiteSizeServiceClient(conn).Measure(ctx, &sitesizev1.MeasureRequest{Urls: []string{"http://169.254.169.254/"}})
	if err == nil {
		var r *sitesizev1.MeasureResponse
		if r, err = stream.Recv(); err == nil && r.GetError().GetCode() != sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_BLOCKED {
			t.Errorf("Measure of the metadata address: %v, want FETCH_ERROR_CODE_BLOCKED", r)
		}
	}
	if err != nil {
		t.Errorf("Measure: %v", err)
	}
	r, err := caserv1.NewCaserServiceClient(conn).Case(ctx, &caserv1.CaseRequest{Text: "hello from the image", Mode: caserv1.Mode_MODE_TITLE})
	if err != nil || r.GetText() != "Hello From The Image" {
		t.Errorf("Case: %q, %v", r.GetText(), err)
	}
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}
