package main

import (
	"strconv"
	"testing"
)

const redisCSV = `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"INCR","1703577.50","0.397","0.120","0.383","0.591","0.791","2.863"
`

func TestParseRedisCSV(t *testing.T) {
	if rps, err := parseRedisCSV(redisCSV, "INCR"); err != nil || rps != 1703577.5 {
		t.Fatalf("parseRedisCSV = %v, %v", rps, err)
	}
	for _, out := range []string{"", `"test","rps"` + "\n", `"test","rps"` + "\n" + `"GET","5"` + "\n", `"rps"` + "\n" + `"INCR"` + "\n", "\"unclosed\n"} {
		if rps, err := parseRedisCSV(out, "INCR"); err == nil {
			t.Errorf("parseRedisCSV(%q) = %v, want an error", out, rps)
		}
	}
}

// FuzzParseRedisCSV checks that any output redis-benchmark might print is read without a
// panic, and that a well-formed row gives back its figure.
func FuzzParseRedisCSV(f *testing.F) {
	f.Add(redisCSV, 12.5)
	f.Add(`"rps","test"`+"\n"+`"1","INCR"`, 1.0)
	f.Fuzz(func(t *testing.T, out string, rps float64) {
		parseRedisCSV(out, "INCR")
		if rps < 0 || rps != rps {
			return
		}
		s := strconv.FormatFloat(rps, 'f', -1, 64)
		if got, err := parseRedisCSV(`"test","rps"`+"\n"+`"INCR","`+s+`"`+"\n", "INCR"); err != nil || got != rps {
			t.Fatalf("rps %s read as %v, %v", s, got, err)
		}
	})
}
