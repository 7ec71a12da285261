package main

import (
	"errors"
	"slices"
	"testing"
)

func TestSpreadOf(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want spread
	}{
		{nil, spread{}},
		{[]float64{7}, spread{median: 7, min: 7, max: 7, n: 1}},
		{[]float64{3, 1, 2}, spread{median: 2, min: 1, max: 3, n: 3}},
		{[]float64{4, 1, 3, 2}, spread{median: 2.5, min: 1, max: 4, n: 4}},
		{[]float64{5, 100, 4, 6, 1}, spread{median: 5, min: 1, max: 100, n: 5}},
	} {
		in := slices.Clone(c.xs)
		if got := spreadOf(c.xs); got != c.want {
			t.Errorf("spreadOf(%v) = %+v, want %+v", c.xs, got, c.want)
		}
		if !slices.Equal(in, c.xs) {
			t.Errorf("spreadOf sorted its argument: %v", c.xs)
		}
	}
}

// fake returns a measure that logs its name and returns values in turn.
func fake(log *[]string, name string, values ...float64) func() (float64, error) {
	return func() (float64, error) {
		*log = append(*log, name)
		v := values[0]
		values = values[1:]
		return v, nil
	}
}

func TestVersusAlternates(t *testing.T) {
	var log []string
	fig, yard, ratio, err := versus(3, fake(&log, "figure", 10, 30, 20), fake(&log, "yardstick", 10, 10, 40))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"figure", "yardstick", "figure", "yardstick", "figure", "yardstick"}; !slices.Equal(log, want) {
		t.Errorf("order %v, want %v", log, want)
	}
	if want := (spread{median: 20, min: 10, max: 30, n: 3}); fig != want {
		t.Errorf("figure %+v, want %+v", fig, want)
	}
	if want := (spread{median: 10, min: 10, max: 40, n: 3}); yard != want {
		t.Errorf("yardstick %+v, want %+v", yard, want)
	}
	// The ratios are round by round (1, 3, 0.5), not of the medians (2).
	if want := (spread{median: 1, min: 0.5, max: 3, n: 3}); ratio != want {
		t.Errorf("ratio %+v, want %+v", ratio, want)
	}
}

func TestVersusStopsAtAnError(t *testing.T) {
	var log []string
	boom := errors.New("boom")
	yardstick := func() (float64, error) {
		log = append(log, "yardstick")
		if len(log) == 4 {
			return 0, boom
		}
		return 1, nil
	}
	if _, _, _, err := versus(5, fake(&log, "figure", 1, 1, 1, 1, 1), yardstick); !errors.Is(err, boom) {
		t.Errorf("versus returned %v, want %v", err, boom)
	}
	if want := []string{"figure", "yardstick", "figure", "yardstick"}; !slices.Equal(log, want) {
		t.Errorf("order %v, want %v", log, want)
	}
}

func TestRepeat(t *testing.T) {
	var log []string
	got, err := repeat(4, fake(&log, "figure", 4, 1, 3, 2))
	if want := (spread{median: 2.5, min: 1, max: 4, n: 4}); err != nil || got != want || len(log) != 4 {
		t.Errorf("repeat = %+v, %v after %d measures, want %+v after 4", got, err, len(log), want)
	}
}
