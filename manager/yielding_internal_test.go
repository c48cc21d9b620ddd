package manager

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager/assign"
)

// TestYieldingGivesWayToAssignments: the processing goroutine's waits on
// the source end when an assignment arrives, and at once when one is
// already pending, so that a failover's assignment is applied without
// waiting for a source stream to elect a leader.
func TestYieldingGivesWayToAssignments(t *testing.T) {
	m := &TableManager{assignSignal: make(chan struct{}, 1), assignArrived: make(chan struct{})}
	ctx := context.Background()

	yctx, cancel := m.yielding(ctx)
	defer cancel()
	select {
	case <-yctx.Done():
		t.Fatal("canceled without an assignment")
	case <-time.After(20 * time.Millisecond):
	}
	m.setPendingAssignment(assign.Assignment{Generation: 2})
	select {
	case <-yctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("not canceled by the assignment")
	}
	if !yielded(ctx, yctx.Err()) {
		t.Errorf("yielded(%v) = false, want true", yctx.Err())
	}

	// Pending: the next wait gives way at once.
	pctx, pcancel := m.yielding(ctx)
	defer pcancel()
	if pctx.Err() == nil {
		t.Error("not canceled although an assignment is pending")
	}

	// Applied: waits go on again.
	if a := m.takePendingAssignment(); a == nil || a.Generation != 2 {
		t.Fatalf("pending assignment = %v, want generation 2", a)
	}
	qctx, qcancel := m.yielding(ctx)
	defer qcancel()
	if qctx.Err() != nil {
		t.Error("canceled although no assignment is pending")
	}
	// The next assignment ends the wait running when it arrives.
	m.setPendingAssignment(assign.Assignment{Generation: 3})
	<-qctx.Done()

	// The processing's own end is not a yield.
	done, stop := context.WithCancel(ctx)
	stop()
	if yielded(done, context.Canceled) {
		t.Error("yielded = true for the processing's own cancellation")
	}
	if yielded(ctx, errors.New("timeout")) {
		t.Error("yielded = true for another error")
	}
}
