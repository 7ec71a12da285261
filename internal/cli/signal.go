package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/concur-dev/concur/internal/telemetry"
)

// Interrupted is the cause of a context that a signal ended.
type Interrupted struct{ Signal os.Signal }

// Error is "interrupted" for SIGINT (Ctrl-C), else the signal's name ("terminated").
func (e *Interrupted) Error() string {
	if e.Signal == os.Interrupt {
		return "interrupted"
	}
	return e.Signal.String()
}

// Code is the exit code a shell reports for the signal: 128 plus its number.
func (e *Interrupted) Code() int {
	if s, ok := e.Signal.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return ExitInterrupted
}

// Interruptible returns a context that SIGINT or SIGTERM ends, with an *Interrupted as its
// cause, and a stop function that releases the signals. After the first signal they are
// released at once, so that a second Ctrl-C kills a command that is slow to stop.
func Interruptible(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			signal.Stop(sigs)
			cancel(&Interrupted{Signal: sig})
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel(nil)
	}
}

// Main runs a client's run function with the process's arguments and standard streams and a
// context from Interruptible, and exits with the code it returns. The OTEL_* environment turns
// tracing on as it does for concurd (internal/telemetry): every call the client makes is then
// a client span whose context the server continues, and the spans are flushed before the exit.
// An OTEL_* setting concur cannot follow is a usage error.
func Main(run func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int) {
	ctx, stop := Interruptible(context.Background())
	stopTracing, err := telemetry.Start(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", filepath.Base(os.Args[0]), err)
		os.Exit(ExitUsage)
	}
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	flush, cancel := context.WithTimeout(context.Background(), flushTimeout)
	if err := stopTracing(flush); err != nil {
		fmt.Fprintf(os.Stderr, "%s: sending the last spans: %v\n", filepath.Base(os.Args[0]), err)
	}
	cancel()
	os.Exit(code)
}

// flushTimeout bounds the wait for the collector at exit: a command's answer is already out,
// and an unreachable collector must not hold the shell.
const flushTimeout = 5 * time.Second
