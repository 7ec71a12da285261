// Package cli is how every concur binary reads its command line and says how it ended, written
// once for all of them: flags from the command line, then from CONCUR_* environment
// variables; --help grouped by concern; --version; usage errors in one line; a plain sentence
// for a server that did not answer; and the exit codes.
//
// It builds on the standard flag package, as the rest of concur does, so that no binary
// depends on a command-line library.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc/status"
)

// The exit codes of concur's binaries.
const (
	ExitOK     = 0
	ExitFailed = 1 // the command ran, but some of its work failed: a URL, a check
	ExitUsage  = 2
	ExitCall   = 3 // a call failed: no server answered, or it answered with an error
	// An interrupted command exits 128 plus the signal's number, as a shell reports it:
	// 130 for SIGINT (Ctrl-C), 143 for SIGTERM.
	ExitInterrupted = 130
)

// Command is one binary, or one subcommand of a binary: its flags, what its --help says, and
// how it reports its end.
type Command struct {
	// Name is what the user types: "concurd", "concur incr".
	Name string
	// Args is the synopsis of the positional arguments: "NAME" (one), "[NAME]" (at most
	// one), "LINE..." (one or more), "[URL...]" (any). Parse counts the arguments against
	// it; empty means none.
	Args string
	// About says what the command does, in paragraphs separated by blank lines, which
	// --help wraps; a paragraph with indented lines (a table) is left as it is.
	About string
	// Groups sorts the flags in --help; see Group.
	Groups []Group
	// Exits lists the exit codes the command uses, with what each means for it.
	Exits []Exit
	// Flags are the command's flags; Parse reads them.
	Flags *flag.FlagSet
	// FlagsFirst ends the flags at the first positional argument, for a command whose first
	// argument is a command with flags of its own. Otherwise flags may follow arguments
	// (concur incr hits --by 5), up to a "--".
	FlagsFirst bool

	stdout, stderr io.Writer
	help, version  *bool
	parent         *Command // for a subcommand, the command whose flags it shares
}

// Exit is an exit code and what it means, for --help.
type Exit struct {
	Code  int
	Means string
}

// ClientExits are the exit codes of a client; failed says what exit 1 means for it, or is
// empty when it does not use it.
func ClientExits(failed string) []Exit {
	exits := []Exit{{ExitOK, "ok"}}
	if failed != "" {
		exits = append(exits, Exit{ExitFailed, failed})
	}
	return append(exits,
		Exit{ExitUsage, "usage error: a flag, an argument or an environment variable is wrong"},
		Exit{ExitCall, "the call failed: no server answered, or it answered with an error"},
		Exit{ExitInterrupted, "interrupted (SIGINT, Ctrl-C; 143 for SIGTERM)"},
	)
}

// New returns a command whose --help and version go to stdout and whose errors go to stderr.
// It defines --help and --version.
func New(name string, stdout, stderr io.Writer) *Command {
	c := &Command{Name: name, Flags: flag.NewFlagSet(name, flag.ContinueOnError), stdout: stdout, stderr: stderr}
	// The flag package would print its error and the whole usage: Exit prints one line.
	c.Flags.SetOutput(io.Discard)
	c.Flags.Usage = func() {}
	c.help = c.Flags.Bool("help", false, "print this help and exit")
	c.version = c.Flags.Bool("version", false, "print the version and exit")
	return c
}

// Sub returns a subcommand of c, named "c.Name name", that takes c's flags too, wherever
// they stand on the command line, sharing their values. A subcommand reads no environment
// variable: c did, for the flags they share, and its own flags are arguments of one call.
func (c *Command) Sub(name string) *Command {
	s := New(c.Name+" "+name, c.stdout, c.stderr)
	s.parent = c
	c.Flags.VisitAll(func(f *flag.Flag) {
		if s.Flags.Lookup(f.Name) == nil {
			s.Flags.Var(f.Value, f.Name, f.Usage)
			s.Flags.Lookup(f.Name).DefValue = f.DefValue
		}
	})
	return s
}

