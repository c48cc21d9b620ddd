package manager_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
)

// TestSourceRecreatedUnderRunningNode: the source stream deleted and created
// again under a running node numbers its events from 1 again; they are all
// processed, exactly once, also after a restart. They used to be skipped
// for ever (their sequences were at or below every committed position).
func TestSourceRecreatedUnderRunningNode(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, manager.Config{})
	h.start()
	want := map[string]int64{}
	h.publishCounts(300, 100, want)
	h.waitCounts(want)

	must(t, h.js.DeleteStream(ctx, jetstream.SourceStream(h.app)))
	_, err := jetstream.NewSource(ctx, h.js, jetstream.SourceConfig{App: h.app, Subjects: []string{"ev.*", "bad.>"}, Consumer: "other"})
	must(t, err)
	h.publishCounts(100, 100, want)
	h.waitCounts(want)
	if st := h.m.Status(); st.SourceResets == 0 {
		t.Errorf("source resets = 0, want the partitions' moves counted")
	}

	// The new positions are committed with the new epoch: a restart
	// neither skips nor counts again.
	must(t, h.stop())
	h.start()
	h.publishCounts(100, 100, want)
	h.waitCounts(want)
	time.Sleep(300 * time.Millisecond) // a double count would show by now
	h.waitCounts(want)
}

// TestSourceLostTail: commit markers claim a source position beyond the
// source's last sequence (the source lost its tail in a power cut under
// --sync interval while the markers survived). The partitions resume after
// the source's last sequence: the events published after the loss are
// processed. They used to be skipped until the source passed the old
// position.
func TestSourceLostTail(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, manager.Config{Partitions: 2})
	h.start()
	want := map[string]int64{}
	h.publishCounts(100, 10, want)
	h.waitCounts(want)
	must(t, h.stop())

	// Markers written by hand, as a later commit would have: position
	// 150 of the same source stream, which ends at 100.
	st, err := h.js.Stream(ctx, jetstream.SourceStream(h.app))
	must(t, err)
	info := st.CachedInfo()
	if info.State.LastSeq != 100 {
		t.Fatalf("source ends at %d, want 100", info.State.LastSeq)
	}
	epoch := info.Created.UTC().Format(time.RFC3339Nano)
	for p := 0; p < 2; p++ {
		cl, err := h.js.Stream(ctx, jetstream.ChangelogStream(h.app, p))
		must(t, err)
		data, _ := json.Marshal(map[string]any{"source_seq": 150, "node": "n1", "source_epoch": epoch})
		_, err = h.js.Publish(ctx, jetstream.CommitSubject(h.app, p), data,
			natsjs.WithExpectLastSequence(cl.CachedInfo().State.LastSeq))
		must(t, err)
	}

	h.start()
	h.publishCounts(30, 10, want)
	h.waitCounts(want)
	if st := h.m.Status(); st.SourceResets != 2 {
		t.Errorf("source resets = %d, want 2 (one per partition)", st.SourceResets)
	}
}
