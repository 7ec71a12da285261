// Package sitesize is the site-size fetcher: the talk's sitesize with pool.imap_unordered,
// moved to the server. One request carries a whole batch of URLs (few trips), the server
// fetches them on a shared pool of workers (significant work on each trip), and only sizes
// come back (summary results), each carrying its URL and index, so that results can flow back
// as they finish.
//
// The pieces: CheckLimits checks a request against the server's limits (the runtime runs it
// beside the request's Validate, before the handler); plan folds duplicate URLs into one job
// each; pool is the owner goroutine that shares the workers fairly among batches;
// fetcher counts one URL's body as it streams, behind the address guard; the handler streams
// outcomes back as they finish, or in request order, holding only what must wait its turn.
package sitesize

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/api/violation"
	"github.com/concur-dev/concur/internal/jitter"
)

// Service is the SiteSizeService: New creates it, Name and Register put it on a server,
// Shutdown stops it.
type Service struct {
	sitesizev1.UnimplementedSiteSizeServiceServer
	cfg     Config
	pool    *owner
	fetcher *fetcher
	start   sync.Once // the pool's goroutine starts with the first call or the shutdown
}

// Deps are what the service is given by whoever assembles it. Each may be left zero: a nil
// Log discards, the zero Jitter is off, a nil Metrics leaves the collectors unregistered, a
// nil Resolver is net.DefaultResolver.
type Deps struct {
	// Log gets the service's one line when it is ready.
	Log *slog.Logger
	// Jitter sleeps between the pool's steps, to amplify races between it and its fetches.
	Jitter jitter.Jitter
	// Metrics registers the service's collectors.
	Metrics prometheus.Registerer
	// Resolver looks up the names of the URLs' hosts.
	Resolver *net.Resolver
}

// New returns the service configured by c.
func New(c Config, d Deps) (*Service, error) {
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("sitesize: %w", err)
	}
	m, err := newMetrics(d.Metrics)
	if err != nil {
		return nil, fmt.Errorf("sitesize: register metrics: %w", err)
	}
	log := d.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := newFetcher(c, d.Resolver)
	log.Info("sitesize ready", "workers", c.Workers, "max_urls", c.MaxURLs, "max_bytes", c.MaxBytes)
	return &Service{cfg: c, fetcher: f, pool: newPool(c.Workers, f, d.Jitter, m)}, nil
}

// Name is the service's full gRPC name.
func (s *Service) Name() string { return sitesizev1.SiteSizeService_ServiceDesc.ServiceName }

// Register adds the service's handlers to a gRPC server.
func (s *Service) Register(r grpc.ServiceRegistrar) { sitesizev1.RegisterSiteSizeServiceServer(r, s) }

func (s *Service) running() *owner {
	s.start.Do(func() { go s.pool.run() })
	return s.pool
}

// Shutdown stops every batch's fetches at once: each open Measure sends the results that were
// finished and ends with UNAVAILABLE. It returns when no fetch is left running, or when ctx
// ends. It may be called again, also after a deadline passed: each call waits for the same end.
func (s *Service) Shutdown(ctx context.Context) error {
	err := s.running().shutdown(ctx)
	s.fetcher.transport.CloseIdleConnections()
	return err
}

// CheckLimits adds to l a violation for each of the server's limits a MeasureRequest breaks:
// too many URLs, or a URL too long. The runtime calls it beside the request's Validate,
// before Measure sees the request, and reports what both found in one INVALID_ARGUMENT.
func (s *Service) CheckLimits(req any, l *violation.List) {
	if r, ok := req.(*sitesizev1.MeasureRequest); ok {
		s.cfg.checkLimits(r, l)
	}
}

// Measure fetches a batch of URLs and streams one result per URL; the runtime has checked
// the request (Validate and CheckLimits).
func (s *Service) Measure(req *sitesizev1.MeasureRequest, stream grpc.ServerStreamingServer[sitesizev1.MeasureResponse]) error {
	p := s.cfg.plan(req)
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	b := &batch{
		ctx:      ctx,
		cancel:   cancel,
		urls:     p.unique,
		limit:    p.concurrency,
		timeout:  p.timeout,
		maxBytes: p.maxBytes,
		results:  make(chan outcome, len(p.unique)),
	}
	if !s.running().add(b) {
		return status.Error(codes.Unavailable, "sitesize: the server is shutting down; send the batch again later")
	}
	o := &sender{plan: p, send: stream.Send}
	var end error // why the stream ends early
	received := 0
	for received < len(p.unique) && end == nil {
		select {
		case out := <-b.results:
			received++
			if out.cancelled() {
				end = context.Cause(ctx)
			} else {
				end = o.deliver(out)
			}
		case <-ctx.Done():
			end = context.Cause(ctx)
		}
	}
	if end == nil {
		s.pool.remove(b)
		return nil
	}
	// The batch ends early: stop its fetches and wait for those that started. When the server
	// shuts down, what finished meanwhile is still sent.
	cancel(end)
	shutdown := errors.Is(end, errShuttingDown)
	flushing := shutdown
	for started := s.pool.remove(b); received < started; received++ {
		if out := <-b.results; flushing && !out.cancelled() {
			flushing = o.deliver(out) == nil
		}
	}
	switch {
	case stream.Context().Err() != nil:
		return status.FromContextError(stream.Context().Err()).Err()
	case shutdown:
		if flushing {
			o.flush()
		}
		return status.Errorf(codes.Unavailable, "sitesize: the server is shutting down; %d of %d results were sent, measure the rest again later", o.sent, len(p.urls))
	}
	return end
}