// Parse reads the flags in args, then, for a command that is not a subcommand, every flag
// not given from its environment variable (EnvName), then checks the count of positional
// arguments against Args. Its errors are for Exit: --help and --version end the command with
// 0, anything wrong is a usage error.
func (c *Command) Parse(args []string) error {
	if err := c.parseArgs(args); err != nil {
		return err
	}
	switch {
	case *c.help:
		return errHelp
	case *c.version:
		return errVersion
	}
	if c.parent == nil {
		if err := c.parseEnv(); err != nil {
			return err
		}
	}
	return c.checkArgs()
}

// parseArgs runs the flag package, and words its errors for a person.
func (c *Command) parseArgs(args []string) error {
	// Each flag's Set is watched for the duration of the parse, so that a bad value is
	// reported with its reason: the flag package says only "parse error".
	var bad struct {
		flag  *flag.Flag
		value string
		err   error
	}
	c.Flags.VisitAll(func(f *flag.Flag) {
		inner := f.Value
		f.Value = watched{inner, func(v string, err error) { bad.flag, bad.value, bad.err = f, v, err }}
	})
	err := c.parseInterspersed(args)
	c.Flags.VisitAll(func(f *flag.Flag) { f.Value = f.Value.(watched).Value })
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp): // -h
		return errHelp
	case bad.err != nil:
		return Usage("invalid value %q for flag %s: %s", bad.value, dashed(bad.flag.Name), reason(bad.flag, bad.err))
	}
	msg := err.Error()
	for prefix, say := range map[string]string{
		"flag provided but not defined: -": "unknown flag %s",
		"flag needs an argument: -":        "flag %s needs a value",
	} {
		if name, ok := strings.CutPrefix(msg, prefix); ok {
			msg = fmt.Sprintf(say, dashed(name))
		}
	}
	return Usage("%s", msg)
}

// parseInterspersed parses flags and positional arguments in any order: the flag package
// stops at the first argument, so each time it does, the argument is set aside and the
// parse goes on after it.
func (c *Command) parseInterspersed(args []string) error {
	var positional []string
	for {
		if err := c.Flags.Parse(args); err != nil {
			return err
		}
		rest := c.Flags.Args()
		ended := len(rest) < len(args) && args[len(args)-len(rest)-1] == "--"
		if c.FlagsFirst || ended || len(rest) == 0 {
			positional = append(positional, rest...)
			break
		}
		positional, args = append(positional, rest[0]), rest[1:]
	}
	// Parse once more with nothing but "--" and the arguments, so that Args returns them.
	return c.Flags.Parse(append([]string{"--"}, positional...))
}

// watched is a flag's value that reports a failed Set.
type watched struct {
	flag.Value
	failed func(value string, err error)
}

func (w watched) Set(v string) error {
	err := w.Value.Set(v)
	if err != nil {
		w.failed(v, err)
	}
	return err
}

