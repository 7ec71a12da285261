// Package report writes a sitesize result as a line of text, the way the sitesize client
// and the concur command line both print it.
package report

import (
	"fmt"
	"strings"
	"time"

	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
)

// Line is a result as "url size status time", then the error when the fetch failed: a
// truncated size ends with +, a missing status is -.
func Line(r *sitesizev1.MeasureResponse) string {
	size := fmt.Sprint(r.GetSize())
	if r.GetTruncated() {
		size += "+"
	}
	status := "-"
	if r.Status != nil {
		status = fmt.Sprint(r.GetStatus())
	}
	line := fmt.Sprintf("%s %s %s %v", r.GetUrl(), size, status, roundDuration(r.GetElapsed().AsDuration()))
	if e := r.GetError(); e != nil {
		line += fmt.Sprintf(" %s: %s", strings.TrimPrefix(e.GetCode().String(), "FETCH_ERROR_CODE_"), e.GetMessage())
	}
	return line
}

// roundDuration keeps three significant digits or so: 1.23s, 45ms, 312µs.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Microsecond)
}
