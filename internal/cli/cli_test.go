package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/concur-dev/concur/internal/testkit"
)

// example is a command with a flag of each kind, as a binary would define it.
type example struct {
	cmd              *Command
	stdout, stderr   *strings.Builder
	jitter           *time.Duration
	workers          *int
	limit            *uint
	json             *bool
	addr, logLevel   *string
	tlsCA, tokenFile *string
}

func newExample(args string) *example {
	e := &example{stdout: &strings.Builder{}, stderr: &strings.Builder{}}
	e.cmd = New("demo", e.stdout, e.stderr)
	e.cmd.Args = args
	fs := e.cmd.Flags
	e.jitter = fs.Duration("jitter", 0, "race amplifier")
	e.workers = fs.Int("workers", 10, "how many workers")
	e.limit = fs.Uint("limit", 0, "most `items`")
	e.json = fs.Bool("json", false, "print JSON")
	e.addr = fs.String("addr", "127.0.0.1:50051", "server `address`")
	e.logLevel = fs.String("log-level", "info", "log `level`")
	e.tlsCA = fs.String("tls-ca", "", "CA `file`")
	e.tokenFile = fs.String("token-file", "", "token `file`")
	return e
}

// run parses args as the binary would and returns its exit code.
func (e *example) run(args ...string) int {
	return e.cmd.Exit(context.Background(), e.cmd.Parse(args))
}

// A flag error is one line with its reason, then where to find help; exit 2.
func TestFlagErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		says string
	}{
		{[]string{"--jitter=abc"}, `invalid value "abc" for flag --jitter: want a duration such as 300ms, 10s or 1h30m`},
		{[]string{"--jitter", "5"}, `invalid value "5" for flag --jitter: want a duration such as 300ms, 10s or 1h30m`},
		{[]string{"--workers=many"}, `invalid value "many" for flag --workers: want a whole number`},
		{[]string{"--workers=99999999999999999999"}, `invalid value "99999999999999999999" for flag --workers: value out of range`},
		{[]string{"--limit=-1"}, `invalid value "-1" for flag --limit: want a whole number, 0 or more`},
		{[]string{"--json=maybe"}, `invalid value "maybe" for flag --json: want true or false`},
		{[]string{"--no-such-flag"}, "unknown flag --no-such-flag"},
		{[]string{"-x"}, "unknown flag -x"},
		{[]string{"--x=1"}, "unknown flag -x"},
		{[]string{"--addr"}, "flag --addr needs a value"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"--json", "extra", "--workers=2"}, `unexpected argument "extra"`},
	} {
		e := newExample("")
		if code := e.run(tt.args...); code != ExitUsage {
			t.Errorf("%q: exit %d, want 2", tt.args, code)
		}
		if want := "demo: " + tt.says + "\nrun 'demo --help' for usage\n"; e.stderr.String() != want || e.stdout.Len() != 0 {
			t.Errorf("%q: stderr %q, stdout %q; want stderr %q", tt.args, e.stderr, e.stdout, want)
		}
	}
}

