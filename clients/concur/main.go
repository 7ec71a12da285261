// Command concur is a command line for everyday use of the concur services, in the spirit of
// redis-cli: a command for each thing to do, plain text for a person, --json for a script.
//
//	concur incr hits --by 5
//	concur get hits
//	concur watch hits                 # until Ctrl-C
//	concur print 'Starting up'
//	concur tail -f
//	concur case --title 'thinking about concurrency'
//	concur size https://www.python.org/
//
// It exits 0 when the command did what it says, 1 when a URL of size could not be measured, 2
// on a usage error, 3 when the call failed, and 130 when interrupted.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	"github.com/concur-dev/concur/internal/cli"
	"github.com/concur-dev/concur/internal/counterroute"
	"github.com/concur-dev/concur/internal/dial"
)

func main() { cli.Main(run) }

// command is one of concur's commands.
type command struct {
	name, args string
	summary    string // one line, for the list of commands
	about      string // for the command's --help
	// failed says what exit 1 means for the command, if it uses it.
	failed string
	// setup defines the command's own flags and returns what it does.
	setup func(fs *flag.FlagSet) action
}

// action does a command's work with the positional arguments left after its flags.
type action func(ctx context.Context, s *session, args []string) error

// session is what an action works with: the connection and the way to show responses.
type session struct {
	conn   *grpc.ClientConn
	server dial.Config
	router *counterroute.Client // made by the first call of counterFor
	out    io.Writer
	json   bool
}

// counterFor is the client for a counter's calls: it sends them to the node that owns the
// counter on a counter cluster, and to the server on an embedded counter (internal/counterroute).
func (s *session) counterFor() (counterv1.CounterServiceClient, error) {
	if s.router == nil {
		r, err := counterroute.New(counterroute.Config{Seed: s.server, Dial: cli.Dial})
		if err != nil {
			return nil, err
		}
		s.router = r
	}
	return s.router, nil
}

// close closes the session's connections.
func (s *session) close() {
	s.conn.Close()
	if s.router != nil {
		s.router.Close()
	}
}

func run(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	root := cli.New("concur", stdout, stderr)
	root.Args, root.FlagsFirst = "COMMAND [ARGS...]", true
	root.About = about()
	root.Groups = []cli.Group{{Title: "Flags"}, cli.DialGroup("Connection", "")}
	root.Exits = cli.ClientExits("size: a URL could not be measured")
	var server dial.Config
	server.RegisterFlags(root.Flags, "", "concur server", "127.0.0.1:50051")
	asJSON := root.Flags.Bool("json", false, "print each response as one line of JSON (protojson), for scripts")
	if err := root.Parse(args); err != nil {
		return root.Exit(ctx, err)
	}
	name, rest := root.Flags.Arg(0), root.Flags.Args()[1:]
	if name == "help" {
		if len(rest) == 0 {
			root.Usage(stdout)
			return cli.ExitOK
		}
		name, rest = rest[0], []string{"--help"}
	}
	i := slices.IndexFunc(commands, func(c command) bool { return c.name == name })
	if i < 0 {
		return root.Exit(ctx, cli.Usage("unknown command %q", name))
	}
	c := commands[i]
	sub := root.Sub(c.name)
	sub.Args, sub.About, sub.Exits = c.args, c.about, cli.ClientExits(c.failed)
	act := c.setup(sub.Flags)
	if err := sub.Parse(rest); err != nil {
		return sub.Exit(ctx, err)
	}
	conn, err := cli.Dial(server)
	if err != nil {
		return sub.Exit(ctx, err)
	}
	s := &session{conn: conn, server: server, out: stdout, json: *asJSON}
	defer s.close()
	return sub.Exit(ctx, act(ctx, s, sub.Flags.Args()))
}

// about is concur's own help: what it is, and its commands.
func about() string {
	var b strings.Builder
	b.WriteString(`A command line for the concur services, in the spirit of redis-cli: plain text
for a person, --json for a script. The flags below go before or after the command;
each command has its own too (concur COMMAND --help).

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-18s %s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
	fmt.Fprintf(&b, "  %-18s %s\n", "help [COMMAND]", "print this help, or a command's")
	return b.String()
}

// show writes a response: text for a person, or the response in protojson, on one line, for
// a script.
func (s *session) show(m proto.Message, text string) error {
	if s.json {
		b, err := protojson.Marshal(m)
		if err != nil {
			return err
		}
		// protojson varies its spacing on purpose; a script's line should not.
		var compact bytes.Buffer
		if err := json.Compact(&compact, b); err != nil {
			return err
		}
		text = compact.String()
	}
	_, err := fmt.Fprintln(s.out, text)
	return err
}

// showStream shows each response of a server stream, as text makes it for a person, until
// the stream ends.
func showStream[Resp proto.Message](s *session, stream interface{ Recv() (Resp, error) }, text func(Resp) string) error {
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.show(r, text(r)); err != nil {
			return err
		}
	}
}

// call checks req with its Validate method, so that a request that breaks a rule is a usage
// error, then makes the call: a unary one, or the opening of a stream.
func call[Req interface{ Validate() error }, Resp any](ctx context.Context, rpc func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	if err := cli.Validate(req); err != nil {
		var zero Resp
		return zero, err
	}
	return rpc(ctx, req)
}

// first is the first argument, or "".
func first(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}
