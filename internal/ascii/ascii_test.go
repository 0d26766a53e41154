package ascii

import (
	"strings"
	"testing"
)

// printableRun is PrintablePrefix byte by byte.
func printableRun(s string) int {
	n := 0
	for n < len(s) && s[n] >= 0x20 && s[n] < 0x80 {
		n++
	}
	return n
}

// Every byte value at every offset of a printable string: PrintablePrefix
// stops at the word that holds the first byte outside 0x20-0x7F, and only
// there.
func TestPrintablePrefix(t *testing.T) {
	base := []byte(strings.Repeat("abcdefgh", 3))
	for off := range base {
		for c := range 256 {
			s := append([]byte(nil), base...)
			s[off] = byte(c)
			run := printableRun(string(s))
			if got, want := PrintablePrefix(string(s)), run/8*8; got != want {
				t.Fatalf("byte %#x at %d: PrintablePrefix = %d, want %d", c, off, got, want)
			}
		}
	}
	for n := range 20 {
		s := strings.Repeat("x", n)
		if got := PrintablePrefix(s); got != n/8*8 {
			t.Errorf("%d printable bytes: PrintablePrefix = %d, want %d", n, got, n/8*8)
		}
	}
}

func FuzzPrintablePrefix(f *testing.F) {
	f.Add("plain ascii text that runs for a few words")
	f.Add("tab\there, and \x7f, and \xc3\xa9")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := PrintablePrefix(s), printableRun(s)/8*8; got != want {
			t.Fatalf("PrintablePrefix(%q) = %d, want %d", s, got, want)
		}
	})
}
