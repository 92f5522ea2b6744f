package text

import "strings"

// Closest is the candidate a user most likely meant by name, for a "did you mean": the same
// once case, underscores and dashes are ignored, else the nearest within a small edit
// distance (0 for names of up to 2 characters, 1 up to 4, 2 up to 8, then 3); "" when none
// is near enough.
func Closest(name string, candidates []string) string {
	norm := func(s string) string {
		return strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(s))
	}
	n := norm(name)
	if len(n) > 64 {
		return ""
	}
	limit := 1
	switch {
	case len(n) <= 2:
		limit = 0
	case len(n) > 8:
		limit = 3
	case len(n) > 4:
		limit = 2
	}
	best, bestD := "", limit+1
	for _, c := range candidates {
		nc := norm(c)
		if nc == n {
			return c
		}
		if d := editDistance(n, nc); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions, deletions,
// substitutions and swaps of neighbours.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
