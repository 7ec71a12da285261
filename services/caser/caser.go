// Package caser is the talk's async example (nbcaser on a reactor) as a gRPC service: each
// Session is a conversation with state of its own, its mode, and thousands run side by side
// without a lock.
//
// A session's handler goroutine owns the session: it holds the mode, computes every reply and
// is the stream's only sender (gRPC allows one), choosing in one select among the client's
// next line, the next announcement, the idle timer and shutdown, so an announcement never
// races a reply. recv.Pump does the session's Recv in a goroutine of its own, since a
// blocked Recv cannot be selected on. A client that stops reading blocks its own session's
// Send and nothing else.
//
// Announcements (the talk's call_periodic) are beats: one announcer goroutine makes a beat
// every --caser-announce and publishes it by closing the previous beat's channel, which every
// session selects on. The announcer never waits for a session, and a session that was busy
// announces only the newest beat it missed.
package caser

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	caserv1 "github.com/concur-dev/concur/api/concur/caser/v1"
	"github.com/concur-dev/concur/api/violation"
	"github.com/concur-dev/concur/internal/jitter"
	"github.com/concur-dev/concur/services/caser/pycase"
)

// Config is how the caser runs; each field has a --caser-* flag.
type Config struct {
	// Announce is how often every open session hears that the event loop is still running;
	// 0 turns announcements off.
	Announce time.Duration
	// Idle ends, with a goodbye, a session whose client has sent no line for this long; 0
	// never does.
	Idle time.Duration
	// MaxLineBytes is the longest line a session takes and the longest text Case takes.
	MaxLineBytes int
}

// RegisterFlags defines the caser's flags on fs, with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.Announce, "caser-announce", 15*time.Second, "how often every open session hears \"The event loop is still running at: TIME\" (0 is off)")
	fs.DurationVar(&c.Idle, "caser-idle", 10*time.Minute, "end, with a goodbye, a session whose client sends no line for this `duration` (0 never does)")
	fs.IntVar(&c.MaxLineBytes, "caser-max-line-bytes", 64<<10, "longest line of a session, or text of Case, in `bytes`; a reply carries the line and its casing, up to 3 times longer, so keep 4 times this under --max-send-msg-bytes")
}

// Service is the caser. Create it with New.
type Service struct {
	caserv1.UnimplementedCaserServiceServer
	cfg     Config
	jitter  jitter.Jitter
	metrics *metrics

	gate      *gate
	closing   chan struct{} // closed when Shutdown begins
	closeOnce sync.Once

	announcing sync.Once
	latest     atomic.Pointer[beat] // the newest beat, where a new session starts
}

// Deps are what the caser is given by whoever assembles it. Each may be left zero: a nil Log
// discards, the zero Jitter is off, a nil Metrics leaves the collectors unregistered.
type Deps struct {
	// Log gets the caser's one line when it is ready.
	Log *slog.Logger
	// Jitter sleeps before each message a session sends.
	Jitter jitter.Jitter
	// Metrics registers the caser's collectors.
	Metrics prometheus.Registerer
}

// New returns a caser configured by cfg. Its goroutines start with the first session;
// Shutdown ends them.
func New(cfg Config, d Deps) (*Service, error) {
	var errs []error
	if cfg.Announce < 0 {
		errs = append(errs, fmt.Errorf("--caser-announce must not be negative, got %v", cfg.Announce))
	}
	if cfg.Idle < 0 {
		errs = append(errs, fmt.Errorf("--caser-idle must not be negative, got %v", cfg.Idle))
	}
	if cfg.MaxLineBytes <= 0 {
		errs = append(errs, fmt.Errorf("--caser-max-line-bytes must be positive, got %d", cfg.MaxLineBytes))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m, err := newMetrics(d.Metrics)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, jitter: d.Jitter, metrics: m, gate: newGate(), closing: make(chan struct{})}
	s.latest.Store(newBeat(time.Now()))
	log := d.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log.Info("caser ready", "announce", cfg.Announce.String(), "idle", cfg.Idle.String(), "max_line_bytes", cfg.MaxLineBytes)
	return s, nil
}

// Name is the gRPC service's full name.
func (s *Service) Name() string { return caserv1.CaserService_ServiceDesc.ServiceName }

// Register adds the caser's handlers to a gRPC server.
func (s *Service) Register(r grpc.ServiceRegistrar) { caserv1.RegisterCaserServiceServer(r, s) }

// Shutdown says goodbye to every open session and waits until each has ended, and the
// announcer with them, or until ctx ends (a client that never reads cannot be sent its
// goodbye). Sessions opened from now on are refused with UNAVAILABLE. It may be called again,
// also after a deadline passed: each call waits for the same end.
func (s *Service) Shutdown(ctx context.Context) error {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.gate.close()
	})
	select {
	case <-s.gate.empty:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sessions still open, their clients not reading their goodbye: %w", ctx.Err())
	}
}

// Case cases one text in the mode asked for, upper when none is; the runtime has checked the
// request (Validate and CheckLimits).
func (s *Service) Case(_ context.Context, req *caserv1.CaseRequest) (*caserv1.CaseResponse, error) {
	mode := req.GetMode()
	if mode == caserv1.Mode_MODE_UNSPECIFIED {
		mode = caserv1.Mode_MODE_UPPER
	}
	return &caserv1.CaseResponse{Text: caseIn(mode, req.GetText()), Mode: mode}, nil
}

// caseIn cases text in mode, which the request's Validate has checked is known.
func caseIn(mode caserv1.Mode, text string) string {
	if mode == caserv1.Mode_MODE_TITLE {
		return pycase.Title(text)
	}
	return pycase.Upper(text)
}

// CheckLimits adds to l a violation for a session's line or a Case text longer than
// --caser-max-line-bytes. The runtime calls it beside the request's Validate, before the
// handler sees the request, and reports what both found in one INVALID_ARGUMENT.
func (s *Service) CheckLimits(req any, l *violation.List) {
	switch r := req.(type) {
	case *caserv1.CaseRequest:
		s.checkLength(l, "text", r.GetText())
	case *caserv1.SessionRequest:
		s.checkLength(l, "line", r.GetLine())
	}
}

func (s *Service) checkLength(l *violation.List, field, text string) {
	if len(text) > s.cfg.MaxLineBytes {
		l.Addf(field, "is %d bytes long; at most %d bytes are allowed (--caser-max-line-bytes)", len(text), s.cfg.MaxLineBytes)
	}
}

// gate counts the caser's goroutines (sessions and the announcer) so that
// Shutdown can wait for them, and admits new sessions until it is closed. It counts one more
// while open, so that it reaches zero, and empty closes, only after close; from then on it
// admits no one, without a lock.
type gate struct {
	inside atomic.Int64
	empty  chan struct{}
}

func newGate() *gate {
	g := &gate{empty: make(chan struct{})}
	g.inside.Store(1)
	return g
}

// enter admits a session, unless the gate is closed.
func (g *gate) enter() bool {
	for {
		n := g.inside.Load()
		if n == 0 {
			return false
		}
		if g.inside.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// follow counts a goroutine started by one already inside, so the gate cannot be empty.
func (g *gate) follow() { g.inside.Add(1) }

// leave is called by each goroutine inside as it ends.
func (g *gate) leave() {
	if g.inside.Add(-1) == 0 {
		close(g.empty)
	}
}

// close stops admitting sessions; empty closes when the last goroutine inside leaves.
func (g *gate) close() { g.leave() }
