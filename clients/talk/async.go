package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	caserv1 "github.com/concur-dev/concur/api/concur/caser/v1"
	"github.com/concur-dev/concur/clients/caser/render"
)

const column = 44 // width of user A's column

// step is one line a user types and what the caser must answer.
type step struct {
	user int // 0 is user A, 1 user B
	line string
	text string       // the cased text, or "" for a switch of mode
	mode caserv1.Mode // the mode the answer must be in
}

// script is the talk's two-user test: A switches to title case, B stays in upper case, and
// each is answered in its own mode.
var script = []step{
	{0, "hello", "HELLO", caserv1.Mode_MODE_UPPER},
	{1, "hello", "HELLO", caserv1.Mode_MODE_UPPER},
	{0, "title", "", caserv1.Mode_MODE_TITLE},
	{0, "hello world", "Hello World", caserv1.Mode_MODE_TITLE},
	{1, "hello world", "HELLO WORLD", caserv1.Mode_MODE_UPPER},
	{0, "thinking about concurrency", "Thinking About Concurrency", caserv1.Mode_MODE_TITLE},
	{1, "thinking about concurrency", "THINKING ABOUT CONCURRENCY", caserv1.Mode_MODE_UPPER},
}

// session is one user's caser session; a goroutine of its own receives the server's
// messages and hands them over in order.
type session struct {
	stream  caserv1.CaserService_SessionClient
	replies chan reply
}

type reply struct {
	msg *caserv1.SessionResponse
	err error
}

// async is the talk's async part: two caser sessions interleaved, each keeping its own mode,
// and the event loop's announcement. The check: every answer is the expected text in the
// session's own mode, and both sessions end with the goodbye for quit.
func (t *talk) async(ctx context.Context) error {
	t.heading("Async: two users of the caser side by side, each session with its own mode")
	ctx, cancel := context.WithCancel(ctx)
	var readers sync.WaitGroup
	defer readers.Wait()
	defer cancel()
	var users [2]*session
	for i := range users {
		stream, err := t.caser.Session(ctx)
		if err != nil {
			return fmt.Errorf("caser Session: %w", err)
		}
		s := &session{stream: stream, replies: make(chan reply)}
		readers.Go(func() {
			for {
				msg, err := stream.Recv()
				select {
				case s.replies <- reply{msg, err}:
				case <-ctx.Done():
					return
				}
				if err != nil {
					return
				}
			}
		})
		users[i] = s
	}
	fmt.Fprintf(t.out, "%-*s%s\n", column, "user A", "user B")
	announced := false
	// next returns a user's next message that is not an announcement, showing each as it
	// comes; announcements are shown too.
	next := func(user int) (*caserv1.SessionResponse, error) {
		for {
			m, err := t.receive(ctx, users[user], user)
			if err != nil || m.GetAnnouncement() == nil {
				return m, err
			}
			announced = true
		}
	}

	for user := range users {
		m, err := next(user)
		if err != nil {
			return err
		}
		if m.GetWelcome().GetMode() != caserv1.Mode_MODE_UPPER {
			return fmt.Errorf("user %c's session opened with %v, want a welcome in upper case mode", 'A'+user, m)
		}
	}
	for _, s := range script {
		t.say(s.user, "> "+s.line)
		if err := users[s.user].stream.Send(&caserv1.SessionRequest{Line: s.line}); err != nil {
			return fmt.Errorf("user %c sends %q: %w", 'A'+s.user, s.line, err)
		}
		m, err := next(s.user)
		if err != nil {
			return err
		}
		switch {
		case s.text == "" && m.GetModeChanged().GetMode() != s.mode:
			return fmt.Errorf("user %c said %q and heard %v; want a switch to %v", 'A'+s.user, s.line, m, s.mode)
		case s.text != "" && (m.GetCased().GetText() != s.text || m.GetCased().GetMode() != s.mode):
			return fmt.Errorf("user %c said %q and heard %v; want %q in %v: a session did not keep its own mode", 'A'+s.user, s.line, m, s.text, s.mode)
		}
	}

	if !announced {
		fmt.Fprintf(t.out, "(waiting up to %v for the event loop's announcement)\n", t.announceWait)
		if err := t.awaitAnnouncement(ctx, users[0], 0); err != nil {
			return err
		}
	}
	for user, s := range users {
		t.say(user, "> quit")
		if err := s.stream.Send(&caserv1.SessionRequest{Line: "quit"}); err != nil {
			return fmt.Errorf("user %c sends quit: %w", 'A'+user, err)
		}
		m, err := next(user)
		if err != nil {
			return err
		}
		if m.GetGoodbye().GetReason() != caserv1.GoodbyeReason_GOODBYE_REASON_QUIT {
			return fmt.Errorf("user %c said quit and heard %v; want the goodbye for quit", 'A'+user, m)
		}
		s.stream.CloseSend()
	}
	fmt.Fprintln(t.out, "\nCheck passed: user A switched to title case, user B stayed in upper case, and each was answered in its own mode.")
	return nil
}

// awaitAnnouncement waits up to --announce-wait for the user's next message, which must be
// the announcement. None coming is not a failure: a deployed caser may announce rarely, or
// never (--caser-announce=0); the talk says so and goes on.
func (t *talk) awaitAnnouncement(ctx context.Context, s *session, user int) error {
	wait, cancel := context.WithTimeout(ctx, t.announceWait)
	defer cancel()
	m, err := t.receive(wait, s, user)
	switch {
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		fmt.Fprintf(t.out, "(no announcement within %v: the caser announces every --caser-announce, 15s by default, or never with 0)\n", t.announceWait)
	case err != nil:
		return err
	case m.GetAnnouncement() == nil:
		return errors.New("the caser sent a message nobody asked for")
	}
	return nil
}

// receive returns the user's next message, shown in the user's column.
func (t *talk) receive(ctx context.Context, s *session, user int) (*caserv1.SessionResponse, error) {
	select {
	case r := <-s.replies:
		if r.err != nil {
			return nil, fmt.Errorf("user %c's session: %w", 'A'+user, r.err)
		}
		t.say(user, render.Reply(r.msg, false))
		return r.msg, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// say shows a line in the user's column.
func (t *talk) say(user int, line string) {
	fmt.Fprintf(t.out, "%s%s\n", strings.Repeat(" ", user*column), line)
}
