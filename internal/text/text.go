// Package text cuts strings to what the Kubernetes API and the activity previews take.
package text

import "unicode/utf8"

// MaxEventNote is the events.k8s.io limit on a note.
const MaxEventNote = 1024

// EventNote cuts note to what the events.k8s.io API takes.
func EventNote(note string) string { return Truncate(note, MaxEventNote) }

// Truncate cuts s to at most max bytes on a UTF-8 boundary, ending it with "..." when cut.
func Truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max - 3
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
