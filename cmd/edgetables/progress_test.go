package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager/status"
)

func recoveringStatus(now time.Time) nodeStatus {
	return nodeStatus{Node: "n1", Partitions: []status.PartitionStatus{
		{Partition: 0, State: status.StateActive, AppliedOffset: 10, HighWater: 10,
			Recovery: &status.RecoveryProgress{Partition: 0, Phase: status.PhaseDone, From: 1, HighWater: 9, Applied: 10, Ended: now}},
		{Partition: 1, State: status.StateRecovering, AppliedOffset: 500, HighWater: 1000,
			Recovery: &status.RecoveryProgress{Partition: 1, Phase: status.PhaseReplaying, From: 1, HighWater: 1000, Applied: 500,
				Records: 450, RecordsRemaining: 500, RatePerSecond: 1500, ETASeconds: 2.4, Started: now.Add(-time.Second), LastProgress: now}},
		{Partition: 2, State: status.StateRecovering,
			Recovery: &status.RecoveryProgress{Partition: 2, Phase: status.PhaseWaitingRelease, Started: now.Add(-40 * time.Second),
				LastProgress: now.Add(-40 * time.Second)}},
		{Partition: 3, State: status.StateStandby, AppliedOffset: 0, HighWater: 40,
			Recovery: &status.RecoveryProgress{Partition: 3, Standby: true, Phase: status.PhaseReplaying, From: 1, HighWater: 40,
				RecordsRemaining: 40, Started: now, LastProgress: now}},
	}}
}

func TestPrintRecoveries(t *testing.T) {
	now := time.Now()
	var out bytes.Buffer
	printRecoveries(&out, recoveringStatus(now).Partitions, now)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || lines[0] != "recovering:" {
		t.Fatalf("output:\n%s\nwant a header and three bars (the recovered partition has none)", out.String())
	}
	half := "[" + strings.Repeat("#", 15) + strings.Repeat("-", 15) + "]"
	for _, want := range []string{"1 active", half, " 50%", "500/1000", "1.5k/s", "ETA 2s", status.PhaseReplaying} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("partition 1 line %q lacks %q", lines[1], want)
		}
	}
	for _, want := range []string{"2 active", "[" + strings.Repeat("-", 30) + "]", "0/0", "ETA -", status.PhaseWaitingRelease, "(no progress for 40s)"} {
		if !strings.Contains(lines[2], want) {
			t.Errorf("partition 2 line %q lacks %q", lines[2], want)
		}
	}
	for _, want := range []string{"3 standby", "  0%", "0/40"} {
		if !strings.Contains(lines[3], want) {
			t.Errorf("partition 3 line %q lacks %q", lines[3], want)
		}
	}

	out.Reset()
	printRecoveries(&out, recoveringStatus(now).Partitions[:1], now)
	if out.Len() != 0 {
		t.Errorf("bars for a node with no running recovery: %q", out.String())
	}
}

// TestStatusWatch: --watch refreshes until the node is ready with every
// partition active, showing the bars meanwhile.
func TestStatusWatch(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := recoveringStatus(time.Now())
		if calls.Add(1) >= 3 {
			st.Ready = true
			for i := range st.Partitions[:3] {
				st.Partitions[i].State = status.StateActive
				st.Partitions[i].Recovery.Ended = time.Now()
			}
		}
		_ = json.NewEncoder(w).Encode(st)
	}))
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	cmd := statusCmd{HTTP: srv.URL, Timeout: 5 * time.Second, Watch: true, Interval: 10 * time.Millisecond}
	if code := cmd.run(context.Background(), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d refreshes, want 3 (until every partition is active)", n)
	}
	out := stdout.String()
	if strings.Count(out, "recovering:") != 3 || strings.Count(out, "--- ") != 2 {
		t.Errorf("output:\n%s\nwant three snapshots with bars (the standby still catching up in the last)", out)
	}
}
