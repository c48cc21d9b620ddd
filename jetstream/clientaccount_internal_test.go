package jetstream

import (
	"slices"
	"testing"
)

func TestDisjointSubjects(t *testing.T) {
	for _, tc := range []struct {
		in, want []string
	}{
		{[]string{"sensors.*.temp", "app.query.>"}, []string{"sensors.*.temp", "app.query.>"}},
		{[]string{"sensors.*.temp", "sensors.>", "app.query.>"}, []string{"sensors.>", "app.query.>"}},
		{[]string{"a.*.x", "a.y.*"}, []string{"a.*.*"}},
		{[]string{"a.b", "a.c", "a.*"}, []string{"a.*"}},
		{[]string{"a.b.c", "a.b"}, []string{"a.b.c", "a.b"}},
		{[]string{"x.>", "x"}, []string{"x.>", "x"}},
		{[]string{"a.*.x", "a.y.*", "a.q.z"}, []string{"a.*.*"}},
	} {
		got := disjointSubjects(tc.in)
		if !slices.Equal(got, tc.want) {
			t.Errorf("disjointSubjects(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
