// Package testkit holds what concur's tests share beside internal/e2e: the goroutine leak
// check, a logger that keeps quiet, and a buffer that goroutines may write while a test
// reads it.
package testkit

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// NoLeaks fails t if a goroutine started after this call outlives the test. Call it first:
// cleanups run last-in first-out, so the check runs after every other cleanup has stopped
// what it started.
func NoLeaks(t testing.TB) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// Quiet is a logger that discards everything.
func Quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// Buffer is a bytes.Buffer safe for concurrent use: a sink for output that goroutines write
// while the test reads it. The zero Buffer is empty and ready.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Lines is Lines of what was written so far.
func (b *Buffer) Lines() []string { return Lines(b.String()) }

// Lines splits s into its newline-ended lines, without their newlines; a last line without
// its newline is kept, so that a test sees it.
func Lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}
