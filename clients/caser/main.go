// Command caser is an interactive caser session in a terminal, like the talk's telnet: it
// sends each line it reads to the server and prints every message the server sends, the
// announcements included, as they come, the way the talk shows them.
//
//	go run ./clients/caser                 # then type lines: text, title, upper, quit
//	printf 'hello\ntitle\nhello world\nquit\n' | go run ./clients/caser
//
// It exits 0 once the server has said goodbye (after quit, when the session was idle too
// long, or when the server shuts down); at the end of its input it says quit itself. It
// exits 1 when the session fails (the server's status is printed), 2 on a usage error.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"google.golang.org/grpc/status"

	caserv1 "github.com/concur-dev/concur/api/concur/caser/v1"
	"github.com/concur-dev/concur/clients/caser/render"
	"github.com/concur-dev/concur/internal/dial"
)

// maxLine is the longest line read, the largest message a concur server takes by default;
// the server's own limit (--caser-max-line-bytes) is usually lower, and it says so.
const maxLine = 4 << 20

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("caser", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var server dial.Config
	server.RegisterFlags(fs, "", "caser server", "127.0.0.1:50051")
	ascii := fs.Bool("ascii", false, "quote cased lines with Python's ascii(), as the talk's b'%a' does, escaping every non-ASCII character (default: repr(), which prints them)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: caser [flags] < lines\n\nA caser session: each line read is sent to the server (\"title\" and \"upper\" switch the\nmode, \"quit\" ends the session) and every message of the server is printed as it comes.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "caser: unexpected argument %q; the lines come from standard input\n", fs.Arg(0))
		return 2
	}
	conn, err := server.Dial()
	if err != nil {
		fmt.Fprintln(stderr, "caser:", err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stream, err := caserv1.NewCaserServiceClient(conn).Session(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "caser: %s: %s\n", status.Code(err), status.Convert(err).Message())
		return 1
	}
	go send(stream, stdin, cancel)
	return receive(ctx, stream, stdout, stderr, *ascii)
}

// send sends each line of in, without its line ending, and quit at the end of in. It stops
// when the session has ended; when in fails, it ends the session with that cause.
func send(stream caserv1.CaserService_SessionClient, in io.Reader, cancel context.CancelCauseFunc) {
	lines := bufio.NewScanner(in)
	lines.Buffer(nil, maxLine)
	for lines.Scan() {
		if stream.Send(&caserv1.SessionRequest{Line: strings.TrimSuffix(lines.Text(), "\r")}) != nil {
			return // the session has ended: receive says why
		}
	}
	if err := lines.Err(); errors.Is(err, bufio.ErrTooLong) {
		cancel(fmt.Errorf("a line of the input is longer than %d bytes", maxLine))
		return
	} else if err != nil {
		cancel(fmt.Errorf("read the input: %w", err))
		return
	}
	if stream.Send(&caserv1.SessionRequest{Line: "quit"}) == nil {
		stream.CloseSend()
	}
}

// receive prints the session's messages until it ends, and returns the exit status.
func receive(ctx context.Context, stream caserv1.CaserService_SessionClient, stdout, stderr io.Writer, ascii bool) int {
	saidGoodbye := false
	for {
		resp, err := stream.Recv()
		switch {
		case errors.Is(err, io.EOF) && saidGoodbye:
			return 0
		case errors.Is(err, io.EOF):
			fmt.Fprintln(stderr, "caser: the server ended the session without a goodbye")
			return 1
		case ctx.Err() != nil:
			fmt.Fprintln(stderr, "caser:", context.Cause(ctx))
			return 1
		case err != nil:
			fmt.Fprintf(stderr, "caser: %s: %s\n", status.Code(err), status.Convert(err).Message())
			return 1
		}
		fmt.Fprintln(stdout, render.Reply(resp, ascii))
		saidGoodbye = saidGoodbye || resp.GetGoodbye() != nil
	}
}
