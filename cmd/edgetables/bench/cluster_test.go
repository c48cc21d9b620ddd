package bench

import (
	"strings"
	"testing"

	"github.com/edgetables/edgetables/manager/assign"
	"github.com/edgetables/edgetables/manager/status"
)

// TestSettled checks when the failover scenario takes a cluster for
// settled: every live node ready at one applied generation after the
// given one, seeing exactly the live members, every partition active on
// its owner.
func TestSettled(t *testing.T) {
	asg := assign.Assignment{Generation: 5, Partitions: 2, Actives: []string{"n0", "n2"}}
	members := []status.MemberState{{Node: "n0"}, {Node: "n2"}}
	node := func(name string, p int, state status.PartitionState) *nodeStatus {
		return &nodeStatus{Node: name, Ready: true,
			Partitions: []status.PartitionStatus{{Partition: p, State: state}},
			Cluster:    &status.ClusterStatus{Generation: 5, Applied: 5, Members: members, Assignment: asg}}
	}
	good := func() map[int]*nodeStatus {
		return map[int]*nodeStatus{0: node("n0", 0, status.StateActive), 2: node("n2", 1, status.StateActive)}
	}
	live := []int{0, 2}
	if got, why := settled(good(), live, 4); why != "" || got.Generation != 5 {
		t.Fatalf("settled cluster: %q, generation %d", why, got.Generation)
	}
	for _, c := range []struct {
		name   string
		change func(map[int]*nodeStatus)
		minGen uint64
		want   string
	}{
		{"a node does not answer", func(s map[int]*nodeStatus) { delete(s, 2) }, 4, "n2 does not answer"},
		{"not ready", func(s map[int]*nodeStatus) { s[0].Ready = false }, 4, "n0 not ready"},
		{"the dead member still seen", func(s map[int]*nodeStatus) {
			s[2].Cluster.Members = append(s[2].Cluster.Members, status.MemberState{Node: "n1"})
		}, 4, "n2 sees 3 members"},
		{"no generation since the kill", func(map[int]*nodeStatus) {}, 5, "n0 at generation 5"},
		{"not applied", func(s map[int]*nodeStatus) { s[2].Cluster.Applied = 4 }, 4, "n2 at generation 5, applied 4"},
		{"generations differ", func(s map[int]*nodeStatus) {
			s[2].Cluster.Generation, s[2].Cluster.Applied = 6, 6
		}, 4, "n2 at generation 6, n0 at 5"},
		{"owner not live", func(s map[int]*nodeStatus) {
			for _, st := range s {
				st.Cluster.Assignment.Actives = []string{"n0", "n1"}
			}
		}, 4, `partition 1 assigned to "n1"`},
		{"still recovering", func(s map[int]*nodeStatus) {
			s[2].Partitions[0].State = status.StateRecovering
		}, 4, "partition 1 not active on its owner n2"},
	} {
		sts := good()
		for _, st := range sts { // no shared slices between the cases
			cs := *st.Cluster
			cs.Members = append([]status.MemberState(nil), cs.Members...)
			cs.Assignment.Actives = append([]string(nil), cs.Assignment.Actives...)
			st.Cluster = &cs
		}
		c.change(sts)
		if _, why := settled(sts, live, c.minGen); !strings.Contains(why, c.want) {
			t.Errorf("%s: reason %q, want %q", c.name, why, c.want)
		}
	}
}

// TestTail checks the output kept of a node: the last bytes, and what
// was written since a mark.
func TestTail(t *testing.T) {
	tl := &tail{max: 10}
	_, _ = tl.Write([]byte("abcdef"))
	m := tl.mark()
	if got := tl.since(m); got != "" {
		t.Errorf("since a fresh mark: %q", got)
	}
	_, _ = tl.Write([]byte("gh"))
	if got := tl.since(m); got != "gh" {
		t.Errorf("since the mark: %q, want gh", got)
	}
	_, _ = tl.Write([]byte("ijklmnopq"))
	if got := tl.since(m); got != "…hijklmnopq" {
		t.Errorf("since the mark, more than kept: %q", got)
	}
	if got := tl.last(3); got != "…opq" {
		t.Errorf("last 3: %q", got)
	}
	if got := withoutRouteErrors("a\nx Error trying to connect to route y\nb\n"); got != "a\nb\n" {
		t.Errorf("withoutRouteErrors: %q", got)
	}
}
