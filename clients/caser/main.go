// Command caser is an interactive caser session in a terminal, like the talk's telnet: it
// sends each line it reads to the server and prints every message the server sends, the
// announcements included, as they come, the way the talk shows them.
//
//	go run ./clients/caser                 # then type lines: text, title, upper, quit
//	printf 'hello\ntitle\nhello world\nquit\n' | go run ./clients/caser
//
// It exits 0 once the server has said goodbye (after quit, when the session was idle too
// long, or when the server shuts down); at the end of its input it says quit itself. It
// exits 1 when its input cannot be read or the session ends without a goodbye, 2 on a usage
// error, 3 when the call fails (the server's status is printed), 130 when interrupted.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	caserv1 "github.com/concur-dev/concur/api/concur/caser/v1"
	"github.com/concur-dev/concur/clients/caser/render"
	"github.com/concur-dev/concur/internal/cli"
	"github.com/concur-dev/concur/internal/dial"
)

// maxLine is the longest line read, the largest message a concur server takes by default;
// the server's own limit (--caser-max-line-bytes) is usually lower, and it says so.
const maxLine = 4 << 20

func main() { cli.Main(run) }

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := cli.New("caser", stdout, stderr)
	cmd.About = `A caser session: each line of standard input is sent to the server ("title"
and "upper" switch the mode, "quit" ends the session) and every message of the
server is printed as it comes, announcements included. At the end of its input it
says quit.`
	cmd.Groups = []cli.Group{{Title: "Flags"}, cli.DialGroup("Connection", "")}
	cmd.Exits = cli.ClientExits("the input could not be read, or the session ended without a goodbye")
	var server dial.Config
	server.RegisterFlags(cmd.Flags, "", "caser server", "127.0.0.1:50051")
	ascii := cmd.Flags.Bool("ascii", false, "quote cased lines with Python's ascii(), as the talk's b'%a' does, escaping every non-ASCII character (default: repr(), which prints them)")
	if err := cmd.Parse(args); err != nil {
		return cmd.Exit(ctx, err)
	}
	return cmd.Exit(ctx, runSession(ctx, server, stdin, stdout, *ascii))
}

// runSession runs one session, from the lines of in, until the server's goodbye.
func runSession(ctx context.Context, server dial.Config, in io.Reader, out io.Writer, ascii bool) error {
	conn, err := cli.Dial(server)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stream, err := caserv1.NewCaserServiceClient(conn).Session(ctx)
	if err != nil {
		return err
	}
	go send(stream, in, cancel)
	return receive(ctx, stream, out, ascii)
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

// receive prints the session's messages until it ends.
func receive(ctx context.Context, stream caserv1.CaserService_SessionClient, out io.Writer, ascii bool) error {
	saidGoodbye := false
	for {
		resp, err := stream.Recv()
		switch {
		case errors.Is(err, io.EOF) && saidGoodbye:
			return nil
		case errors.Is(err, io.EOF):
			return cli.Failed("the server ended the session without a goodbye")
		case ctx.Err() != nil:
			return context.Cause(ctx) // the input failed, or an interrupt
		case err != nil:
			return err
		}
		fmt.Fprintln(out, render.Reply(resp, ascii))
		saidGoodbye = saidGoodbye || resp.GetGoodbye() != nil
	}
}
