package caser

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	caserv1 "github.com/concur-dev/concur/api/concur/caser/v1"
)

// beat is one announcement. When the next is made, next is set and passed closed, so any
// number of sessions learn of it from one close, and read next safely after it.
type beat struct {
	at     time.Time
	passed chan struct{}
	next   *beat
}

func newBeat(at time.Time) *beat { return &beat{at: at, passed: make(chan struct{})} }

// newest follows the beats that have passed to the one that has not.
func (b *beat) newest() *beat {
	for {
		select {
		case <-b.passed:
			b = b.next
		default:
			return b
		}
	}
}

// firstBeat returns the beat a new session waits on, nil when announcements are off; the
// first session starts the announcer.
func (s *Service) firstBeat() *beat {
	if s.cfg.Announce == 0 {
		return nil
	}
	s.announcing.Do(func() {
		s.gate.follow()
		go s.announce()
	})
	return s.latest.Load()
}

// announce makes a beat every --caser-announce until shutdown. It is the only writer of the
// beats and never waits for a session.
func (s *Service) announce() {
	defer s.gate.leave()
	tick := time.NewTicker(s.cfg.Announce)
	defer tick.Stop()
	for {
		select {
		case now := <-tick.C:
			last, next := s.latest.Load(), newBeat(now)
			last.next = next
			s.latest.Store(next)
			close(last.passed)
		case <-s.closing:
			return
		}
	}
}

// announcement is the talk's announcement, its time written as Python's time.ctime() does.
func announcement(at time.Time) *caserv1.SessionResponse {
	return &caserv1.SessionResponse{Reply: &caserv1.SessionResponse_Announcement{Announcement: &caserv1.Announcement{
		Time: timestamppb.New(at),
		Text: "The event loop is still running at: " + at.Format(time.ANSIC),
	}}}
}
