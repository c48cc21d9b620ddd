package jetstream_test

import (
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
	"github.com/edgetables/edgetables/manager/port"
)

func newAtomicChangelog(t *testing.T) (*jetstream.Changelog, *nats.Conn) {
	_, nc, js := jstest.Start(t)
	cl, err := jetstream.NewChangelog(testCtx(t), js, jetstream.ChangelogConfig{App: "atom", Partitions: 2, Atomic: true})
	if err != nil {
		t.Fatal(err)
	}
	return cl, nc
}

func atomicRecords(n int, prefix string) []port.Record {
	recs := make([]port.Record, n)
	for i := range recs {
		recs[i] = port.Record{Table: "t", Key: []byte(fmt.Sprintf("%s%d", prefix, i)), Value: []byte(strconv.Itoa(i))}
	}
	return recs
}

func TestAtomicAppend(t *testing.T) {
	cl, _ := newAtomicChangelog(t)
	last := mustAppend(t, cl, 0, 0, atomicRecords(999, "k"), port.CommitMarker{SourceSeq: 7})
	if last != 1000 {
		t.Fatalf("last = %d, want 1000", last)
	}
	es := replayAll(t, cl, 0, 1, last, 100)
	if len(es) != 1000 || es[999].Commit == nil || es[999].Commit.SourceSeq != 7 {
		t.Fatalf("replayed %d entries, last %+v", len(es), es[len(es)-1])
	}
	// One message more than a batch holds is refused before anything is sent.
	if _, err := cl.Append(testCtx(t), 0, last, atomicRecords(1000, "x"), port.CommitMarker{}); !errors.Is(err, jetstream.ErrBatchTooLarge) {
		t.Errorf("1001-message append = %v, want ErrBatchTooLarge", err)
	}
	// A stale writer's whole batch is refused: nothing of it is stored.
	_, err := cl.Append(testCtx(t), 0, last-1, atomicRecords(10, "z"), port.CommitMarker{SourceSeq: 9})
	if !errors.Is(err, port.ErrFenced) {
		t.Fatalf("stale atomic append = %v, want ErrFenced", err)
	}
	if st, _ := cl.State(testCtx(t), 0); st.Last != last {
		t.Errorf("log ends at %d after a fenced batch, want %d", st.Last, last)
	}
}

// TestAtomicBatchNeverCommitted is the mid-batch failure point: a writer
// that dies after staging part of a batch leaves nothing in the log.
func TestAtomicBatchNeverCommitted(t *testing.T) {
	cl, nc := newAtomicChangelog(t)
	last := mustAppend(t, cl, 1, 0, atomicRecords(3, "a"), port.CommitMarker{SourceSeq: 3})
	for i := 1; i <= 5; i++ { // staged, never committed
		m := &nats.Msg{Subject: jetstream.RecordSubject("atom", 1, "t", []byte(fmt.Sprint("b", i))), Header: nats.Header{}, Data: []byte("1")}
		m.Header.Set("Nats-Batch-Id", "crashed-writer")
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i))
		if i == 1 {
			if _, err := nc.RequestMsg(m, 2*time.Second); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	// The next commit of the partition's owner goes through, and the
	// abandoned batch never shows.
	last = mustAppend(t, cl, 1, last, atomicRecords(2, "c"), port.CommitMarker{SourceSeq: 5})
	es := replayAll(t, cl, 1, 1, last, 100)
	for _, e := range es {
		if e.Commit == nil && string(e.Record.Key[:1]) == "b" {
			t.Fatalf("a record of the uncommitted batch is in the log: %q", e.Record.Key)
		}
	}
	if n := len(es); n != 6 { // 3 records, 2 records, 1 marker (the first marker was superseded)
		t.Errorf("log holds %d entries, want 6", n)
	}
}
