package caser

import (
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	caserv1 "github.com/concur-dev/concur/api/concur/caser/v1"
	"github.com/concur-dev/concur/internal/recv"
)

// Session is the talk's telnet conversation: see the package comment and the contract.
func (s *Service) Session(stream caserv1.CaserService_SessionServer) error {
	if !s.gate.enter() {
		return status.Error(codes.Unavailable, "the caser is shutting down; open a session on another server")
	}
	defer s.gate.leave()
	s.metrics.sessions.Inc()
	defer s.metrics.sessions.Dec()
	return s.converse(stream)
}

// converse is the session's owner: it alone holds the mode and sends on the stream. It ends
// the stream after a goodbye, when the client closes its side, or with the error of a line
// it cannot take: Recv runs the request's Validate (valid UTF-8) and CheckLimits (the length
// limit) and ends the stream with every violation they found.
func (s *Service) converse(stream caserv1.CaserService_SessionServer) error {
	reqs, ended := recv.Pump(stream.Context(), stream.Recv)
	mode := caserv1.Mode_MODE_UPPER
	if err := stream.Send(welcome(mode)); err != nil {
		return err
	}
	var idle <-chan time.Time
	var timer *time.Timer
	if s.cfg.Idle > 0 {
		timer = time.NewTimer(s.cfg.Idle)
		defer timer.Stop()
		idle = timer.C
	}
	beat := s.firstBeat()
	for {
		var announced <-chan struct{}
		if beat != nil {
			announced = beat.passed
		}
		var reply *caserv1.SessionResponse
		last := false
		select {
		case req := <-reqs:
			if timer != nil {
				timer.Reset(s.cfg.Idle)
			}
			s.metrics.lines.Inc()
			reply, mode, last = respond(req.GetLine(), mode)
		case err := <-ended:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-announced:
			beat = beat.newest()
			reply = announcement(beat.at)
			s.metrics.announcements.Inc()
		case <-idle:
			reply, last = goodbye(caserv1.GoodbyeReason_GOODBYE_REASON_IDLE, fmt.Sprintf("<goodbye: no line for %v, closing the session>", s.cfg.Idle)), true
		case <-s.closing:
			reply, last = goodbye(caserv1.GoodbyeReason_GOODBYE_REASON_SHUTDOWN, "<goodbye: the server is shutting down>"), true
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		}
		if last {
			s.metrics.goodbyes.WithLabelValues(reasonLabel(reply.GetGoodbye().GetReason())).Inc()
		}
		s.jitter.Sleep()
		if err := stream.Send(reply); err != nil {
			return err
		}
		if last {
			return nil
		}
	}
}

// respond answers one line in mode: it returns the reply, the mode from now on, and whether
// the reply is the last.
func respond(line string, mode caserv1.Mode) (reply *caserv1.SessionResponse, next caserv1.Mode, last bool) {
	switch line {
	case "upper":
		return modeChanged(caserv1.Mode_MODE_UPPER), caserv1.Mode_MODE_UPPER, false
	case "title":
		return modeChanged(caserv1.Mode_MODE_TITLE), caserv1.Mode_MODE_TITLE, false
	case "quit":
		return goodbye(caserv1.GoodbyeReason_GOODBYE_REASON_QUIT, "<goodbye: you said quit>"), mode, true
	}
	return &caserv1.SessionResponse{Reply: &caserv1.SessionResponse_Cased{Cased: &caserv1.Cased{
		Line: line, Text: caseIn(mode, line), Mode: mode,
	}}}, mode, false
}

// modeName is how the talk names a mode.
func modeName(mode caserv1.Mode) string {
	if mode == caserv1.Mode_MODE_TITLE {
		return "title"
	}
	return "upper"
}

func welcome(mode caserv1.Mode) *caserv1.SessionResponse {
	return &caserv1.SessionResponse{Reply: &caserv1.SessionResponse_Welcome{Welcome: &caserv1.Welcome{
		Mode: mode, Text: "<welcome: starting in " + modeName(mode) + " case mode>",
	}}}
}

func modeChanged(mode caserv1.Mode) *caserv1.SessionResponse {
	return &caserv1.SessionResponse{Reply: &caserv1.SessionResponse_ModeChanged{ModeChanged: &caserv1.ModeChanged{
		Mode: mode, Text: "<switching to " + modeName(mode) + " case mode>",
	}}}
}

func goodbye(reason caserv1.GoodbyeReason, text string) *caserv1.SessionResponse {
	return &caserv1.SessionResponse{Reply: &caserv1.SessionResponse_Goodbye{Goodbye: &caserv1.Goodbye{
		Reason: reason, Text: text,
	}}}
}