// plan is a request's batch, its duplicate URLs folded into one job each.
type plan struct {
	urls        []string // as given
	unique      []string // each distinct URL once, in order of first appearance: the jobs
	job         []int    // job[i] fetches urls[i]
	first       []int    // first[j] is the first index fetched by job j
	nextSame    []int    // nextSame[i] is the next index with the URL of urls[i], or -1
	ordered     bool
	concurrency int
	timeout     time.Duration
	maxBytes    int64
}

// checkLimits adds to l a violation for each of the server's limits req breaks.
func (c *Config) checkLimits(req *sitesizev1.MeasureRequest, l *violation.List) {
	urls := req.GetUrls()
	if len(urls) > c.MaxURLs {
		l.Addf("urls", "holds %d URLs; this server measures at most %d in one batch (--sitesize-max-urls): split the batch", len(urls), c.MaxURLs)
	}
	for i, u := range urls {
		if len(u) > c.MaxURLBytes {
			l.Addf(fmt.Sprintf("urls[%d]", i), "is %d bytes long; this server takes URLs of at most %d bytes (--sitesize-max-url-bytes)", len(u), c.MaxURLBytes)
		}
	}
}

// plan plans the jobs of a request that passed Validate and checkLimits, and caps its options
// at the server's.
func (c *Config) plan(req *sitesizev1.MeasureRequest) *plan {
	urls := req.GetUrls()
	p := &plan{
		urls:        urls,
		job:         make([]int, len(urls)),
		nextSame:    make([]int, len(urls)),
		ordered:     req.GetOrdered(),
		concurrency: c.Concurrency,
		timeout:     c.Timeout,
		maxBytes:    c.MaxBytes,
	}
	last := make(map[string]int, len(urls)) // each URL's latest index so far
	for i, u := range urls {
		p.nextSame[i] = -1
		if prev, seen := last[u]; seen {
			p.job[i] = p.job[prev]
			p.nextSame[prev] = i
		} else {
			p.job[i] = len(p.unique)
			p.unique = append(p.unique, u)
			p.first = append(p.first, i)
		}
		last[u] = i
	}
	if n := req.GetConcurrency(); n > 0 {
		p.concurrency = int(min(n, uint32(c.MaxConcurrency)))
	}
	if t := req.GetTimeout(); t != nil {
		p.timeout = t.AsDuration()
	}
	if n := req.GetMaxBytes(); n > 0 {
		p.maxBytes = n
	}
	p.concurrency = min(p.concurrency, c.MaxConcurrency)
	p.timeout = min(p.timeout, c.MaxTimeout)
	p.maxBytes = min(p.maxBytes, c.MaxBytes)
	return p
}

// sender turns outcomes into responses, one per index of the job's URL: as they come, or in
// request order, holding only the outcomes that finished ahead of their turn.
type sender struct {
	*plan
	send func(*sitesizev1.MeasureResponse) error
	done []*result // ordered: each job's result, once in
	next int       // ordered: the next index to send
	sent int
}

func (o *sender) deliver(out outcome) error {
	if !o.ordered {
		for i := o.first[out.job]; i >= 0; i = o.nextSame[i] {
			if err := o.emit(i, &out.result); err != nil {
				return err
			}
		}
		return nil
	}
	if o.done == nil {
		o.done = make([]*result, len(o.unique))
	}
	o.done[out.job] = &out.result
	for ; o.next < len(o.urls) && o.done[o.job[o.next]] != nil; o.next++ {
		if err := o.emit(o.next, o.done[o.job[o.next]]); err != nil {
			return err
		}
	}
	return nil
}

// flush sends, when the batch ends early, the ordered results still waiting for an earlier
// one that will never come: still in increasing index order, with gaps.
func (o *sender) flush() {
	for ; o.ordered && o.done != nil && o.next < len(o.urls); o.next++ {
		if r := o.done[o.job[o.next]]; r != nil && o.emit(o.next, r) != nil {
			return
		}
	}
}

func (o *sender) emit(i int, r *result) error {
	m := &sitesizev1.MeasureResponse{
		Index:     new(uint32(i)),
		Url:       o.urls[i],
		Size:      new(r.size),
		FinalUrl:  r.finalURL,
		Redirects: r.redirects,
		Elapsed:   durationpb.New(r.elapsed),
		Truncated: r.truncated,
		Error:     r.err,
	}
	if r.status != 0 {
		m.Status = new(r.status)
	}
	if err := o.send(m); err != nil {
		return err
	}
	o.sent++
	return nil
}
