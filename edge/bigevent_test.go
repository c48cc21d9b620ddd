package edge

import (
	"strings"
	"testing"
	"time"
)

// TestBigEventDoesNotWedge: an event that fits NATS's 1 MiB payload limit
// but whose changelog record would not (an agg=latest table keeps the
// whole event) goes to the dead-letter subject; the events after it, of
// the same key and partition, are processed. It used to stop the partition
// for good, retrying "maximum payload exceeded" ten times a second.
func TestBigEventDoesNotWedge(t *testing.T) {
	n, stop := startNode(t, t.TempDir(), "name=last,source=big.*,key=subject:2,agg=latest")
	defer stop()
	publish(t, n, "big.a", `"first"`)
	waitValue(t, n, "last", "a", `"first"`)
	body := `"` + strings.Repeat("x", 1048556-2) + `"` // 1 MiB less 20 bytes
	publish(t, n, "big.a", body)
	publish(t, n, "big.a", `"after"`)
	waitValue(t, n, "last", "a", `"after"`)
	deadline := time.Now().Add(10 * time.Second)
	for n.Manager().Status().DeadLetters["last"] != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("dead letters of last = %d; want 1 (the big event)", n.Manager().Status().DeadLetters["last"])
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := n.Manager().Status().DeadLetterReasons["limit"]; got != 1 {
		t.Errorf("dead letters for a limit = %d; want 1", got)
	}
}
