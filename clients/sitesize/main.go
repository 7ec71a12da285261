// Command sitesize measures the size of web pages through a concur sitesize server: the
// talk's sitesize with imap_unordered, where one trip carries the whole batch and only sizes
// come back.
//
//	sitesize https://www.python.org/ https://www.pypy.org/
//	sitesize -f urls.txt --ordered
//	grep -h http bookmarks.txt | sitesize --json
//
// Each result prints as it arrives: the URL, its size in bytes, the HTTP status and the time
// the fetch took, then the error when it failed. A progress bar is drawn on standard error
// when that is a terminal. The exit status is 1 when a URL could not be measured, 2 for a
// usage error, 3 when the call failed, 130 when interrupted.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
	"google.golang.org/protobuf/types/known/durationpb"

	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/clients/sitesize/report"
	"github.com/concur-dev/concur/internal/cli"
	"github.com/concur-dev/concur/internal/dial"
)

func main() { cli.Main(run) }

type options struct {
	dial        dial.Config
	file        string
	json        bool
	ordered     bool
	concurrency uint
	timeout     time.Duration
	maxBytes    int64
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var o options
	cmd := cli.New("sitesize", stdout, stderr)
	cmd.Args = "[URL...]"
	cmd.About = `Measures web pages through a concur sitesize server, sending the whole batch in
one call. URLs come from the arguments, from -f FILE, or from standard input when
neither is given. Each result prints as it arrives: url size status time, then the
error if the fetch failed; a summary follows on standard error.`
	cmd.Groups = []cli.Group{{Title: "Flags"}, cli.DialGroup("Connection", "")}
	cmd.Exits = cli.ClientExits("a URL could not be measured")
	fs := cmd.Flags
	o.dial.RegisterFlags(fs, "", "sitesize server", "127.0.0.1:50051")
	fs.StringVar(&o.file, "f", "", "read URLs from this `file`, one a line (- for standard input); blank lines and # comments are skipped")
	fs.BoolVar(&o.json, "json", false, "print each result as a line of JSON")
	fs.BoolVar(&o.ordered, "ordered", false, "print results in the order of the URLs (like imap) instead of as they finish (like imap_unordered)")
	fs.UintVar(&o.concurrency, "concurrency", 0, "fetches to run at once; 0 takes the server's default (the server caps it)")
	fs.DurationVar(&o.timeout, "timeout", 0, "time allowed for each URL; 0 takes the server's default (the server caps it)")
	fs.Int64Var(&o.maxBytes, "max-bytes", 0, "stop counting a page after this many `bytes` and mark it truncated; 0 takes the server's cap")
	if err := cmd.Parse(args); err != nil {
		return cmd.Exit(ctx, err)
	}
	return cmd.Exit(ctx, o.measureAll(ctx, fs.Args(), stdin, stdout, stderr))
}

// measureAll measures the URLs of the arguments, the file or standard input, and prints the
// results and a summary.
func (o options) measureAll(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	urls, err := readURLs(args, o.file, stdin)
	if err != nil {
		return cli.Usage("%v", err)
	}
	if len(urls) == 0 {
		return cli.Usage("no URLs given: pass them as arguments, with -f FILE or on standard input")
	}
	if o.concurrency > 1<<32-1 {
		return cli.Usage("--concurrency %d is too large", o.concurrency)
	}
	req := &sitesizev1.MeasureRequest{Urls: urls, Concurrency: uint32(o.concurrency), Ordered: o.ordered, MaxBytes: o.maxBytes}
	if o.timeout != 0 {
		req.Timeout = durationpb.New(o.timeout)
	}
	if err := cli.Validate(req); err != nil {
		return err
	}
	var bar *progress
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		bar = &progress{w: stderr, total: len(urls)}
		bar.draw()
	}
	start := time.Now()
	s, err := measure(ctx, o, req, &printer{w: stdout, json: o.json, bar: bar})
	s.elapsed = time.Since(start)
	if err == nil || s.results > 0 {
		fmt.Fprintln(stderr, "sitesize:", s.line(len(urls)))
	}
	switch {
	case err != nil:
		return err
	case s.failed > 0:
		return cli.Failed("") // the summary says how many
	}
	return nil
}

