package manager

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager/port"
)

func TestResolveSource(t *testing.T) {
	src := port.SourceState{First: 3, Last: 40, Epoch: "e2"}
	for _, c := range []struct {
		name      string
		pos       uint64
		epoch     string
		src       port.SourceState
		wantPos   uint64
		wantEpoch string
		moved     bool
	}{
		{"same stream", 30, "e2", src, 30, "e2", false},
		{"same stream, at its end", 40, "e2", src, 40, "e2", false},
		{"created again", 500, "e1", src, 2, "e2", true},
		{"created again, behind", 10, "e1", src, 2, "e2", true},
		{"created again, empty", 500, "e1", port.SourceState{Epoch: "e2"}, 0, "e2", true},
		{"lost its tail", 55, "e2", src, 40, "e2", true},
		{"unknown epoch adopted", 30, "", src, 30, "e2", false},
		{"unknown epoch beyond the end", 55, "", src, 40, "e2", true},
		{"source epoch unknown", 55, "e1", port.SourceState{Last: 40}, 55, "e1", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			pos, epoch, what := resolveSource(c.pos, c.epoch, c.src)
			if pos != c.wantPos || epoch != c.wantEpoch || (what != "") != c.moved {
				t.Errorf("resolveSource(%d, %q, %+v) = %d, %q, %q; want %d, %q, moved %v",
					c.pos, c.epoch, c.src, pos, epoch, what, c.wantPos, c.wantEpoch, c.moved)
			}
		})
	}
}

// TestOldCommitMarkerDecodes: a marker written before source epochs reads
// with an unknown epoch; a new one keeps it.
func TestOldCommitMarkerDecodes(t *testing.T) {
	var m port.CommitMarker
	if err := json.Unmarshal([]byte(`{"source_seq": 17, "node": "n1", "generation": 3}`), &m); err != nil {
		t.Fatal(err)
	}
	if m != (port.CommitMarker{SourceSeq: 17, Node: "n1", Generation: 3}) {
		t.Errorf("old marker = %+v", m)
	}
	b, _ := json.Marshal(port.CommitMarker{SourceSeq: 5, Node: "n2", SourceEpoch: "2026-01-02T03:04:05.000000006Z"})
	if want := `{"source_seq":5,"node":"n2","source_epoch":"2026-01-02T03:04:05.000000006Z"}`; string(b) != want {
		t.Errorf("marker encodes as %s, want %s", b, want)
	}
}

// countingSource answers State after wait unless the context ends first
// (never, when wait is negative), counting the calls.
type countingSource struct {
	port.Source
	calls atomic.Int32
	wait  time.Duration
}

func (s *countingSource) State(ctx context.Context) (port.SourceState, error) {
	s.calls.Add(1)
	if s.wait < 0 {
		<-ctx.Done()
		return port.SourceState{}, ctx.Err()
	}
	select {
	case <-time.After(s.wait):
		return port.SourceState{Last: 7, Epoch: "e"}, nil
	case <-ctx.Done():
		return port.SourceState{}, ctx.Err()
	}
}

// TestTakeoverSourceReadShared: concurrent takeovers share one read of
// the source's state; after a read timed out the next takeovers do not
// wait for the same leaderless stream again; a successful read is not
// reused afterwards.
func TestTakeoverSourceReadShared(t *testing.T) {
	for _, tc := range []struct {
		name      string
		wait      time.Duration
		wantCalls int32
		wantErr   bool
	}{
		{name: "leaderless source", wait: -1, wantCalls: 1, wantErr: true},
		{name: "healthy source", wait: 100 * time.Millisecond, wantCalls: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &countingSource{wait: tc.wait}
			var r takeoverSourceRead
			var wg sync.WaitGroup
			start := time.Now()
			errs := make([]error, 4)
			for i := range errs {
				wg.Go(func() { _, errs[i] = r.read(context.Background(), src) })
			}
			wg.Wait()
			if took := time.Since(start); took > takeoverSourceWait+300*time.Millisecond {
				t.Errorf("4 concurrent takeovers took %s, want about one read's wait", took)
			}
			// A takeover after the first ones.
			_, err := r.read(context.Background(), src)
			errs = append(errs, err)
			for i, err := range errs {
				if (err != nil) != tc.wantErr {
					t.Errorf("read %d: %v, want error %v", i, err, tc.wantErr)
				}
			}
			if got := src.calls.Load(); got != tc.wantCalls {
				t.Errorf("%d reads of the source, want %d", got, tc.wantCalls)
			}
		})
	}
}

// TestTakeoverSourceReadAbandoned: a takeover that waits for another's
// read, whose takeover ends before the read does, reads the source itself
// rather than taking the other's cancellation for the source's answer.
func TestTakeoverSourceReadAbandoned(t *testing.T) {
	src := &countingSource{wait: 200 * time.Millisecond}
	var r takeoverSourceRead
	first, cancel := context.WithCancel(context.Background())
	firstDone := make(chan error, 1)
	go func() { _, err := r.read(first, src); firstDone <- err }()
	for src.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	secondDone := make(chan error, 1)
	go func() { _, err := r.read(context.Background(), src); secondDone <- err }()
	time.Sleep(20 * time.Millisecond) // the second waits for the first's read
	cancel()
	if err := <-firstDone; err == nil {
		t.Fatal("the canceled takeover's read succeeded")
	}
	if err := <-secondDone; err != nil {
		t.Fatalf("the waiting takeover got %v, want the source's state", err)
	}
	if got := src.calls.Load(); got != 2 {
		t.Fatalf("%d reads of the source, want 2", got)
	}
}
