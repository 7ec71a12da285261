package counterv1

import (
	"fmt"

	"github.com/concur-dev/concur/api/violation"
)

const (
	// DefaultName is the talk's counter, used when a request leaves the name empty.
	DefaultName = "default"
	// MaxNameBytes is the longest counter name.
	MaxNameBytes = 200
	// MaxRequestIDBytes is the longest request_id.
	MaxRequestIDBytes = 128
	// MaxIncrementsPerMessage is the largest batch in one IncrementStreamRequest.
	MaxIncrementsPerMessage = 10000
)

// NameOrDefault returns name, or DefaultName when name is empty.
func NameOrDefault(name string) string {
	if name == "" {
		return DefaultName
	}
	return name
}

// Validate checks the name, a delta other than 0, and the request_id.
func (r *IncrementRequest) Validate() error {
	var l violation.List
	checkIncrement(&l, "", r.GetName(), r.Delta)
	l.Printable("request_id", r.GetRequestId(), MaxRequestIDBytes)
	return l.Err()
}

// Validate checks that the batch holds 1 to MaxIncrementsPerMessage well-formed increments.
func (r *IncrementStreamRequest) Validate() error {
	var l violation.List
	switch n := len(r.GetIncrements()); {
	case n == 0:
		l.Add("increments", "must hold at least one increment")
	case n > MaxIncrementsPerMessage:
		l.Addf("increments", "holds %d increments; at most %d are allowed per message", n, MaxIncrementsPerMessage)
	}
	for i, inc := range r.GetIncrements() {
		var delta *int64
		if inc != nil { // a Go caller may leave a nil in the slice; it reads as {}
			delta = inc.Delta
		}
		// Name the field only for an increment at fault: a message holds up to 10,000, and
		// formatting each field name would cost more than the rest of the check.
		var probe violation.List
		if checkIncrement(&probe, "", inc.GetName(), delta); probe.Err() != nil {
			checkIncrement(&l, fmt.Sprintf("increments[%d].", i), inc.GetName(), delta)
		}
	}
	return l.Err()
}

// Validate checks the counter name.
func (r *GetRequest) Validate() error { return validateName(r.GetName()) }

// Validate checks the counter name.
func (r *WatchRequest) Validate() error { return validateName(r.GetName()) }

// Validate accepts every JoinRequest: it has no fields.
func (r *JoinRequest) Validate() error { return nil }

// Validate accepts every ShardsRequest: it has no fields.
func (r *ShardsRequest) Validate() error { return nil }

func validateName(name string) error {
	var l violation.List
	l.Printable("name", name, MaxNameBytes)
	return l.Err()
}

func checkIncrement(l *violation.List, prefix, name string, delta *int64) {
	l.Printable(prefix+"name", name, MaxNameBytes)
	if delta != nil && *delta == 0 {
		l.Add(prefix+"delta", "must not be 0, which would change nothing; leave it out to add 1, or call Get to read")
	}
}
