package assign

import (
	"slices"
	"testing"
)

// TestAssignFailoverReady checks that with one standby per partition the
// standbys are placed so that when any one member fails, Assign gives each
// of its actives to that active's standby (failoverMisses is 0): for two
// and three members and every P from 2M to 64, after the members joined
// one by one, and again after each member failed and came back.
func TestAssignFailoverReady(t *testing.T) {
	for m := 2; m <= 3; m++ {
		names := memberNames(m)
		for p := 2 * m; p <= 64; p++ {
			var a Assignment
			for k := 1; k <= m; k++ {
				a = Assign(a, names[:k], p, 1)
			}
			if miss := failoverMisses(a, names); miss > 0 {
				t.Errorf("M=%d P=%d, members joined one by one: %d actives would not go to their standby\n%+v", m, p, miss, a)
			}
			for _, gone := range names {
				rest := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == gone })
				b := Assign(Assign(a, rest, p, 1), names, p, 1)
				mustValidateAssignment(t, b, names)
				if miss := failoverMisses(b, names); miss > 0 {
					t.Errorf("M=%d P=%d, after %s failed and came back: %d actives would not go to their standby\n%+v", m, p, gone, miss, b)
				}
			}
		}
	}
}
