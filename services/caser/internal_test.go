package caser

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/concur-dev/concur/internal/jitter"
)

// A session that arrives once shutdown has begun is refused, before it touches its stream.
func TestSessionAfterShutdownIsRefused(t *testing.T) {
	var c Config
	c.MaxLineBytes = 1
	s, err := New(c, jitter.New(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown with nothing open: %v", err)
	}
	if err := s.Session(nil); status.Code(err) != codes.Unavailable {
		t.Fatalf("Session after Shutdown = %v, want UNAVAILABLE", err)
	}
}
