package manager

import (
	"testing"

	"github.com/edgetables/edgetables/manager/assign"
	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
)

// TestSettled: leader moves wait for a view read as a whole, whose
// assignment this node applied and names only live members as actives.
func TestSettled(t *testing.T) {
	live := map[string]status.MemberState{"n0": {}, "n1": {}}
	asg := func(gen uint64, actives ...string) assign.Assignment {
		return assign.Assignment{Generation: gen, Partitions: len(actives), Actives: actives}
	}
	for _, c := range []struct {
		name string
		view *port.GroupView
		want bool
	}{
		{"no view", nil, false},
		{"settled", &port.GroupView{Members: live, Assignment: asg(3, "n0", "n1", "n0")}, true},
		{"read key by key", &port.GroupView{Members: live, Assignment: asg(3, "n0", "n1", "n0"), Partial: true}, false},
		{"not applied yet", &port.GroupView{Members: live, Assignment: asg(4, "n0", "n1", "n0")}, false},
		{"no assignment", &port.GroupView{Members: live}, false},
		{"an active died", &port.GroupView{Members: live, Assignment: asg(3, "n0", "n2", "n0")}, false},
		{"a partition unassigned", &port.GroupView{Members: live, Assignment: asg(3, "n0", "", "n1")}, false},
	} {
		m := &TableManager{}
		m.gen.Store(3)
		if got := m.settled(c.view); got != c.want {
			t.Errorf("%s: settled = %v, want %v", c.name, got, c.want)
		}
	}
}
