package render

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	caserv1 "github.com/concur-dev/concur/api/concur/caser/v1"
)

// Python 3.11's repr() and ascii() of each text.
var python = []struct{ text, repr, ascii string }{
	{"HELLO", "'HELLO'", "'HELLO'"},
	{"", "''", "''"},
	{"They'Re Bill'S", "\"They'Re Bill'S\"", "\"They'Re Bill'S\""},
	{"say \"hi\"", "'say \"hi\"'", "'say \"hi\"'"},
	{"it's \"quoted\"", "'it\\'s \"quoted\"'", "'it\\'s \"quoted\"'"},
	{"back\\slash", "'back\\\\slash'", "'back\\\\slash'"},
	{"tab\there", "'tab\\there'", "'tab\\there'"},
	{"new\nline", "'new\\nline'", "'new\\nline'"},
	{"cr\rx", "'cr\\rx'", "'cr\\rx'"},
	{"\x00\x1f\x7f", "'\\x00\\x1f\\x7f'", "'\\x00\\x1f\\x7f'"},
	{"\u00c9COLE", "'\u00c9COLE'", "'\\xc9COLE'"},
	{"Stra\u00dfe", "'Stra\u00dfe'", "'Stra\\xdfe'"},
	{"\u00a0nbsp", "'\\xa0nbsp'", "'\\xa0nbsp'"},
	{"\u00ad soft hyphen", "'\\xad soft hyphen'", "'\\xad soft hyphen'"},
	{"\u039f\u0394\u039f\u03a3", "'\u039f\u0394\u039f\u03a3'", "'\\u039f\\u0394\\u039f\\u03a3'"},
	{"J\u030cUMP", "'J\u030cUMP'", "'J\\u030cUMP'"},
	{"\U0001f44b WORLD", "'\U0001f44b WORLD'", "'\\U0001f44b WORLD'"},
	{"\u200d zwj", "'\\u200d zwj'", "'\\u200d zwj'"},
	{"\u2028 line sep", "'\\u2028 line sep'", "'\\u2028 line sep'"},
	{"\ue000 private", "'\\ue000 private'", "'\\ue000 private'"},
	{"\U000e0001 tag", "'\\U000e0001 tag'", "'\\U000e0001 tag'"},
	{"\ufeff bom", "'\\ufeff bom'", "'\\ufeff bom'"},
	{"\u6f22\u5b57", "'\u6f22\u5b57'", "'\\u6f22\\u5b57'"},
}

func TestMatchesPython(t *testing.T) {
	for _, p := range python {
		if got := quote(p.text, false); got != p.repr {
			t.Errorf("quote(%+q) = %s, Python's repr() is %s", p.text, got, p.repr)
		}
		if got := quote(p.text, true); got != p.ascii {
			t.Errorf("quote(%+q, ascii) = %s, Python's ascii() is %s", p.text, got, p.ascii)
		}
	}
}

func TestReplyTheTalksWay(t *testing.T) {
	cased := func(text string, mode caserv1.Mode) *caserv1.SessionResponse {
		return &caserv1.SessionResponse{Reply: &caserv1.SessionResponse_Cased{Cased: &caserv1.Cased{Text: text, Mode: mode}}}
	}
	for _, tt := range []struct {
		r           *caserv1.SessionResponse
		repr, ascii string
	}{
		{&caserv1.SessionResponse{Reply: &caserv1.SessionResponse_Welcome{Welcome: &caserv1.Welcome{Text: "<welcome: starting in upper case mode>"}}},
			"<welcome: starting in upper case mode>", "<welcome: starting in upper case mode>"},
		{cased("HELLO", caserv1.Mode_MODE_UPPER), "Upper-cased: 'HELLO'", "Upper-cased: 'HELLO'"},
		{cased("Hello World", caserv1.Mode_MODE_TITLE), "Title-cased: 'Hello World'", "Title-cased: 'Hello World'"},
		{cased("ÉCOLE", caserv1.Mode_MODE_UPPER), "Upper-cased: 'ÉCOLE'", `Upper-cased: '\xc9COLE'`},
		{cased("They'Re", 9), `Cased: "They'Re"`, `Cased: "They'Re"`},
		{&caserv1.SessionResponse{Reply: &caserv1.SessionResponse_ModeChanged{ModeChanged: &caserv1.ModeChanged{Text: "<switching to title case mode>"}}},
			"<switching to title case mode>", "<switching to title case mode>"},
		{&caserv1.SessionResponse{Reply: &caserv1.SessionResponse_Announcement{Announcement: &caserv1.Announcement{Time: timestamppb.Now(), Text: "The event loop is still running at: Wed Nov 25 20:13:31 2026"}}},
			"The event loop is still running at: Wed Nov 25 20:13:31 2026", "The event loop is still running at: Wed Nov 25 20:13:31 2026"},
		{&caserv1.SessionResponse{Reply: &caserv1.SessionResponse_Goodbye{Goodbye: &caserv1.Goodbye{Text: "<goodbye: you said quit>"}}},
			"<goodbye: you said quit>", "<goodbye: you said quit>"},
		{&caserv1.SessionResponse{}, "<a message this client does not know: update it>", "<a message this client does not know: update it>"},
	} {
		if got := Reply(tt.r, false); got != tt.repr {
			t.Errorf("Reply(%v) = %q, want %q", tt.r, got, tt.repr)
		}
		if got := Reply(tt.r, true); got != tt.ascii {
			t.Errorf("Reply(%v, ascii) = %q, want %q", tt.r, got, tt.ascii)
		}
	}
}

// unquote reads a Python str literal back: its escapes are \\, \', \", \t, \n, \r, and \x,
// \u and \U followed by the code point in 2, 4 or 8 hex digits.
func unquote(t *testing.T, lit string) string {
	t.Helper()
	var b strings.Builder
	q, body := lit[0], lit[1:len(lit)-1]
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case c == q:
			t.Fatalf("%s: the quote %c is not escaped", lit, q)
		case c != '\\':
			b.WriteByte(c)
			continue
		}
		i++
		switch c := body[i]; c {
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case '\\', '\'', '"':
			b.WriteByte(c)
		case 'x', 'u', 'U':
			digits := map[byte]int{'x': 2, 'u': 4, 'U': 8}[c]
			n, err := strconv.ParseUint(body[i+1:i+1+digits], 16, 32)
			if err != nil {
				t.Fatalf("%s: bad escape: %v", lit, err)
			}
			b.WriteRune(rune(n))
			i += digits
		default:
			t.Fatalf("%s: unknown escape \\%c", lit, c)
		}
	}
	return b.String()
}

// FuzzQuote checks that quote's repr() and ascii() are literals that read back as the text,
// on one line with nothing a terminal would act on, and that ascii() is all ASCII.
func FuzzQuote(f *testing.F) {
	for _, p := range python {
		f.Add(p.text)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			s = strings.ToValidUTF8(s, "\uFFFD")
		}
		for _, lit := range []string{quote(s, false), quote(s, true)} {
			if got := unquote(t, lit); got != s {
				t.Fatalf("%s reads back as %+q, not %+q", lit, got, s)
			}
			if strings.ContainsFunc(lit, func(r rune) bool { return r < ' ' || r == 0x7f || r == 0x2028 || r == 0x2029 }) {
				t.Fatalf("%s holds a control character or line separator", lit)
			}
		}
		if a := quote(s, true); strings.ContainsFunc(a, func(r rune) bool { return r >= utf8.RuneSelf }) {
			t.Fatalf("quote(%+q, ascii) = %s is not ASCII", s, a)
		}
	})
}
