package main_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/concur-dev/concur/internal/e2e"
)

func TestMain(m *testing.M) { e2e.Main(m) }

// A newcomer's first minute: concurd serves, grpcurl lists the four services with health and
// reflection, describe shows the contract's comments, health answers per service, and
// SIGTERM ends the process cleanly.
func TestServesWhatTheReadmePromises(t *testing.T) {
	p := e2e.StartConcurd(t)
	grpcurl := e2e.Grpcurl(t)

	list, _ := e2e.Run(t, "", grpcurl, "-plaintext", p.Addr, "list")
	for _, want := range []string{
		"concur.caser.v1.CaserService", "concur.counter.v1.CounterService",
		"concur.printer.v1.PrinterService", "concur.sitesize.v1.SiteSizeService",
		"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection",
	} {
		if !strings.Contains(list, want+"\n") {
			t.Errorf("grpcurl list lacks %s:\n%s", want, list)
		}
	}

	desc, _ := e2e.Run(t, "", grpcurl, "-plaintext", p.Addr, "describe", "concur.counter.v1.CounterService")
	for _, want := range []string{"// CounterService updates and reads named counters.", "// Join is a barrier", "rpc Increment"} {
		if !strings.Contains(desc, want) {
			t.Errorf("grpcurl describe lacks %q:\n%s", want, desc)
		}
	}

	for _, svc := range []string{"concur.counter.v1.CounterService", "concur.caser.v1.CaserService"} {
		out, _ := e2e.Run(t, "", grpcurl, "-plaintext", "-d", `{"service":"`+svc+`"}`, p.Addr, "grpc.health.v1.Health/Check")
		if !strings.Contains(out, `"SERVING"`) {
			t.Errorf("health of %s: %s", svc, out)
		}
	}

	p.Stop(t)
}

func TestServicesFlagAndEnvironment(t *testing.T) {
	t.Setenv("CONCUR_SERVICES", "caser")
	p := e2e.StartConcurd(t)
	list, _ := e2e.Run(t, "", e2e.Grpcurl(t), "-plaintext", p.Addr, "list")
	if !strings.Contains(list, "concur.caser.v1.CaserService") || strings.Contains(list, "concur.printer.v1.PrinterService") {
		t.Fatalf("CONCUR_SERVICES=caser serves:\n%s", list)
	}
	p = e2e.StartConcurd(t, "--services=printer")
	list, _ = e2e.Run(t, "", e2e.Grpcurl(t), "-plaintext", p.Addr, "list")
	if !strings.Contains(list, "concur.printer.v1.PrinterService") || strings.Contains(list, "concur.caser.v1.CaserService") {
		t.Fatalf("--services=printer (flag over environment) serves:\n%s", list)
	}
}

func TestCommandLineErrors(t *testing.T) {
	bin := e2e.Concurd(t)
	for _, tt := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"--services=counter,nope"}, 2, `unknown service "nope"`},
		{[]string{"--no-such-flag"}, 2, "flag provided but not defined"},
		{[]string{"--log-format=xml"}, 2, "use text or json"},
		{[]string{"--listen=127.0.0.1:0", "--tls-cert=/nonexistent"}, 1, "--tls-cert and --tls-key go together"},
	} {
		out, err := exec.Command(bin, tt.args...).CombinedOutput()
		if code := e2e.ExitCode(err); code != tt.code || !strings.Contains(string(out), tt.says) {
			t.Errorf("concurd %v: exit %d, output %q; want exit %d saying %q", tt.args, code, out, tt.code, tt.says)
		}
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(e2e.Concurd(t), "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "github.com/concur-dev/concur ") || !strings.Contains(string(out), "revision") {
		t.Fatalf("--version = %q", out)
	}
}
