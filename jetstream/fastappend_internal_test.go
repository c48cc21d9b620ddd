package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/manager/port"
)

func fastTestRecords(n int, prefix string) []port.Record {
	out := make([]port.Record, n)
	for i := range out {
		out[i] = port.Record{Table: "t", Key: fmt.Appendf(nil, "%s-%d", prefix, i), Value: []byte("v")}
	}
	return out
}

// fastChangelog starts an embedded JetStream and an app's changelog of
// parts partitions on it, under a 60 s deadline.
func fastChangelog(t *testing.T, app string, parts int) (context.Context, natsjs.JetStream, *Changelog) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	js := embeddedJetStream(t, ctx, ServerConfig{})
	c, err := NewChangelog(ctx, js, ChangelogConfig{App: app, Partitions: parts})
	if err != nil {
		t.Fatal(err)
	}
	return ctx, js, c
}

// waitLast waits until partition p's log ends at want.
func waitLast(t *testing.T, ctx context.Context, c *Changelog, p int, want uint64) {
	t.Helper()
	for {
		st, err := c.State(ctx, p)
		if err == nil && st.Last == want {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("log of partition %d never ended at %d (last state %+v, err %v)", p, want, st, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFastAppendFencedMidBatch: another writer appends while an
// at-least-once Append's fast batch is half sent. The batch's next message
// is refused, and so is every later one, although the one after it
// expects exactly the log the other writer grew: nothing of the fenced
// writer lands after the other writer's message.
func TestFastAppendFencedMidBatch(t *testing.T) {
	ctx, js, c := fastChangelog(t, "fast", 1)
	if !c.fast[0].Load() {
		t.Fatal("the changelog does not use fast batches")
	}
	start, err := c.Append(ctx, 0, 0, fastTestRecords(3, "first"), port.CommitMarker{Node: "a"})
	if err != nil {
		t.Fatal(err)
	}
	const cut = 5 // records of the fenced writer stored before the other writer
	var other uint64
	c.afterAdd = func(p, i int) {
		if i != cut-1 {
			return
		}
		waitLast(t, ctx, c, p, start+cut)
		m := &nats.Msg{Subject: c.prefixes[p] + "t." + EncodeKey([]byte("other")), Data: []byte("o"), Header: nats.Header{}}
		m.Header.Set(nats.ExpectedLastSeqHdr, strconv.FormatUint(start+cut, 10))
		ack, err := js.PublishMsg(ctx, m)
		if err != nil {
			t.Errorf("the other writer's append: %v", err)
			return
		}
		other = ack.Sequence
	}
	_, err = c.Append(ctx, 0, start, fastTestRecords(50, "fenced"), port.CommitMarker{Node: "a"})
	c.afterAdd = nil
	if !errors.Is(err, port.ErrFenced) {
		t.Fatalf("Append = %v, want ErrFenced", err)
	}
	if other != start+cut+1 {
		t.Fatalf("the other writer's message at %d, want %d", other, start+cut+1)
	}
	time.Sleep(200 * time.Millisecond) // anything still in flight lands by now
	st, err := c.State(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st.Last != other {
		t.Fatalf("log ends at %d, want %d (the other writer's message)", st.Last, other)
	}
	// The log stays usable: the other writer goes on.
	if _, err := c.Append(ctx, 0, other, fastTestRecords(2, "next"), port.CommitMarker{Node: "b"}); err != nil {
		t.Fatalf("the next writer's Append: %v", err)
	}
}

// TestFastAppendFallsBack: a stream that refuses fast batches (an older
// edgetables turned AllowBatchPublish off) takes at-least-once Appends as
// atomic batches, and nothing is lost or stored twice; the next
// NewChangelog turns fast batches on again.
func TestFastAppendFallsBack(t *testing.T) {
	ctx, js, c := fastChangelog(t, "fallback", 2)
	st, err := js.Stream(ctx, c.streams[1])
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.AllowBatchPublish = false
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatalf("turn fast batches off: %v", err)
	}
	for p := range 2 {
		last, err := c.Append(ctx, p, 0, fastTestRecords(1500, "k"), port.CommitMarker{Node: "a"})
		if err != nil {
			t.Fatalf("partition %d: Append: %v", p, err)
		}
		if last != 1501 {
			t.Fatalf("partition %d: Append ended at %d, want 1501", p, last)
		}
		if _, err := c.Append(ctx, p, last, fastTestRecords(2, "k"), port.CommitMarker{Node: "a"}); err != nil {
			t.Fatalf("partition %d: second Append: %v", p, err)
		}
	}
	if !c.fast[0].Load() || c.fast[1].Load() {
		t.Errorf("fast batches: partition 0 %v, 1 %v; want true, false", c.fast[0].Load(), c.fast[1].Load())
	}
	info, err := js.Stream(ctx, c.streams[1])
	if err != nil {
		t.Fatal(err)
	}
	if s := info.CachedInfo().State; s.LastSeq != 1504 || s.Msgs != 1500+1 {
		// 1,500 keys (the second Append overwrote two) and one marker.
		t.Errorf("partition 1: last %d, %d messages; want 1504, 1501", s.LastSeq, s.Msgs)
	}
	// A node that starts again turns fast batches back on.
	again, err := NewChangelog(ctx, js, ChangelogConfig{App: "fallback", Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !again.fast[1].Load() {
		t.Error("NewChangelog left fast batches off on partition 1's stream")
	}
	if _, err := again.Append(ctx, 1, 1504, fastTestRecords(2, "k"), port.CommitMarker{Node: "a"}); err != nil {
		t.Fatalf("partition 1: Append after NewChangelog: %v", err)
	}
}

// TestFastAppendGivenUp: an Append given up mid-batch (its context ends,
// or BeforeCommit fails) leaves no subscription behind, and the log takes
// the next Append from where the stored prefix ends.
func TestFastAppendGivenUp(t *testing.T) {
	ctx, js, c := fastChangelog(t, "givenup", 1)
	nc := js.Conn()
	subs := nc.NumSubscriptions()
	errStop := errors.New("stop here")
	for _, tc := range []struct {
		name  string
		setup func(cancel context.CancelFunc)
	}{
		{"context ends", func(cancel context.CancelFunc) {
			c.afterAdd = func(p, i int) {
				if i == 2 {
					cancel()
				}
			}
		}},
		{"BeforeCommit fails", func(context.CancelFunc) {
			c.cfg.BeforeCommit = func(p, batch int) error { return errStop }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := c.State(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			actx, acancel := context.WithCancel(ctx)
			defer acancel()
			tc.setup(acancel)
			_, err = c.Append(actx, 0, st.Last, fastTestRecords(10, tc.name), port.CommitMarker{Node: "a"})
			c.afterAdd, c.cfg.BeforeCommit = nil, nil
			if err == nil || errors.Is(err, port.ErrFenced) {
				t.Fatalf("Append = %v, want an error other than fenced", err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for nc.NumSubscriptions() != subs && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if got := nc.NumSubscriptions(); got != subs {
				t.Errorf("%d subscriptions after the Append, want %d", got, subs)
			}
			time.Sleep(100 * time.Millisecond) // the sent records land
			st, err = c.State(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Append(ctx, 0, st.Last, fastTestRecords(3, "after"), port.CommitMarker{Node: "a"}); err != nil {
				t.Fatalf("Append after the given-up one: %v", err)
			}
		})
	}
}
