package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/internal/demosites"
	"github.com/concur-dev/concur/internal/jitter"
	"github.com/concur-dev/concur/services/sitesize"
)

// The sitesize scenarios fetch pages from a local web server that answers each request after
// pageDelay with pageSize bytes, as the yardstick does: the talk's sitesize moved to
// the server (Measure) against a plain Go http.Client pool run in the same process and the
// same run, against the ideal (URLs / concurrency x delay), and against the talk's first way,
// one GET after another.
const (
	pageDelay = 100 * time.Millisecond
	pageSize  = 100 << 10
)

func init() {
	// The web server and the service are set up once; the batches and the fetches alternate.
	register("sitesize", "Measure of 1,000 and 10,000 slow pages against a plain http.Client pool; one GET after another; peak RSS", func(ctx context.Context, e *env) ([]figure, error) {
		web, err := startWeb()
		if err != nil {
			return nil, err
		}
		defer web.close()
		var c sitesize.Config
		c.RegisterFlags(flag.NewFlagSet("bench", flag.ContinueOnError))
		c.Workers, c.MaxConcurrency = 2000, 2000
		c.Allow = sitesize.Prefixes{netip.MustParsePrefix("127.0.0.0/8")}
		c.AllowPorts = sitesize.Ports{{First: 1, Last: 65535}}
		svc, err := sitesize.New(c, sitesize.Deps{Jitter: jitter.New(0), Metrics: prometheus.NewRegistry()})
		if err != nil {
			return nil, err
		}
		_, conn, err := e.server(svc)
		if err != nil {
			return nil, err
		}
		client := sitesizev1.NewSiteSizeServiceClient(conn)

		var figs []figure
		for _, b := range []struct {
			urls, concurrency int
			target            float64
		}{{1000, 200, 1.1}, {10000, 2000, 1.25}} {
			urls := web.pages(b.urls)
			measured, pool, ratio, err := versus(e.rounds,
				func() (float64, error) { return secondsOf(measureBatch(ctx, client, urls, b.concurrency)) },
				func() (float64, error) { return secondsOf(plainPool(ctx, urls, b.concurrency)) })
			if err != nil {
				return nil, err
			}
			at := fmt.Sprintf("%s URLs at %s", thousands(int64(b.urls)), thousands(int64(b.concurrency)))
			ideal := time.Duration(b.urls/b.concurrency) * pageDelay
			figs = append(figs,
				figure{name: "Measure, " + at, value: measured, show: fixed(2), unit: "s", ratio: &ratio, per: "x plain pool",
					target: fmt.Sprintf("<= %gx plain pool", b.target), met: new(ratio.median <= b.target)},
				figure{name: fmt.Sprintf("plain Go client pool, %s (the yardstick; ideal %v)", at, ideal), value: pool, show: fixed(2), unit: "s"},
			)
		}

		first100, urls := web.pages(100), web.pages(1000)
		seq, measure, ratio, err := versus(e.rounds, func() (float64, error) {
			d, err := sequential(ctx, first100)
			return float64(d / 100), err
		}, func() (float64, error) {
			d, err := measureBatch(ctx, client, urls, 200)
			return float64(d / 1000), err
		})
		if err != nil {
			return nil, err
		}
		figs = append(figs,
			figure{name: "one GET after another, first 100 URLs: time a URL", value: seq, show: duration, ratio: &ratio, per: "x Measure"},
			figure{name: "Measure, 1,000 URLs at 200: time a URL (the yardstick)", value: measure, show: duration},
		)

		rss, err := peakRSS(ctx, e, web)
		if err != nil {
			return nil, err
		}
		return append(figs, rss...), nil
	})
}

// plainPool is the yardstick: concurrency goroutines sharing one http.Client, each fetching
// the next URL and counting its body, as a Go programmer would write it without concur.
func plainPool(ctx context.Context, urls []string, concurrency int) (time.Duration, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency, DisableCompression: true}}
	defer client.CloseIdleConnections()
	start := time.Now()
	next := make(chan string)
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for u := range next {
				if n, err := demosites.Fetch(ctx, client, u); err != nil || n != pageSize {
					failed.Add(1)
				}
			}
		})
	}
	for _, u := range urls {
		next <- u
	}
	close(next)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		return 0, fmt.Errorf("plain pool: %d of %d fetches failed", n, len(urls))
	}
	return time.Since(start), nil
}

// sequential is the talk's first way: map(sitesize, sites), one GET after another.
func sequential(ctx context.Context, urls []string) (time.Duration, error) {
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()
	start := time.Now()
	for _, u := range urls {
		if _, err := demosites.Fetch(ctx, client, u); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// measureBatch sends urls as one batch and waits for every result.
func measureBatch(ctx context.Context, client sitesizev1.SiteSizeServiceClient, urls []string, concurrency int) (time.Duration, error) {
	start := time.Now()
	stream, err := client.Measure(ctx, &sitesizev1.MeasureRequest{Urls: urls, Concurrency: uint32(concurrency)})
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("measure: %w", err)
		}
		if r.GetError() != nil || r.GetSize() != pageSize {
			return 0, fmt.Errorf("measure: %s: size %d, error %v", r.GetUrl(), r.GetSize(), r.GetError())
		}
		n++
	}
	if n != len(urls) {
		return 0, fmt.Errorf("measure: %d results for %d URLs", n, len(urls))
	}
	return time.Since(start), nil
}

// web is the local web server the scenarios fetch from.
type web struct {
	base string
	srv  *http.Server
	done chan struct{}
}

// startWeb serves /page/N (pageSize bytes after pageDelay) and /bytes/N (N bytes at once,
// generated) on a loopback port.
func startWeb() (*web, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	page := make([]byte, pageSize)
	mux := http.NewServeMux()
	mux.HandleFunc("/page/", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(pageDelay)
		w.Header().Set("Content-Length", strconv.Itoa(pageSize))
		w.Write(page)
	})
	mux.HandleFunc("/bytes/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.ParseInt(r.PathValue("n"), 10, 64)
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		for ; n > 0; n -= int64(len(page)) {
			if _, err := w.Write(page[:min(n, int64(len(page)))]); err != nil {
				return
			}
		}
	})
	w := &web{base: "http://" + lis.Addr().String(), srv: &http.Server{Handler: mux}, done: make(chan struct{})}
	go func() {
		w.srv.Serve(lis)
		close(w.done)
	}()
	return w, nil
}

// pages returns n distinct page URLs, so that no batch folds duplicates.
func (w *web) pages(n int) []string {
	urls := make([]string, n)
	for i := range urls {
		urls[i] = fmt.Sprintf("%s/page/%d", w.base, i)
	}
	return urls
}

func (w *web) close() {
	w.srv.Close()
	<-w.done
}
