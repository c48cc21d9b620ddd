package manager

import (
	"slices"
	"testing"

	"github.com/edgetables/edgetables/manager/assign"
	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
)

func TestPartialMembers(t *testing.T) {
	view := func(members ...string) *port.GroupView {
		v := &port.GroupView{Members: map[string]status.MemberState{}}
		for _, name := range members {
			v.Members[name] = status.MemberState{Node: name}
		}
		return v
	}
	// n4 joined after the last complete view and is in the assignment.
	a := assign.Assign(assign.Assignment{}, []string{"n1", "n2", "n3", "n4"}, 8, 1)
	for _, tc := range []struct {
		name    string
		last    *port.GroupView
		partial *port.GroupView
		want    []string // nil: nothing to assign
	}{
		{"no complete view yet", nil, view("n1", "n2"), nil},
		{"nobody gone", view("n1", "n2", "n3"), view("n1", "n2", "n3"), nil},
		{"n3 gone; n4, unknown to the last view, stays", view("n1", "n2", "n3"), view("n1", "n2"), []string{"n1", "n2", "n4"}},
		{"n3 gone; every assigned member known", view("n1", "n2", "n3", "n4"), view("n1", "n2", "n4"), []string{"n1", "n2", "n4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := *tc.partial
			v.Partial, v.Assignment = true, a
			got, ok := partialMembers(v, tc.last)
			slices.Sort(got)
			if ok != (tc.want != nil) || !slices.Equal(got, tc.want) {
				t.Errorf("partialMembers = %v, %v; want %v", got, ok, tc.want)
			}
		})
	}
}
