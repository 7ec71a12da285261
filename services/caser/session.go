package caser

import (
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	caserv1 "github.com/concur-dev/concur/api/concur/caser/v1"
)

// Session is the talk's telnet conversation: see the package comment and the contract.
func (s *Service) Session(stream caserv1.CaserService_SessionServer) error {
	if !s.gate.enter() {
		return status.Error(codes.Unavailable, "the caser is shutting down; open a session on another server")
	}
	defer s.gate.leave()
	lines := make(chan received)
	done := make(chan struct{})
	defer close(done)
	s.gate.follow()
	go s.read(stream, lines, done)
	return s.converse(stream, lines)
}

// received is what the reader got from one Recv: a line, or the error that ended the stream.
type received struct {
	line string
	err  error
}

// read receives the client's lines and hands them to the session in order, until the stream
// ends or the session does. Recv runs the request's Validate (valid UTF-8); read adds the
// length limit.
func (s *Service) read(stream caserv1.CaserService_SessionServer, lines chan<- received, done <-chan struct{}) {
	defer s.gate.leave()
	for {
		req, err := stream.Recv()
		if err == nil {
			err = s.checkLength("line", req.GetLine())
		}
		s.jitter.Sleep()
		select {
		case lines <- received{req.GetLine(), err}:
		case <-done:
			return
		}
		if err != nil {
			return
		}
	}
}

// converse is the session's owner: it alone holds the mode and sends on the stream. It ends
// the stream after a goodbye, when the client closes its side, or with the error of a line
// it cannot take.
func (s *Service) converse(stream caserv1.CaserService_SessionServer, lines <-chan received) error {
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
		case in := <-lines:
			if errors.Is(in.err, io.EOF) {
				return nil
			}
			if in.err != nil {
				return in.err
			}
			if timer != nil {
				timer.Reset(s.cfg.Idle)
			}
			reply, mode, last = respond(in.line, mode)
		case <-announced:
			beat = beat.newest()
			reply = announcement(beat.at)
		case <-idle:
			reply, last = goodbye(caserv1.GoodbyeReason_GOODBYE_REASON_IDLE, fmt.Sprintf("<goodbye: no line for %v, closing the session>", s.cfg.Idle)), true
		case <-s.closing:
			reply, last = goodbye(caserv1.GoodbyeReason_GOODBYE_REASON_SHUTDOWN, "<goodbye: the server is shutting down>"), true
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
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