// IsBoolFlag keeps a boolean flag boolean (--json needs no value) while it is watched.
func (w watched) IsBoolFlag() bool {
	b, ok := w.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// reason says why a value was refused. For the flag package's own types it says what it
// wants instead of "parse error".
func reason(f *flag.Flag, err error) string {
	g, ok := f.Value.(flag.Getter)
	if !ok || err.Error() != "parse error" {
		return err.Error()
	}
	switch g.Get().(type) {
	case bool:
		return "want true or false"
	case int, int64:
		return "want a whole number"
	case uint, uint64:
		return "want a whole number, 0 or more"
	case float64:
		return "want a number"
	case time.Duration:
		return "want a duration such as 300ms, 10s or 1h30m"
	}
	return err.Error()
}

// dashed is a flag as --help writes it: -f for a letter, --name for a name. The flag package
// takes either with one dash or two.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// EnvName is the environment variable for a flag: CONCUR_ and the flag's name in upper case
// with dashes as underscores (--metrics-listen is CONCUR_METRICS_LISTEN).
func EnvName(flagName string) string {
	return "CONCUR_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseEnv sets every flag not given on the command line from its environment variable, if
// set; the command line wins. --help and --version come from the command line only.
func (c *Command) parseEnv() error {
	given := map[string]bool{"help": true, "version": true}
	c.Flags.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	c.Flags.VisitAll(func(f *flag.Flag) {
		v, ok := os.LookupEnv(EnvName(f.Name))
		if err != nil || given[f.Name] || !ok {
			return
		}
		if e := c.Flags.Set(f.Name, v); e != nil {
			err = Usage("invalid value %q for %s (%s): %s", v, EnvName(f.Name), dashed(f.Name), reason(f, e))
		}
	})
	return err
}

// checkArgs counts the positional arguments against Args.
func (c *Command) checkArgs() error {
	least, most := arity(c.Args)
	switch n := c.Flags.NArg(); {
	case n < least:
		return Usage("missing %s", strings.Join(strings.Fields(c.Args)[n:least], " "))
	case most >= 0 && n > most:
		return Usage("unexpected argument %q", c.Flags.Arg(most))
	}
	return nil
}

// arity reads a synopsis: a bare word is a required argument, one in brackets optional, and
// one ending in ... repeats.
func arity(synopsis string) (least, most int) {
	for _, w := range strings.Fields(synopsis) {
		if !strings.HasPrefix(w, "[") {
			least++
		}
		switch {
		case strings.HasSuffix(strings.TrimSuffix(w, "]"), "..."):
			most = -1
		case most >= 0:
			most++
		}
	}
	return least, most
}

var (
	errHelp    = errors.New("help asked for")
	errVersion = errors.New("version asked for")
)

// exitError ends a command with its own exit code.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// Usage is a usage error: Exit prints it, says how to get help, and exits 2.
func Usage(format string, args ...any) error {
	return &exitError{ExitUsage, fmt.Sprintf(format, args...)}
}

// Failed ends a command that ran but some of whose work failed, with exit 1. Exit prints the
// message, unless it is empty because the command has already said what failed.
func Failed(format string, args ...any) error {
	return &exitError{ExitFailed, fmt.Sprintf(format, args...)}
}

// CallFailed ends a command whose calls failed, with exit 3, when it has said how
// itself, or when the message is more to the point than the calls' errors.
func CallFailed(format string, args ...any) error {
	return &exitError{ExitCall, fmt.Sprintf(format, args...)}
}

// Exit reports how the command ended, on stdout for --help and --version and otherwise on
// stderr in one line (two for a usage error), and returns its exit code:
//   - nil: 0, even when interrupted, since the work was done;
//   - --help, --version: 0;
//   - after an interrupt (Interruptible's ctx), any error: 128 plus the signal's number;
//   - Usage: 2; Failed: 1;
//   - an error with a gRPC status: 3 (a server that did not answer is said in a sentence);
//   - any other error: 1.
func (c *Command) Exit(ctx context.Context, err error) int {
	intr, interrupted := errors.AsType[*Interrupted](context.Cause(ctx))
	switch exit, _ := errors.AsType[*exitError](err); {
	case err == nil:
		return ExitOK
	case err == errHelp:
		c.Usage(c.stdout)
		return ExitOK
	case err == errVersion:
		fmt.Fprintln(c.stdout, Version())
		return ExitOK
	case interrupted: // whatever failed, failed because of it
		fmt.Fprintf(c.stderr, "%s: %s\n", c.Name, intr)
		return intr.Code()
	case exit != nil:
		if exit.msg != "" {
			fmt.Fprintf(c.stderr, "%s: %s\n", c.Name, err)
		}
		if exit.code == ExitUsage {
			fmt.Fprintf(c.stderr, "run '%s --help' for usage\n", c.Name)
		}
		return exit.code
	}
	if st, ok := status.FromError(err); ok {
		msg := err.Error() // an unreachable server's sentence, or a status with its context
		_, bare := err.(interface{ GRPCStatus() *status.Status })
		if _, unreached := err.(*unreachable); bare && !unreached {
			msg = fmt.Sprintf("%s: %s", st.Code(), st.Message()) // the code says what kind of failure
		}
		fmt.Fprintf(c.stderr, "%s: %s\n", c.Name, msg)
		return ExitCall
	}
	fmt.Fprintf(c.stderr, "%s: %s\n", c.Name, err)
	return ExitFailed
}

// Validate checks a request before it is sent, with the Validate method the contracts give
// each request: a request that breaks a rule is a usage error, not a failed call.
func Validate(req interface{ Validate() error }) error {
	if err := req.Validate(); err != nil {
		return Usage("%s", status.Convert(err).Message())
	}
	return nil
}
