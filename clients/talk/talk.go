package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	caserv1 "github.com/concur-dev/concur/api/concur/caser/v1"
	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/internal/demosites"
	"github.com/concur-dev/concur/internal/jitter"
)

// talk is one run of the talk: its settings and the services it calls. One goroutine at a
// time writes to out: the one that runs the sections, or the broken way's terminal while it
// waits.
type talk struct {
	out          io.Writer
	jitter       jitter.Jitter
	jitterMax    time.Duration
	workers      int
	sites        []string          // --sites, or nil for the demo sites
	demo         *demosites.Server // the demo sites, when they are measured
	announceWait time.Duration

	printer  printerv1.PrinterServiceClient
	counter  counterv1.CounterServiceClient
	sitesize sitesizev1.SiteSizeServiceClient
	caser    caserv1.CaserServiceClient
}

// heading starts a part of the talk.
func (t *talk) heading(format string, args ...any) {
	title := fmt.Sprintf(format, args...)
	fmt.Fprintf(t.out, "\n%s\n%s\n", title, strings.Repeat("=", min(len(title), 78)))
}
