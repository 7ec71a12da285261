// Package render prints a caser session's messages the way the talk's telnet session shows
// them: the server's words for the welcome, switches of mode, announcements and goodbye, and
// a cased line as the talk's nbcaser writes it, Upper-cased: 'HELLO' or Title-cased: 'Hello
// World'.
//
// The talk writes the cased line with b'%a', Python's ascii(), only because bytes formatting
// has no repr for str; ascii() escapes every non-ASCII character ('\xc9COLE'). Reply quotes
// with Python's repr() by default, which is ascii() except that printable non-ASCII
// characters stay as they are ('ÉCOLE'), for the UTF-8 terminals of today; its ascii flag
// gives the talk's bytes exactly. Both choose and escape quotes as Python does: single
// quotes unless the text holds a single quote and no double one ("They'Re Bill'S"), and
// control characters, separators and other unprintables escaped (\n, \x00, \u200d). Python
// 3.11 decides what is printable by Unicode 14.0.0, this package by Go's unicode package
// (15.0.0 in Go 1.26): a character assigned since Unicode 14 prints as itself here where
// Python would escape it.
package render

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	caserv1 "github.com/concur-dev/concur/api/concur/caser/v1"
)

// Reply renders one message of a session as a line, without its newline; ascii picks
// Python's ascii() over repr() for cased lines.
func Reply(r *caserv1.SessionResponse, ascii bool) string {
	switch reply := r.GetReply().(type) {
	case *caserv1.SessionResponse_Welcome:
		return reply.Welcome.GetText()
	case *caserv1.SessionResponse_Cased:
		return casedPrefix(reply.Cased.GetMode()) + quote(reply.Cased.GetText(), ascii)
	case *caserv1.SessionResponse_ModeChanged:
		return reply.ModeChanged.GetText()
	case *caserv1.SessionResponse_Announcement:
		return reply.Announcement.GetText()
	case *caserv1.SessionResponse_Goodbye:
		return reply.Goodbye.GetText()
	}
	return "<a message this client does not know: update it>"
}

func casedPrefix(mode caserv1.Mode) string {
	switch mode {
	case caserv1.Mode_MODE_UPPER:
		return "Upper-cased: "
	case caserv1.Mode_MODE_TITLE:
		return "Title-cased: "
	}
	return "Cased: "
}

// quote is Python's repr() of a str (CPython's unicode_repr), and with ascii Python's ascii(),
// its backslashreplace of what is not ASCII.
// A byte that is not valid UTF-8 is taken as U+FFFD, which Go strings can hold and Python
// str cannot.
func quote(s string, ascii bool) string {
	q := byte('\'')
	if strings.Contains(s, "'") && !strings.Contains(s, `"`) {
		q = '"'
	}
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == rune(q) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < ' ' || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < utf8.RuneSelf || !ascii && unicode.IsPrint(r):
			b.WriteRune(r)
		case r <= 0xff:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	b.WriteByte(q)
	return b.String()
}