// A synopsis says how many positional arguments a command takes, and flags may come before,
// between or after them, up to a "--".
func TestArguments(t *testing.T) {
	for _, tt := range []struct {
		synopsis string
		args     []string
		want     []string
		err      string
	}{
		{"", nil, nil, ""},
		{"NAME", []string{"hits"}, []string{"hits"}, ""},
		{"NAME", nil, nil, "missing NAME"},
		{"NAME", []string{"a", "b"}, nil, `unexpected argument "b"`},
		{"[NAME]", nil, nil, ""},
		{"[NAME]", []string{"a", "--workers=3"}, []string{"a"}, ""},
		{"[NAME]", []string{"a", "b"}, nil, `unexpected argument "b"`},
		{"LINE...", nil, nil, "missing LINE..."},
		{"LINE...", []string{"a", "--json", "b", "--workers", "3", "c"}, []string{"a", "b", "c"}, ""},
		{"LINE...", []string{"a", "--", "--json", "-b"}, []string{"a", "--json", "-b"}, ""},
		{"[URL...]", nil, nil, ""},
		{"SRC DST [MORE...]", []string{"a"}, nil, "missing DST"},
		{"SRC DST [MORE...]", []string{"a", "b", "c", "d"}, []string{"a", "b", "c", "d"}, ""},
	} {
		e := newExample(tt.synopsis)
		err := e.cmd.Parse(tt.args)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%q %q: %v", tt.synopsis, tt.args, err)
		case tt.err != "" && (err == nil || err.Error() != tt.err):
			t.Errorf("%q %q: error %v, want %q", tt.synopsis, tt.args, err, tt.err)
		case tt.err == "" && !slices.Equal(e.cmd.Flags.Args(), tt.want):
			t.Errorf("%q %q: arguments %q, want %q", tt.synopsis, tt.args, e.cmd.Flags.Args(), tt.want)
		}
	}
	e := newExample("LINE...")
	if err := e.cmd.Parse([]string{"a", "--workers=3", "b", "--json"}); err != nil || *e.workers != 3 || !*e.json {
		t.Errorf("flags between arguments: %v, workers %d, json %v", err, *e.workers, *e.json)
	}
}

// Every flag has an environment variable; the command line wins; a bad value is a usage
// error that names the variable; --help and --version come from the command line only.
func TestEnvironment(t *testing.T) {
	if got := EnvName("metrics-listen"); got != "CONCUR_METRICS_LISTEN" {
		t.Errorf("EnvName(metrics-listen) = %s", got)
	}
	t.Setenv("CONCUR_JITTER", "3s")
	t.Setenv("CONCUR_WORKERS", "7")
	t.Setenv("CONCUR_JSON", "true")
	t.Setenv("CONCUR_LOG_LEVEL", "debug")
	t.Setenv("CONCUR_HELP", "true")
	t.Setenv("CONCUR_VERSION", "true")
	e := newExample("")
	if code := e.run("--workers=2"); code != ExitOK || e.stdout.Len() != 0 {
		t.Fatalf("exit %d, stdout %q", code, e.stdout)
	}
	if *e.jitter != 3*time.Second || *e.workers != 2 || !*e.json || *e.logLevel != "debug" {
		t.Errorf("jitter %v, workers %d, json %v, log-level %q: want the environment's, but the flag's workers", *e.jitter, *e.workers, *e.json, *e.logLevel)
	}

	t.Setenv("CONCUR_WORKERS", "lots")
	e = newExample("")
	if code := e.run(); code != ExitUsage || e.stderr.String() != "demo: invalid value \"lots\" for CONCUR_WORKERS (--workers): want a whole number\nrun 'demo --help' for usage\n" {
		t.Errorf("bad environment value: exit %d, stderr %q", code, e.stderr)
	}
	e = newExample("")
	if code := e.run("--workers=1"); code != ExitOK {
		t.Errorf("a bad environment value under a flag given: exit %d, stderr %q", code, e.stderr)
	}
}

func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"--jitter=1s", "--help"}} {
		e := newExample("[NAME]")
		e.cmd.About = "Does a demo."
		if code := e.run(args...); code != ExitOK || !strings.HasPrefix(e.stdout.String(), "Usage: demo [flags] [NAME]\n\nDoes a demo.\n") || e.stderr.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, e.stdout, e.stderr)
		}
	}
	e := newExample("")
	if code := e.run("--version"); code != ExitOK || !strings.HasPrefix(e.stdout.String(), "github.com/concur-dev/concur ") {
		t.Errorf("--version: exit %d, stdout %q", code, e.stdout)
	}
}