// readURLs gathers the batch: the arguments, else the file, else standard input.
func readURLs(args []string, file string, stdin io.Reader) ([]string, error) {
	if len(args) > 0 && file != "" {
		return nil, errors.New("give URLs as arguments or with -f, not both")
	}
	if len(args) > 0 {
		return args, nil
	}
	in := stdin
	if file != "" && file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		in = f
	}
	var urls []string
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			urls = append(urls, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read URLs: %w", err)
	}
	return urls, nil
}

// summary is what a batch came to.
type summary struct {
	results, failed int
	bytes           int64
	elapsed         time.Duration
}

func (s summary) line(total int) string {
	return fmt.Sprintf("%d of %d URLs measured, %d bytes in all, %d failed, in %v", s.results-s.failed, total, s.bytes, s.failed, s.elapsed.Round(time.Millisecond))
}

// measure sends the batch in one call and prints each result as it arrives.
func measure(ctx context.Context, o options, req *sitesizev1.MeasureRequest, p *printer) (summary, error) {
	var s summary
	conn, err := cli.Dial(o.dial)
	if err != nil {
		return s, err
	}
	defer conn.Close()
	stream, err := sitesizev1.NewSiteSizeServiceClient(conn).Measure(ctx, req)
	if err != nil {
		return s, err
	}
	defer p.done()
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return s, nil
		}
		if err != nil {
			return s, err
		}
		s.results++
		s.bytes += r.GetSize()
		if r.GetError() != nil {
			s.failed++
		}
		if err := p.print(r); err != nil {
			return s, err
		}
	}
}

// printer writes results, as text or JSON lines, keeping the progress bar below them.
type printer struct {
	w    io.Writer
	json bool
	bar  *progress
}

// jsonResult is a result as a line of JSON: numbers as numbers, the elapsed time in
// milliseconds.
type jsonResult struct {
	Index     uint32     `json:"index"`
	URL       string     `json:"url"`
	Size      int64      `json:"size"`
	Status    *int32     `json:"status,omitempty"`
	FinalURL  string     `json:"final_url,omitempty"`
	Redirects uint32     `json:"redirects,omitempty"`
	ElapsedMS float64    `json:"elapsed_ms"`
	Truncated bool       `json:"truncated,omitempty"`
	Error     *jsonError `json:"error,omitempty"`
}

type jsonError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (p *printer) print(r *sitesizev1.MeasureResponse) error {
	var line string
	if p.json {
		j := jsonResult{
			Index: r.GetIndex(), URL: r.GetUrl(), Size: r.GetSize(), Status: r.Status, FinalURL: r.GetFinalUrl(),
			Redirects: r.GetRedirects(), ElapsedMS: float64(r.GetElapsed().AsDuration().Microseconds()) / 1000, Truncated: r.GetTruncated(),
		}
		if e := r.GetError(); e != nil {
			j.Error = &jsonError{Code: e.GetCode().String(), Message: e.GetMessage()}
		}
		b, err := json.Marshal(j)
		if err != nil {
			return err
		}
		line = string(b)
	} else {
		line = report.Line(r)
	}
	p.bar.clear()
	_, err := fmt.Fprintln(p.w, line)
	p.bar.advance()
	return err
}

func (p *printer) done() { p.bar.clear() }

// progress is a one-line bar on a terminal: [#####.....] 42/100. A nil progress draws
// nothing.
type progress struct {
	w           io.Writer
	done, total int
	shown       bool
}

const barWidth = 30

func (b *progress) draw() {
	if b == nil {
		return
	}
	filled := barWidth * b.done / b.total
	fmt.Fprintf(b.w, "\r[%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat(".", barWidth-filled), b.done, b.total)
	b.shown = true
}

func (b *progress) advance() {
	if b != nil {
		b.done++
		b.draw()
	}
}

// clear erases the bar, so that a result line or the summary takes its place.
func (b *progress) clear() {
	if b != nil && b.shown {
		fmt.Fprint(b.w, "\r\033[K")
		b.shown = false
	}
}
