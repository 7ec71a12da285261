package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/internal/demosites"
)

// poolSize is the talk's Pool(10).
const poolSize = 10

// fetchTimeout bounds one fetch, both ways.
const fetchTimeout = 30 * time.Second

// sitesSection is the talk's site sizes: one trip to the sitesize with the whole list,
// results as they complete (pool.imap_unordered), then the talk's first way, one fetch after
// another from this client, and both wall times. The check: one result per URL, each carrying
// its URL, no fetch failed, and for the demo sites every size is the page's size both ways.
func (t *talk) sitesSection(ctx context.Context) error {
	urls, sizes := t.sites, []int(nil)
	if urls == nil {
		urls = t.demo.URLs()
		for _, s := range demosites.Sites {
			sizes = append(sizes, s.Size)
		}
	}
	t.heading("Multi-processing: the sizes of %d sites", len(urls))
	if t.sites == nil {
		fmt.Fprintf(t.out, "The talk's sites, served here on %v with the sizes the talk measured and delays like a real site's.\n", t.demo.Addr())
	}

	fmt.Fprintf(t.out, "One trip to the sitesize with the whole list, %d at a time; results as they complete (pool.imap_unordered):\n", poolSize)
	var errs []error
	began := time.Now()
	got, err := t.measure(ctx, urls)
	together := time.Since(began)
	if err != nil {
		return err
	}
	for i, r := range got {
		switch {
		case r == nil:
			errs = append(errs, fmt.Errorf("no result for %s (index %d)", urls[i], i))
		case r.GetUrl() != urls[i]:
			errs = append(errs, fmt.Errorf("the result for index %d carries %s, want %s", i, r.GetUrl(), urls[i]))
		case r.GetError() != nil:
			errs = append(errs, fmt.Errorf("the sitesize could not measure %s: %s%s", urls[i], r.GetError().GetMessage(), blockedHint(r, t.sites == nil)))
		case sizes != nil && r.GetSize() != int64(sizes[i]):
			errs = append(errs, fmt.Errorf("the sitesize measured %s at %d bytes; the page has %d", urls[i], r.GetSize(), sizes[i]))
		}
	}

	fmt.Fprintln(t.out, "\nThe talk's first way: one fetch after another, from this client (map):")
	transport := http.DefaultTransport.(*http.Transport).Clone()
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: fetchTimeout}
	began = time.Now()
	for i, url := range urls {
		size, err := demosites.Fetch(ctx, client, url)
		if ctx.Err() != nil {
			return ctx.Err() // interrupted, or out of time: no line per URL left to say so
		}
		if err != nil {
			fmt.Fprintf(t.out, "(%q, %v)\n", url, err)
			errs = append(errs, fmt.Errorf("fetch %s: %w", url, err))
			continue
		}
		fmt.Fprintf(t.out, "(%q, %d)\n", url, size)
		if sizes != nil && size != int64(sizes[i]) {
			errs = append(errs, fmt.Errorf("fetched %s: %d bytes; the page has %d", url, size, sizes[i]))
		}
	}
	oneByOne := time.Since(began)

	fmt.Fprintf(t.out, "\nOne trip, %d at a time: %v    one after another: %v    (%.1f times faster)\n",
		poolSize, together.Round(time.Millisecond), oneByOne.Round(time.Millisecond), oneByOne.Seconds()/together.Seconds())
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if sizes != nil {
		fmt.Fprintln(t.out, "Check passed: one result per URL, each carrying its URL, every size the page's size both ways.")
	} else {
		fmt.Fprintln(t.out, "Check passed: one result per URL, each carrying its URL, none failed.")
	}
	return nil
}

// measure sends the whole list in one Measure call and prints each result as it comes; it
// returns the results by index.
func (t *talk) measure(ctx context.Context, urls []string) ([]*sitesizev1.MeasureResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := t.sitesize.Measure(ctx, &sitesizev1.MeasureRequest{Urls: urls, Concurrency: poolSize})
	if err != nil {
		return nil, fmt.Errorf("sitesize Measure: %w", err)
	}
	got := make([]*sitesizev1.MeasureResponse, len(urls))
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			return nil, fmt.Errorf("sitesize Measure: %w", err)
		}
		if r.GetError() != nil {
			fmt.Fprintf(t.out, "(%q, %s)    %v\n", r.GetUrl(), r.GetError().GetCode(), r.GetElapsed().AsDuration().Round(time.Millisecond))
		} else {
			fmt.Fprintf(t.out, "(%q, %d)    %v\n", r.GetUrl(), r.GetSize(), r.GetElapsed().AsDuration().Round(time.Millisecond))
		}
		i := int(r.GetIndex())
		if i >= len(got) || got[i] != nil {
			return nil, fmt.Errorf("sitesize Measure sent index %d twice or out of range", i)
		}
		got[i] = r
	}
}

// blockedHint says how to let a deployed sitesize reach the demo sites.
func blockedHint(r *sitesizev1.MeasureResponse, demo bool) string {
	if !demo || r.GetError().GetCode() != sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_BLOCKED {
		return ""
	}
	return " (run the sitesize's concurd with --sitesize-allow=127.0.0.1 and --sitesize-allow-ports set to the port of --demo-sites-listen, on the same host; or give --sites)"
}