// --help wraps the paragraphs of About to 80 columns, but not a table.
func TestAboutWraps(t *testing.T) {
	e := newExample("")
	e.cmd.About = strings.Repeat("word ", 30) + "\n\nCommands:\n  a     does a\n  bb    does bb"
	e.cmd.Usage(e.stdout)
	want := "Usage: demo [flags]\n\n" + strings.Repeat("word ", 15) + "word\n" + strings.Repeat("word ", 13) + "word\n\nCommands:\n  a     does a\n  bb    does bb\n\n"
	if got := e.stdout.String(); !strings.HasPrefix(got, want) {
		t.Errorf("usage:\n%s\nwant it to start with:\n%s", got, want)
	}
}

// --help lists every flag once, under the group of its longest prefix or else the group
// without prefixes, in the groups' order, then the environment and the exit codes.
func TestUsageGroups(t *testing.T) {
	e := newExample("")
	e.cmd.Groups = []Group{
		{Title: "General"},
		DialGroup("Connection", ""),
		{Title: "Logs", Prefixes: []string{"log-", "json"}},
		{Title: "Nothing here", Prefixes: []string{"nothing-"}},
	}
	e.cmd.Exits = ClientExits("an item failed")
	e.cmd.Usage(e.stdout)
	want := `Usage: demo [flags]

General:
  --help
        print this help and exit
  --jitter duration
        race amplifier
  --limit items
        most items
  --version
        print the version and exit
  --workers int
        how many workers (default 10)

Connection:
  --addr address
        server address (default "127.0.0.1:50051")
  --tls-ca file
        CA file
  --token-file file
        token file

Logs:
  --json
        print JSON
  --log-level level
        log level (default "info")

Environment:
  Every flag but --help and --version can be set by an environment variable,
  CONCUR_ and the flag's name in upper case with dashes as underscores (--addr
  is CONCUR_ADDR); a flag on the command line wins.

Exit status:
  0    ok
  1    an item failed
  2    usage error: a flag, an argument or an environment variable is wrong
  3    the call failed: no server answered, or it answered with an error
  130  interrupted (SIGINT, Ctrl-C; 143 for SIGTERM)
`
	if got := e.stdout.String(); got != want {
		t.Errorf("usage:\n%s\nwant:\n%s", got, want)
	}

	// Groups that all have prefixes get a last one for the flags they leave.
	e = newExample("")
	e.cmd.Groups = []Group{{Title: "Logs", Prefixes: []string{"log-"}}}
	e.cmd.Usage(e.stdout)
	if got := e.stdout.String(); !strings.Contains(got, "\nLogs:\n  --log-level level\n") || !strings.Contains(got, "\nFlags:\n  --addr address\n") {
		t.Errorf("usage:\n%s", got)
	}
}

// A subcommand takes its parent's flags anywhere on its command line, sharing their values;
// its help lists only its own.
func TestSub(t *testing.T) {
	e := newExample("COMMAND [ARGS...]")
	e.cmd.FlagsFirst = true
	if err := e.cmd.Parse([]string{"--json", "incr", "hits", "--by", "5", "--addr", "x:1", "--", "-y"}); err != nil {
		t.Fatal(err)
	}
	if got := e.cmd.Flags.Args(); !slices.Equal(got, []string{"incr", "hits", "--by", "5", "--addr", "x:1", "--", "-y"}) {
		t.Fatalf("the parent's arguments: %q", got)
	}
	sub := e.cmd.Sub("incr")
	sub.Args = "[NAME...]"
	by := sub.Flags.Int("by", 1, "the amount")
	if err := sub.Parse(e.cmd.Flags.Args()[1:]); err != nil {
		t.Fatal(err)
	}
	if *by != 5 || *e.addr != "x:1" || !*e.json || !slices.Equal(sub.Flags.Args(), []string{"hits", "-y"}) {
		t.Errorf("by %d, addr %q, json %v, args %q", *by, *e.addr, *e.json, sub.Flags.Args())
	}
	var help strings.Builder
	sub.Usage(&help)
	if got := help.String(); !strings.Contains(got, "Usage: demo incr [flags] [NAME...]\n") || !strings.Contains(got, "--by int") ||
		!strings.Contains(got, "--help") || strings.Contains(got, "--addr") || !strings.Contains(got, "The flags of 'demo --help' work here too.") {
		t.Errorf("the subcommand's help:\n%s", got)
	}
	if code := sub.Exit(context.Background(), Usage("bad")); code != ExitUsage || !strings.HasSuffix(e.stderr.String(), "demo incr: bad\nrun 'demo incr --help' for usage\n") {
		t.Errorf("exit %d, stderr %q", code, e.stderr)
	}
}

