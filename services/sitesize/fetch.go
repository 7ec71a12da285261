package sitesize

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
)

// fetcher measures one URL at a time: the talk's sitesize(url), counting the body as it
// streams instead of holding the page.
type fetcher struct {
	transport    *http.Transport
	maxRedirects int
}

// newFetcher returns the fetcher for c; it looks names up with r (nil: net.DefaultResolver).
func newFetcher(c Config, r *net.Resolver) *fetcher {
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Resolver: r, Control: newGuard(c.Allow, c.AllowPorts).control}
	return &fetcher{
		transport: &http.Transport{
			Proxy:       nil, // never a proxy from the environment: the guard must see the real address
			DialContext: asBrowser(dialer.DialContext),
			// No Accept-Encoding and no transparent decompression: size is the bytes the server sent.
			DisableCompression:     true,
			ForceAttemptHTTP2:      true,
			TLSHandshakeTimeout:    10 * time.Second,
			ExpectContinueTimeout:  time.Second,
			MaxResponseHeaderBytes: 64 << 10,
			// Batches often hold many URLs of one site: keep as many connections as run at once.
			MaxIdleConns:        c.Workers,
			MaxIdleConnsPerHost: c.MaxConcurrency,
			IdleConnTimeout:     30 * time.Second,
		},
		maxRedirects: c.MaxRedirects,
	}
}

// result is what one fetch measured.
type result struct {
	size      int64
	status    int32 // 0 when no response arrived
	finalURL  string
	redirects uint32
	elapsed   time.Duration
	truncated bool
	err       *sitesizev1.FetchError
}

var (
	errTimeout          = errors.New("per-URL timeout")
	errTooManyRedirects = errors.New("too many redirects")
)

// fetch GETs rawURL and counts its body up to maxBytes within timeout; ctx is the batch's.
// Every failure is part of the result. A traced Measure gets a span per fetch, redirects
// included; the page's server is not sent the trace context, which is the caller's own.
func (f *fetcher) fetch(ctx context.Context, rawURL string, timeout time.Duration, maxBytes int64) (r result) {
	start := time.Now()
	ctx, span := otel.Tracer(tracerName).Start(ctx, "sitesize.fetch", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("url.full", rawURL)))
	defer func() {
		r.elapsed = time.Since(start)
		endSpan(span, r)
	}()
	urlCtx, cancel := context.WithTimeoutCause(ctx, timeout, errTimeout)
	defer cancel()

	req, err := http.NewRequestWithContext(urlCtx, http.MethodGet, rawURL, nil)
	if err != nil {
		r.err = &sitesizev1.FetchError{Code: sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_PROTOCOL, Message: err.Error()}
		return r
	}
	req.Header.Set("User-Agent", "concur-sitesize")
	client := &http.Client{Transport: f.transport, CheckRedirect: func(next *http.Request, via []*http.Request) error {
		if len(via) > f.maxRedirects {
			return fmt.Errorf("%w: the server follows at most %d (--sitesize-max-redirects)", errTooManyRedirects, f.maxRedirects)
		}
		if next.URL.Scheme != "http" && next.URL.Scheme != "https" {
			return &blockedError{fmt.Sprintf("a redirect to scheme %q; only http and https are fetched", next.URL.Scheme)}
		}
		r.redirects = uint32(len(via))
		return nil
	}}
	resp, err := client.Do(req)
	if resp != nil {
		r.status = int32(resp.StatusCode)
		r.finalURL = resp.Request.URL.String()
	}
	if err != nil {
		r.err = classify(err, rawURL, ctx, urlCtx, timeout)
		return r
	}
	defer resp.Body.Close()
	// io.Discard reads through a small pooled buffer: a gigabyte costs what a kilobyte does.
	r.size, err = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBytes+1))
	if r.size > maxBytes {
		r.size, r.truncated = maxBytes, true
	} else if err != nil {
		r.err = classify(err, rawURL, ctx, urlCtx, timeout)
	}
	return r
}

// tracerName names the sitesize spans' instrumentation.
const tracerName = "github.com/concur-dev/concur/services/sitesize"

// endSpan ends a fetch's span with what the fetch measured.
func endSpan(span trace.Span, r result) {
	if span.IsRecording() {
		span.SetAttributes(attribute.Int64("concur.sitesize.size_bytes", r.size), attribute.Int("http.response.status_code", int(r.status)),
			attribute.Int("concur.sitesize.redirects", int(r.redirects)), attribute.Bool("concur.sitesize.truncated", r.truncated))
		if r.err != nil {
			span.SetStatus(otelcodes.Error, r.err.GetCode().String()+": "+r.err.GetMessage())
		}
	}
	span.End()
}

// classify maps a fetch's error to the contract's codes; ctx is the batch's, urlCtx the
// fetch's own. The message leaves out rawURL, which the result carries already, and names a
// URL only when it is another one, a redirect's.
func classify(err error, rawURL string, ctx, urlCtx context.Context, timeout time.Duration) *sitesizev1.FetchError {
	code := sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_PROTOCOL
	msg := err.Error()
	if uerr, ok := err.(*url.Error); ok && uerr.URL == rawURL {
		msg = uerr.Err.Error()
	}
	var (
		blocked *blockedError
		dns     *net.DNSError
		addr    *net.AddrError
		netErr  net.Error
	)
	switch {
	case errors.As(err, &blocked):
		code = sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_BLOCKED
	case errors.Is(err, errTooManyRedirects):
		code = sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_TOO_MANY_REDIRECTS
	case ctx.Err() != nil:
		code, msg = sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_CANCELLED, "stopped before the end: "+context.Cause(ctx).Error()
	case context.Cause(urlCtx) == errTimeout || errors.As(err, &netErr) && netErr.Timeout():
		code, msg = sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_TIMEOUT, fmt.Sprintf("no complete response within the timeout of %v", timeout)
	case errors.As(err, &dns), errors.As(err, &addr): // a name with no address to dial
		code = sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_DNS
	case isTLS(err):
		code = sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_TLS
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNABORTED),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EPIPE):
		code = sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_CONNECT
	}
	return &sitesizev1.FetchError{Code: code, Message: msg}
}

func isTLS(err error) bool {
	var (
		header    tls.RecordHeaderError
		alert     tls.AlertError
		verify    *tls.CertificateVerificationError
		authority x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
	)
	return errors.As(err, &header) || errors.As(err, &alert) || errors.As(err, &verify) ||
		errors.As(err, &authority) || errors.As(err, &hostname) || errors.As(err, &invalid)
}
