package bench

import (
	"context"
	"errors"
	"slices"
	"testing"
)

func TestMeasureReadsTakesTurns(t *testing.T) {
	order := make([]int, warmup+40)
	for i := range order {
		order[i] = i
	}
	var calls []string // reader name and key, in call order
	reader := func(name string) func(int) error {
		return func(k int) error {
			calls = append(calls, name)
			if name == "a" && k >= warmup {
				calls[len(calls)-1] += "*"
			}
			return nil
		}
	}
	st, err := measureReads(context.Background(), order, 4, []func(int) error{reader("a"), reader("b"), reader("c")})
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 3 {
		t.Fatalf("%d stats, want 3", len(st))
	}
	for i, s := range st {
		if s.rate <= 0 {
			t.Errorf("reader %d: rate %v", i, s.rate)
		}
	}
	// Warmup: each reader reads the warmup keys, one reader after another.
	if len(calls) != 3*len(order) {
		t.Fatalf("%d calls, want %d", len(calls), 3*len(order))
	}
	measured := calls[3*warmup:]
	// Rounds of 10 keys; the first reader of round r is reader r mod 3.
	var firsts []string
	for r := range 4 {
		firsts = append(firsts, measured[r*30])
	}
	if want := []string{"a*", "b", "c", "a*"}; !slices.Equal(firsts, want) {
		t.Errorf("first reader of each round %v, want %v", firsts, want)
	}
}

func TestMeasureReadsStopsOnError(t *testing.T) {
	order := make([]int, warmup+100)
	boom := errors.New("boom")
	n := 0
	ok := func(int) error { return nil }
	failing := func(int) error {
		if n++; n > warmup+5 {
			return boom
		}
		return nil
	}
	if _, err := measureReads(context.Background(), order, 10, []func(int) error{ok, failing}); !errors.Is(err, boom) {
		t.Fatalf("err %v, want %v", err, boom)
	}
	if _, err := measureReads(context.Background(), order[:warmup], 10, []func(int) error{ok}); err == nil {
		t.Fatal("no measured reads: want an error")
	}
}
