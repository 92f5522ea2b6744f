package activity

import (
	"math/rand/v2"
	"testing"
	"time"
)

// appendMicroTime writes what time.AppendFormat writes with MicroTime's layout, for times
// across the four-digit years, in any zone, at the edges of the fields, and beyond.
func TestAppendMicroTimeMatchesAppendFormat(t *testing.T) {
	zone := time.FixedZone("X", -7*3600-30*60)
	times := []time.Time{
		{},
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2026, 12, 6, 21, 37, 29, 215734000, zone),
		time.Date(2024, 2, 29, 0, 0, 0, 999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), // beyond four digits: the fallback
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Now(),
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		times = append(times, time.Unix(r.Int64N(253402300800), r.Int64N(1e9)).In(zone))
	}
	for _, tm := range times {
		got := string(appendMicroTime([]byte("x"), tm))
		want := "x" + tm.UTC().Format(rfc3339Micro)
		if got != want {
			t.Fatalf("%v: got %q, want %q", tm, got, want)
		}
	}
}
