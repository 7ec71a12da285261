package testkit_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/concur-dev/concur/internal/testkit"
)

func TestBufferLines(t *testing.T) {
	for _, tt := range []struct {
		name, written string
		want          []string
	}{
		{"empty", "", nil},
		{"one line", "a\n", []string{"a"}},
		{"an empty line", "\n", []string{""}},
		{"last line unended", "a\nb", []string{"a", "b"}},
		{"empty lines kept", "a\n\nb\n", []string{"a", "", "b"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var b testkit.Buffer
			fmt.Fprint(&b, tt.written)
			if got := b.Lines(); !slices.Equal(got, tt.want) {
				t.Errorf("Lines() of %q = %q, want %q", tt.written, got, tt.want)
			}
			if got := b.String(); got != tt.written {
				t.Errorf("String() = %q, want %q", got, tt.written)
			}
		})
	}
}

// Writers and a reader may share a Buffer (go test -race checks it).
func TestBufferConcurrentWrites(t *testing.T) {
	testkit.NoLeaks(t)
	var b testkit.Buffer
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				fmt.Fprintln(&b, "line")
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if n := len(b.Lines()); n != 400 {
		t.Fatalf("%d lines, want 400", n)
	}
}

func TestQuietLogs(t *testing.T) {
	testkit.Quiet().Error("nobody hears this")
}
