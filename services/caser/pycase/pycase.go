// Package pycase cases text exactly as Python 3.11's str.upper() and str.title() do, as the
// talk's caser shows its users; never by locale.
//
// Upper maps every character to its full uppercase mapping, SpecialCasing's unconditional
// ones included: "straße" is "STRASSE", "ﬁ" is "FI", "ŉ" is "ʼN". Title walks the text once:
// a character after a cased one is mapped to its full lowercase (a capital sigma to the final
// form ς when Unicode's Final_Sigma context holds), any other to its full titlecase ("ﬁ" is
// "Fi", "ǆ" is "ǅ"). There are no words, only the previous character, so "they're bill's" is
// "They'Re Bill'S", "hello_world" is "Hello_World", "world123abc" is "World123Abc", and a
// combining mark, being uncased, title-cases what follows it ("e\u0301cole" is "E\u0301Cole").
//
// Go's own functions differ:
//   - strings.ToUpper uses the simple one-to-one mappings: "straße" stays "STRAßE", "ﬁsh" is
//     "ﬁSH", "ǰ" and "ΐ" are unchanged, "ᾳ" is "ᾼ" where Python gives "ΑΙ".
//   - strings.ToTitle maps every character to title case: "hello world" is "HELLO WORLD".
//   - strings.Title (deprecated) capitalizes after a separator and leaves the rest alone:
//     "HELLO" stays "HELLO", "hello_world" is "Hello_world", "world123abc" is "World123abc",
//     with simple mappings ("ﬁsh" stays "ﬁsh").
//   - golang.org/x/text/cases.Upper(language.Und) uses the full mappings like Python, but
//     cases.Title breaks words by Unicode's word boundaries and lowers the rest of each word:
//     "They're Bill's", "Hello_world", "World123abc", "X.y@Z.com", "E\u0301cole".
//
// The character data (the mappings, and the Cased and Case_Ignorable properties Title and the
// final sigma rule use) is generated from Python 3.11 itself by mktables.py, so it is Unicode
// 14.0.0 (UnicodeVersion) whatever Go's unicode package knows (15.0.0 in Go 1.26). Characters
// added since are uncased here as they are in Python 3.11: U+1DF25, a lowercase letter since
// Unicode 15, does not lower what follows it ("\U0001DF25a" is title-cased "\U0001DF25A"),
// though unicode.IsLower reports it lowercase.
//
// Python strings hold code points, Go strings bytes: a byte that is not part of valid UTF-8
// is taken as U+FFFD, as ranging over a Go string does, and comes out as U+FFFD.
package pycase

//go:generate python3 mktables.py
//go:generate gofmt -w tables.go

import (
	"cmp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// mapping is one character's full case mappings; "" means the character itself.
type mapping struct {
	r                   rune
	upper, lower, title string
}

// Upper is Python's str.upper().
func Upper(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if 'a' <= r && r <= 'z' {
			b.WriteByte(byte(r) - 'a' + 'A')
			continue
		}
		write(&b, r, func(m *mapping) string { return m.upper })
	}
	return b.String()
}

// Title is Python's str.title().
func Title(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	previousCased := false
	for i, r := range s {
		switch {
		case !previousCased:
			write(&b, r, func(m *mapping) string { return m.title })
		case r == 'Σ':
			b.WriteRune(lowerSigma(s, i))
		default:
			write(&b, r, func(m *mapping) string { return m.lower })
		}
		previousCased = isCased(r)
	}
	return b.String()
}

// write appends the mapping of r that field picks, or r itself when it has none.
func write(b *strings.Builder, r rune, field func(*mapping) string) {
	if r >= utf8.RuneSelf || isCased(r) {
		if i, found := slices.BinarySearchFunc(mappings, r, func(m mapping, r rune) int { return cmp.Compare(m.r, r) }); found {
			if to := field(&mappings[i]); to != "" {
				b.WriteString(to)
				return
			}
		}
	}
	b.WriteRune(r)
}

// lowerSigma lowers the capital sigma at byte i of s as Python does: to the final form ς when
// a cased character comes before it and none after it, case-ignorable characters skipped
// both ways; to σ otherwise.
func lowerSigma(s string, i int) rune {
	final := false
	for before := s[:i]; before != ""; {
		r, n := utf8.DecodeLastRuneInString(before)
		if !unicode.Is(caseIgnorable, r) {
			final = isCased(r)
			break
		}
		before = before[:len(before)-n]
	}
	if !final {
		return 'σ'
	}
	for _, r := range s[i+len("Σ"):] {
		if !unicode.Is(caseIgnorable, r) {
			if isCased(r) {
				return 'σ'
			}
			break
		}
	}
	return 'ς'
}

// isCased is Python's notion of a cased character.
func isCased(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z'
	}
	return unicode.Is(cased, r)
}
