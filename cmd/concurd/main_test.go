package main_test

import (
	"flag"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/concur-dev/concur/internal/e2e"
	"github.com/concur-dev/concur/internal/stack"
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

// A usage error is one line with its reason, then where to find help, and exit 2; a server
// that cannot start logs why and exits 1.
func TestCommandLineErrors(t *testing.T) {
	bin := e2e.Concurd(t)
	for _, tt := range []struct {
		env  string
		args []string
		code int
		says string // all of stderr for a usage error, part of it otherwise
	}{
		{"", []string{"--jitter=abc"}, 2, `concurd: invalid value "abc" for flag --jitter: want a duration such as 300ms, 10s or 1h30m`},
		{"", []string{"--services=counter,nope"}, 2, `concurd: invalid value "counter,nope" for flag --services: unknown service "nope"; choose from printer, counter, sitesize, caser`},
		{"", []string{"--no-such-flag"}, 2, "concurd: unknown flag --no-such-flag"},
		{"", []string{"--listen"}, 2, "concurd: flag --listen needs a value"},
		{"", []string{"--listen=127.0.0.1:0", "serve"}, 2, `concurd: unexpected argument "serve"`},
		{"", []string{"--log-format=xml"}, 2, `concurd: --log-format "xml": use text or json`},
		{"CONCUR_SHUTDOWN_TIMEOUT=soon", nil, 2, `concurd: invalid value "soon" for CONCUR_SHUTDOWN_TIMEOUT (--shutdown-timeout): want a duration such as 300ms, 10s or 1h30m`},
		{"", []string{"--listen=127.0.0.1:0", "--tls-cert=/nonexistent"}, 1, "--tls-cert and --tls-key go together"},
	} {
		cmd := exec.Command(bin, tt.args...)
		cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+t.TempDir())
		if tt.env != "" {
			cmd.Env = append(cmd.Env, tt.env)
		}
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		code := e2e.ExitCode(cmd.Run())
		ok := code == tt.code && stdout.Len() == 0
		if tt.code == 2 {
			ok = ok && stderr.String() == tt.says+"\nrun 'concurd --help' for usage\n"
		} else {
			ok = ok && strings.Contains(stderr.String(), tt.says)
		}
		if !ok {
			t.Errorf("%s concurd %q: exit %d, stdout %q, stderr %q; want exit %d saying %q", tt.env, tt.args, code, stdout.String(), stderr.String(), tt.code, tt.says)
		}
	}
}

// --help goes to standard output and lists every flag once: by concern, then by service,
// the counter's connection to its printer with the counter; then the environment and the
// exit codes.
func TestHelp(t *testing.T) {
	out, err := exec.Command(e2e.Concurd(t), "--help").Output()
	if err != nil {
		t.Fatal(err)
	}
	help := string(out)
	headings := []string{"Usage: concurd [flags]\n", "\nGeneral:\n", "\nTLS and auth:\n", "\nMetrics and logs:\n", "\nShutdown:\n",
		"\nCounter:\n", "\nPrinter:\n", "\nSitesize:\n", "\nCaser:\n", "\nEnvironment:\n", "\nExit status:\n"}
	at := 0
	for _, h := range headings {
		i := strings.Index(help[at:], h)
		if i < 0 {
			t.Fatalf("no %q after %q in --help:\n%s", h, help[:at], help)
		}
		at += i + len(h)
	}
	var cfg stack.Config
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	fs.VisitAll(func(f *flag.Flag) {
		if n := strings.Count(help, "\n  --"+f.Name+" ") + strings.Count(help, "\n  --"+f.Name+"\n"); n != 1 {
			t.Errorf("--%s is listed %d times", f.Name, n)
		}
	})
	for _, want := range []string{"Counter:\n  --counter-advertise HOST:PORT", "\n  --counter-db folder\n", "cluster's is refused (default 64)\n  --printer-addr address\n",
		"Printer:\n  --printer-file file", "\n  2    usage error"} {
		if !strings.Contains(help, want) {
			t.Errorf("--help lacks %q:\n%s", want, help)
		}
	}
	if strings.Contains(help, "\n  3 ") {
		t.Errorf("--help lists exit 3, which concurd never uses:\n%s", help)
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
