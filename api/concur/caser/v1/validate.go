package caserv1

import "github.com/concur-dev/concur/api/violation"

// Validate checks that the line is valid UTF-8. The server also limits its length.
func (r *SessionRequest) Validate() error {
	var l violation.List
	l.UTF8("line", r.GetLine())
	return l.Err()
}

// Validate checks that the text is valid UTF-8 and the mode is one this contract knows.
func (r *CaseRequest) Validate() error {
	var l violation.List
	l.UTF8("text", r.GetText())
	if _, known := Mode_name[int32(r.GetMode())]; !known {
		l.Addf("mode", "%d is not a mode; use MODE_UPPER or MODE_TITLE", r.GetMode())
	}
	return l.Err()
}
