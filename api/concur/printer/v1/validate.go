package printerv1

import (
	"fmt"

	"github.com/concur-dev/concur/api/violation"
)

// MaxSourceBytes is the longest source name a job may carry.
const MaxSourceBytes = 200

// Validate checks the job's form: at least one line, each free of control characters but tab
// and valid UTF-8, and a well-formed source. The server also applies its limits on lines per
// job and bytes per line.
func (r *PrintRequest) Validate() error {
	var l violation.List
	checkJob(&l, "", r.GetLines(), r.GetSource(), r.GetSourceSequence())
	return l.Err()
}

// Validate checks that the message carries at least one job and that each is well formed.
func (r *PrintStreamRequest) Validate() error {
	var l violation.List
	if len(r.GetJobs()) == 0 {
		l.Add("jobs", "must hold at least one job")
	}
	for i, j := range r.GetJobs() {
		checkJob(&l, fmt.Sprintf("jobs[%d].", i), j.GetLines(), j.GetSource(), j.GetSourceSequence())
	}
	return l.Err()
}

// Validate accepts every JoinRequest: it has no fields.
func (r *JoinRequest) Validate() error { return nil }

// Validate accepts every TailRequest: any sequence number is a place to start.
func (r *TailRequest) Validate() error { return nil }

func checkJob(l *violation.List, prefix string, lines []string, source string, sourceSeq uint64) {
	if len(lines) == 0 {
		l.Add(prefix+"lines", "must hold at least one line")
	}
	for i, line := range lines {
		l.Line(fmt.Sprintf("%slines[%d]", prefix, i), line)
	}
	l.Printable(prefix+"source", source, MaxSourceBytes)
	switch {
	case source != "" && sourceSeq == 0:
		l.Add(prefix+"source_sequence", "must be 1 or more when source is set")
	case source == "" && sourceSeq != 0:
		l.Add(prefix+"source", "must be set when source_sequence is")
	}
}
