package caser

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A session that arrives once shutdown has begun is refused, before it touches its stream;
// Shutdown may be called again.
func TestSessionAfterShutdownIsRefused(t *testing.T) {
	var c Config
	c.MaxLineBytes = 1
	s, err := New(c, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown with nothing open: %v", err)
	}
	if err := s.Session(nil); status.Code(err) != codes.Unavailable {
		t.Fatalf("Session after Shutdown = %v, want UNAVAILABLE", err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown again: %v", err)
	}
}
