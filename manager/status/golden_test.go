package status_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager/assign"
	"github.com/edgetables/edgetables/manager/status"
)

// updateGolden rewrites the golden files of the status documents:
// go test -run StatusGolden ./manager/status/ -update. Review the diff: a changed
// golden file is a changed HTTP API.
var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldenFile returns testdata/name without its final line break, writing
// b there first when -update is set.
func goldenFile(t *testing.T, name string, b []byte) []byte {
	t.Helper()
	if *updateGolden {
		if err := os.WriteFile("testdata/"+name, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	g, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(g, []byte("\n"))
}

// TestStatusGolden: a fully populated value of each status document (every
// field set, so that a renamed or dropped field shows) encodes byte for byte
// as its golden file, and the golden file decodes back to the same value.
func TestStatusGolden(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	recovery := &status.RecoveryProgress{Partition: 1, Standby: true, Phase: status.PhaseReplaying, From: 10, HighWater: 500,
		Applied: 200, Records: 190, RecordsRemaining: 300, RatePerSecond: 95.5, ETASeconds: 3.25, Rebuilt: true,
		Reason: "store corrupt", Started: at, Ended: at.Add(2 * time.Second), LastProgress: at.Add(time.Second)}
	st := status.Status{
		Node: "n1", Ready: true, NotReady: []string{"partition 2 recovering"},
		Partitions: []status.PartitionStatus{
			{Partition: 0, State: status.StateActive, AppliedOffset: 42, HighWater: 43, SourceSeq: 1000, Buffered: 7},
			{Partition: 1, State: status.StateStandby, AppliedOffset: 200, HighWater: 500, Recovery: recovery},
			{Partition: 2, State: status.StateRecovering, Behind: "changelog behind the store",
				Failing: &status.TaskFailure{Task: "recover", Attempts: 3, Since: at, Error: "stream not found", RetryIn: 4 * time.Second}},
			{Partition: 3, State: status.StateFenced, AppliedOffset: 9, HighWater: 12, SourceSeq: 88},
		},
		EventsProcessed: 1000, ChangelogRecords: 900, Commits: 50, MeanCommit: 3 * time.Millisecond,
		CommitLatency: status.Histogram{Bounds: []float64{0.001, 0.01, 0.1}, Counts: []uint64{10, 30, 9, 1}, Count: 50, Sum: 150 * time.Millisecond},
		Rebalances:    2, Generation: 5, DeadLetters: map[string]uint64{"counts": 3},
		UnknownRecords: 4, SourceGaps: 1, DeadLetterReasons: map[string]uint64{"key": 2, "agent": 1, "limit": 0},
		CommitsFenced: 1, CommitsFailed: 2, TakenBack: 1, LeaderMoves: 6, RecoveryFailures: 3, StandbyFailures: 2,
		ExaminedSeq: 1001, MarkerRegressions: 1, SourceResets: 1, ChangelogBehind: 1,
		Global: &status.GlobalStatus{Ready: true, AppliedOffset: 77, HighWater: 78},
	}
	cluster := status.ClusterStatus{
		Leader: "n1", Generation: 5, Applied: 4,
		Members: []status.MemberState{
			{Node: "n1", Generation: 4, Actives: []int{0, 3}, Standbys: []int{1}, Positions: map[int]uint64{0: 1000, 3: 88},
				HTTP: "127.0.0.1:8080", Instance: "3f2a", Started: at},
			{Node: "n2", Generation: 5, Actives: []int{1, 2}},
		},
		Assignment: assign.Assignment{Generation: 5, Partitions: 4, Actives: []string{"n1", "n2", "n2", "n1"},
			Standbys: [][]string{{"n2"}, {"n1"}, {"n1"}, {"n2"}}},
	}
	tables := []status.TableInfo{
		{Name: "counts", Spec: map[string]string{"source": "sensors.*.temp", "agg": "count"}, Partitions: 4, Keys: 12,
			Changelog: []string{"edgetables.changelog.*.counts.>"}},
		{Name: "limits", Partitions: 4, Keys: 2, Global: true, Changelog: []string{"edgetables.global.limits.>"}},
	}
	for _, c := range []struct {
		name string
		want any
		new  func() any // a pointer to an empty value of want's type
	}{
		{"status-v1.json", st, func() any { return &status.Status{} }},
		{"cluster-v1.json", cluster, func() any { return &status.ClusterStatus{} }},
		{"tables-v1.json", tables, func() any { return &[]status.TableInfo{} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			enc, err := json.MarshalIndent(c.want, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden := goldenFile(t, c.name, enc)
			if !bytes.Equal(enc, golden) {
				t.Errorf("encoded\n%s\nwant the golden file\n%s", enc, golden)
			}
			got := c.new()
			if err := json.Unmarshal(golden, got); err != nil {
				t.Fatal(err)
			}
			if v := reflect.ValueOf(got).Elem().Interface(); !reflect.DeepEqual(v, c.want) {
				t.Errorf("decoded %+v\nwant %+v", v, c.want)
			}
		})
	}
}
