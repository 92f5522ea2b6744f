package text

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"one more byte", 10, "one mor..."},
		// "é" is two bytes: a cut never splits it.
		{"abcdeé-rest", 9, "abcde..."},
		{"日本語のテキスト", 10, "日本..."},
	} {
		got := Truncate(tc.in, tc.max)
		if got != tc.want || len(got) > tc.max || !utf8.ValidString(got) {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
	if n := len(EventNote(strings.Repeat("x", 5000))); n != MaxEventNote {
		t.Errorf("EventNote cut to %d bytes, want %d", n, MaxEventNote)
	}
}
