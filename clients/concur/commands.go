package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	caserv1 "github.com/concur-dev/concur/api/concur/caser/v1"
	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/clients/sitesize/report"
	"github.com/concur-dev/concur/internal/cli"
)

// commands are concur's commands, in the order its help lists them.
var commands = []command{
	{
		name: "incr", args: "[NAME]", setup: incr,
		summary: "add to a counter (1, or --by) and print its new value",
		about: `Adds --by (1 by default) to the counter NAME, or to the talk's counter, "default",
when NAME is left out, and prints its new value once the change is on disk. The
counter sends the printer the talk's print job for it.`,
	},
	{
		name: "get", args: "[NAME]", setup: get,
		summary: "print a counter's value",
		about:   `Prints the value of the counter NAME, or of "default"; a counter never incremented reads 0.`,
	},
	{
		name: "watch", args: "[NAME]", setup: watch,
		summary: "print a counter's value, then each new one, until Ctrl-C",
		about: `Prints the value of the counter NAME, or of "default", then each new value as it
changes, until Ctrl-C. A watcher that falls behind gets the latest value.`,
	},
	{
		name: "join", setup: join,
		summary: "wait until every increment so far is on disk and printed",
		about: `Waits until every increment accepted so far is on disk and its print job written
by the printer (the talk's counter_queue.join()), and prints the sequence number of
the last one. With --printer it joins the printer instead: every job accepted so far
is written (print_queue.join()).`,
	},
	{
		name: "print", args: "LINE...", setup: printLines,
		summary: "print the lines, together, as one job",
		about: `Sends the lines to the printer as one job, written together and never interleaved
with another job's lines, and prints the job's sequence number once it is accepted.`,
	},
	{
		name: "tail", setup: tail,
		summary: "print what the printer wrote; -f follows new jobs",
		about: `Prints the lines the printer has written, job by job, from the oldest it keeps or
from job --from; with -f it goes on with each new job until Ctrl-C.`,
	},
	{
		name: "case", args: "TEXT...", setup: caseText,
		summary: "print the text in upper case, or title case with --title",
		about:   `Prints the text (the arguments, joined by spaces) cased as Python cases it.`,
	},
	{
		name: "size", args: "URL...", setup: size, failed: "a URL could not be measured",
		summary: "measure web pages, printing each as it completes",
		about: `Measures the pages in one call to the sitesize and prints each result as it
completes: url size status time, then the error if the fetch failed.`,
	},
}

func incr(fs *flag.FlagSet) action {
	by := fs.Int64("by", 1, "the `amount` to add, negative to subtract")
	id := fs.String("request-id", "", "an `ID` (a UUID, say) that makes the increment apply once, however often it is sent")
	return func(ctx context.Context, s *session, args []string) error {
		counter, err := s.counterFor()
		if err != nil {
			return err
		}
		r, err := call(ctx, counter.Increment,
			&counterv1.IncrementRequest{Name: first(args), Delta: by, RequestId: *id})
		if err != nil {
			return err
		}
		text := fmt.Sprint(r.GetValue())
		if r.GetReplayed() {
			text += " (replayed: this --request-id was applied before)"
		}
		return s.show(r, text)
	}
}

func get(*flag.FlagSet) action {
	return func(ctx context.Context, s *session, args []string) error {
		counter, err := s.counterFor()
		if err != nil {
			return err
		}
		r, err := call(ctx, counter.Get, &counterv1.GetRequest{Name: first(args)})
		if err != nil {
			return err
		}
		return s.show(r, fmt.Sprint(r.GetValue()))
	}
}

func watch(*flag.FlagSet) action {
	return func(ctx context.Context, s *session, args []string) error {
		counter, err := s.counterFor()
		if err != nil {
			return err
		}
		stream, err := call(ctx, counter.Watch, &counterv1.WatchRequest{Name: first(args)})
		if err != nil {
			return err
		}
		return showStream(s, stream, func(r *counterv1.WatchResponse) string { return fmt.Sprint(r.GetValue()) })
	}
}

func join(fs *flag.FlagSet) action {
	printer := fs.Bool("printer", false, "join the printer instead of the counter")
	return func(ctx context.Context, s *session, _ []string) error {
		if *printer {
			r, err := call(ctx, printerv1.NewPrinterServiceClient(s.conn).Join, &printerv1.JoinRequest{})
			if err != nil {
				return err
			}
			return s.show(r, fmt.Sprintf("every job up to %d is written", r.GetSequence()))
		}
		r, err := call(ctx, counterv1.NewCounterServiceClient(s.conn).Join, &counterv1.JoinRequest{})
		if err != nil {
			return err
		}
		text := fmt.Sprintf("every increment up to %d is on disk and printed", r.GetSequence())
		if !r.GetPrinted() {
			text = fmt.Sprintf("every increment up to %d is on disk (this counter has no printer)", r.GetSequence())
		}
		return s.show(r, text)
	}
}

func printLines(*flag.FlagSet) action {
	return func(ctx context.Context, s *session, args []string) error {
		r, err := call(ctx, printerv1.NewPrinterServiceClient(s.conn).Print, &printerv1.PrintRequest{Lines: args})
		if err != nil {
			return err
		}
		return s.show(r, fmt.Sprintf("accepted as job %d", r.GetSequence()))
	}
}

func tail(fs *flag.FlagSet) action {
	follow := fs.Bool("f", false, "follow: go on printing new jobs until Ctrl-C")
	from := fs.Uint64("from", 0, "the first job to print, by sequence `number`; 0 is the oldest the printer keeps")
	return func(ctx context.Context, s *session, _ []string) error {
		stream, err := call(ctx, printerv1.NewPrinterServiceClient(s.conn).Tail,
			&printerv1.TailRequest{FromSequence: *from, HistoryOnly: !*follow})
		if err != nil {
			return err
		}
		return showStream(s, stream, func(r *printerv1.TailResponse) string { return strings.Join(r.GetLines(), "\n") })
	}
}

func caseText(fs *flag.FlagSet) action {
	title := fs.Bool("title", false, "title case (Python's str.title()) instead of upper case (str.upper())")
	return func(ctx context.Context, s *session, args []string) error {
		mode := caserv1.Mode_MODE_UPPER
		if *title {
			mode = caserv1.Mode_MODE_TITLE
		}
		r, err := call(ctx, caserv1.NewCaserServiceClient(s.conn).Case, &caserv1.CaseRequest{Text: strings.Join(args, " "), Mode: mode})
		if err != nil {
			return err
		}
		return s.show(r, r.GetText())
	}
}

func size(*flag.FlagSet) action {
	return func(ctx context.Context, s *session, urls []string) error {
		stream, err := call(ctx, sitesizev1.NewSiteSizeServiceClient(s.conn).Measure, &sitesizev1.MeasureRequest{Urls: urls})
		if err != nil {
			return err
		}
		failed := 0
		err = showStream(s, stream, func(r *sitesizev1.MeasureResponse) string {
			if r.GetError() != nil {
				failed++
			}
			return report.Line(r)
		})
		if err != nil {
			return err
		}
		if failed > 0 {
			return cli.Failed("%d of %d URLs could not be measured", failed, len(urls))
		}
		return nil
	}
}
