package manager

import "testing"

func TestPartitionOf(t *testing.T) {
	// FNV-1a 32 of "" is 0x811c9dc5; of "a" is 0xe40c292c.
	cases := []struct {
		key  string
		n    int
		want int
	}{
		{"", 8, 0x811c9dc5 % 8},
		{"a", 8, 0xe40c292c % 8},
		{"a", 1, 0},
		{"a", 0, 0},
	}
	for _, c := range cases {
		if got := PartitionOf([]byte(c.key), c.n); got != c.want {
			t.Errorf("PartitionOf(%q, %d) = %d, want %d", c.key, c.n, got, c.want)
		}
	}
}
