package main

import (
	"fmt"
	"strconv"
	"strings"
)

// byteSize is a flag value in bytes: a plain number, or a number with a
// unit: KiB, MiB, GiB, TiB (powers of 1024; K, M, G, T and KB, MB, GB, TB
// too) or B.
type byteSize int64

// byteUnits are the units byteSize takes, longest suffix first.
var byteUnits = []struct {
	suffix string
	shift  uint
}{
	{"KIB", 10}, {"MIB", 20}, {"GIB", 30}, {"TIB", 40},
	{"KB", 10}, {"MB", 20}, {"GB", 30}, {"TB", 40},
	{"K", 10}, {"M", 20}, {"G", 30}, {"T", 40}, {"B", 0},
}

// UnmarshalText parses a size (kong reports its error under the flag).
func (b *byteSize) UnmarshalText(text []byte) error {
	s := strings.ToUpper(strings.TrimSpace(string(text)))
	shift := uint(0)
	for _, u := range byteUnits {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, shift = strings.TrimSpace(rest), u.shift
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("%q: want a size in bytes such as 536870912, 512MiB or 2GiB", text)
	}
	if n > (1<<62)>>shift {
		return fmt.Errorf("%q: too large", text)
	}
	*b = byteSize(n << shift)
	return nil
}
