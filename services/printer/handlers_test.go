package printer

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/concur-dev/concur/api/violation"
)

// FuzzCheckJob checks the flag limits against their statement: the job's lines field is
// named when it holds more than max-lines lines, and each line longer than max-line-bytes is
// named by its index, in order.
func FuzzCheckJob(f *testing.F) {
	f.Add("a\nbb\nccc", uint8(2), uint8(2), true)
	f.Add("", uint8(1), uint8(1), false)
	f.Add("☃☃\n\n", uint8(5), uint8(5), false)
	f.Fuzz(func(t *testing.T, text string, maxLines, maxBytes uint8, streamed bool) {
		if maxLines == 0 || maxBytes == 0 {
			t.Skip()
		}
		lines := strings.Split(text, "\n")
		prefix := ""
		if streamed {
			prefix = "jobs[3]."
		}
		p := &Service{limits: Config{MaxLines: int(maxLines), MaxLineBytes: int(maxBytes)}}
		var l violation.List
		p.checkJob(&l, prefix, lines)
		var want []string
		if len(lines) > int(maxLines) {
			want = append(want, prefix+"lines")
		}
		for i, line := range lines {
			if len(line) > int(maxBytes) {
				want = append(want, fmt.Sprintf("%slines[%d]", prefix, i))
			}
		}
		if got := violation.Fields(l.Err()); !slices.Equal(got, want) {
			t.Fatalf("checkJob(%q, %d lines, %d bytes) names %v, want %v", lines, maxLines, maxBytes, got, want)
		}
	})
}

func TestPatience(t *testing.T) {
	for _, tt := range []struct{ deadline, want time.Duration }{
		{10 * time.Millisecond, 8 * time.Millisecond},
		{1 * time.Second, 800 * time.Millisecond},
		{10 * time.Second, 9750 * time.Millisecond},
	} {
		t.Run(tt.deadline.String(), func(t *testing.T) {
			if got := patience(tt.deadline); got != tt.want {
				t.Errorf("patience(%v) = %v, want %v", tt.deadline, got, tt.want)
			}
		})
	}
}