// Exit prints one line for how a command ended and returns its code.
func TestExit(t *testing.T) {
	interrupted, cancel := context.WithCancelCause(context.Background())
	cancel(&Interrupted{Signal: syscall.SIGINT})
	terminated, cancel := context.WithCancelCause(context.Background())
	cancel(&Interrupted{Signal: syscall.SIGTERM})
	for _, tt := range []struct {
		name string
		ctx  context.Context
		err  error
		code int
		says string
	}{
		{"ok", context.Background(), nil, 0, ""},
		{"interrupted, but done", interrupted, nil, 0, ""},
		{"interrupted", interrupted, status.Error(codes.Canceled, "context canceled"), 130, "demo: interrupted\n"},
		{"terminated", terminated, errors.New("whatever"), 143, "demo: terminated\n"},
		{"usage", context.Background(), Usage("no %s", "URLs"), 2, "demo: no URLs\nrun 'demo --help' for usage\n"},
		{"usage with context", context.Background(), fmt.Errorf("the caser: %w", Usage("bad token file")), 2, "demo: the caser: bad token file\nrun 'demo --help' for usage\n"},
		{"failed, said", context.Background(), Failed(""), 1, ""},
		{"failed", context.Background(), Failed("2 of 3 URLs could not be measured"), 1, "demo: 2 of 3 URLs could not be measured\n"},
		{"call failed", context.Background(), CallFailed("the check of async failed"), 3, "demo: the check of async failed\n"},
		{"status", context.Background(), status.Error(codes.InvalidArgument, "invalid request: name: too long"), 3, "demo: InvalidArgument: invalid request: name: too long\n"},
		{"status with context", context.Background(), fmt.Errorf("counter Get: %w", status.Error(codes.NotFound, "gone")), 3, "demo: counter Get: rpc error: code = NotFound desc = gone\n"},
		{"unreachable", context.Background(), &unreachable{"127.0.0.1:1", status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused"`)}, 3,
			"demo: no concur service answered at 127.0.0.1:1: is concurd running? (connection refused)\n"},
		{"other", context.Background(), errors.New("read the input: broken pipe"), 1, "demo: read the input: broken pipe\n"},
	} {
		e := newExample("")
		if code := e.cmd.Exit(tt.ctx, tt.err); code != tt.code || e.stderr.String() != tt.says || e.stdout.Len() != 0 {
			t.Errorf("%s: exit %d, stderr %q, stdout %q; want exit %d, stderr %q", tt.name, code, e.stderr, e.stdout, tt.code, tt.says)
		}
	}
}

func TestShortReason(t *testing.T) {
	for msg, want := range map[string]string{
		`connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused"`:                "connection refused",
		`connection error: desc = "transport: authentication handshake failed: tls: first record does not look like a TLS handshake"`: "first record does not look like a TLS handshake",
		"name resolver error: produced zero addresses": "produced zero addresses",
		"no colon":                               "no colon",
		"x: " + strings.Repeat("very long ", 10): "",
	} {
		if got := shortReason(msg); got != want {
			t.Errorf("shortReason(%q) = %q, want %q", msg, got, want)
		}
	}
}

// A signal ends Interruptible's context with an *Interrupted as its cause.
func TestInterruptible(t *testing.T) {
	testkit.NoLeaks(t)
	ctx, stop := Interruptible(context.Background())
	defer stop()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	<-ctx.Done()
	intr, ok := errors.AsType[*Interrupted](context.Cause(ctx))
	if !ok || intr.Code() != 130 {
		t.Fatalf("cause %v, want an interrupt by SIGINT that exits 130", context.Cause(ctx))
	}
}
