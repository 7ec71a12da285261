package pycase

import (
	"cmp"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// pythonData is testdata/python.json: Python 3.11's str.upper() and str.title() of chosen
// cases and of random strings, written by mktables.py.
type pythonData struct {
	Python, Unicode string
	Cases           []struct{ About, Text, Upper, Title string }
	Random          []struct{ Text, Upper, Title string }
}

func loadPython(t testing.TB) pythonData {
	t.Helper()
	b, err := os.ReadFile("testdata/python.json")
	if err != nil {
		t.Fatal(err)
	}
	var d pythonData
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("testdata/python.json: %v", err)
	}
	return d
}

func TestMatchesPython(t *testing.T) {
	d := loadPython(t)
	if d.Unicode != UnicodeVersion {
		t.Fatalf("the test data is Unicode %s, the tables %s: run go generate", d.Unicode, UnicodeVersion)
	}
	if len(d.Cases) < 60 || len(d.Random) < 100 {
		t.Fatalf("%d cases and %d random strings: the test data is too thin", len(d.Cases), len(d.Random))
	}
	for _, c := range d.Cases {
		t.Run(c.About, func(t *testing.T) {
			if got := Upper(c.Text); got != c.Upper {
				t.Errorf("%s: Upper(%+q) = %+q, Python %s gives %+q", c.About, c.Text, got, d.Python, c.Upper)
			}
			if got := Title(c.Text); got != c.Title {
				t.Errorf("%s: Title(%+q) = %+q, Python %s gives %+q", c.About, c.Text, got, d.Python, c.Title)
			}
		})
	}
	for _, c := range d.Random {
		if got := Upper(c.Text); got != c.Upper {
			t.Errorf("Upper(%+q) = %+q, Python %s gives %+q", c.Text, got, d.Python, c.Upper)
		}
		if got := Title(c.Text); got != c.Title {
			t.Errorf("Title(%+q) = %+q, Python %s gives %+q", c.Text, got, d.Python, c.Title)
		}
	}
}

// The tables are what the code assumes: sorted for the binary search, mappings only for
// cased characters (so an uncased character is left alone in every mode), and expansions of
// at most three characters and three times the bytes.
func TestTables(t *testing.T) {
	if !slices.IsSortedFunc(mappings, func(a, b mapping) int { return cmp.Compare(a.r, b.r) }) {
		t.Fatal("mappings are not sorted by rune")
	}
	for _, m := range mappings {
		if !isCased(m.r) {
			t.Errorf("%U has mappings but is not cased", m.r)
		}
		for _, to := range []string{m.upper, m.lower, m.title} {
			if n := utf8.RuneCountInString(to); n > 3 || len(to) > 3*utf8.RuneLen(m.r) {
				t.Errorf("%U maps to %+q: more than 3 characters or 3 times the bytes", m.r, to)
			}
		}
	}
}

func TestUpperIsIdempotentForEveryCharacter(t *testing.T) {
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		if up := Upper(string(r)); Upper(up) != up {
			t.Errorf("Upper(Upper(%+q)) = %+q, not %+q", r, Upper(up), up)
		}
	}
}

// titleStable reports whether Title keeps r's casedness: an uncased r is left alone; a cased
// one is mapped to cased characters that Title would map to themselves again. Title of a text
// made only of such characters is stable. The 29 characters whose titlecase ends in a
// combining mark ("ǰ" is "J̌") are not: the mark is uncased, so Title again title-cases
// what follows it ("ǰump", "J̌ump", "J̌Ump"), in Python too.
func titleStable(r rune) bool {
	if !isCased(r) {
		return true
	}
	title, lower := []rune(Title(string(r))), []rune(strings.ToLower(string(r)))
	if r != 'Σ' {
		lower = []rune(Title("A" + string(r)))[1:]
	}
	for _, c := range slices.Concat(title, lower) {
		if !isCased(c) {
			return false
		}
	}
	for i, c := range title {
		if i == 0 && Title(string(c)) != string(c) || i > 0 && Title("A" + string(c))[1:] != string(c) {
			return false
		}
	}
	for _, c := range lower {
		if Title("A" + string(c))[1:] != string(c) {
			return false
		}
	}
	return true
}

func TestTitleStableCharacters(t *testing.T) {
	var unstable []rune
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if utf8.ValidRune(r) && !titleStable(r) {
			unstable = append(unstable, r)
		}
	}
	for _, r := range "ǰİŉΐῷ" {
		if !slices.Contains(unstable, r) {
			t.Errorf("%+q is taken as title-stable", r)
		}
	}
	if len(unstable) != 29 {
		t.Errorf("%d title-unstable characters, want Python 3.11's 29: %+q", len(unstable), string(unstable))
	}
	if got := Title(Title("ǰump")); got != "J̌Ump" {
		t.Errorf("Title(Title(ǰump)) = %q, Python gives J̌Ump", got)
	}
}

// asciiTitle is str.title() for ASCII, the obvious way: a letter after a letter is lowered,
// any other letter raised.
func asciiTitle(s string) string {
	b := []byte(s)
	previous := false
	for i, c := range b {
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if letter && previous {
			b[i] = byte(unicode.ToLower(rune(c)))
		} else if letter {
			b[i] = byte(unicode.ToUpper(rune(c)))
		}
		previous = letter
	}
	return string(b)
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// FuzzCasing checks what holds for every text, without Python at hand: valid UTF-8 out, one
// to three characters out for each in, invalid bytes taken as U+FFFD, Upper idempotent and
// context-free on valid UTF-8, Title stable on title-stable characters, and both equal to the
// obvious ASCII algorithms on ASCII.
func FuzzCasing(f *testing.F) {
	for _, c := range loadPython(f).Cases {
		f.Add(c.Text, "ΑΣ")
	}
	f.Add("hello\xffworld", "\xe2\x82")
	f.Fuzz(func(t *testing.T, s, more string) {
		n := utf8.RuneCountInString(s)
		for name, out := range map[string]string{"Upper": Upper(s), "Title": Title(s)} {
			if !utf8.ValidString(out) {
				t.Fatalf("%s(%+q) = %+q is not valid UTF-8", name, s, out)
			}
			if m := utf8.RuneCountInString(out); m < n || m > 3*n {
				t.Fatalf("%s(%+q) = %+q: %d characters for %d", name, s, out, m, n)
			}
		}
		if valid := string([]rune(s)); Upper(s) != Upper(valid) || Title(s) != Title(valid) {
			t.Fatalf("%+q is not cased as %+q, its invalid bytes as U+FFFD", s, valid)
		}
		if up := Upper(s); Upper(up) != up {
			t.Fatalf("Upper(%+q) = %+q, but Upper of that is %+q", s, up, Upper(up))
		}
		if utf8.ValidString(s) && utf8.ValidString(more) && Upper(s+more) != Upper(s)+Upper(more) {
			t.Fatalf("Upper(%+q) != Upper(%+q) + Upper(%+q)", s+more, s, more)
		}
		if title := Title(s); !strings.ContainsFunc(s, func(r rune) bool { return !titleStable(r) }) && Title(title) != title {
			t.Fatalf("Title(%+q) = %+q, but Title of that is %+q", s, title, Title(title))
		}
		if isASCII(s) && (Upper(s) != strings.ToUpper(s) || Title(s) != asciiTitle(s)) {
			t.Fatalf("ASCII %q: Upper %q, Title %q; want %q, %q", s, Upper(s), Title(s), strings.ToUpper(s), asciiTitle(s))
		}
	})
}
