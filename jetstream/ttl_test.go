package jetstream_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
	"github.com/edgetables/edgetables/manager/port"
)

// waitGone waits until subject holds no message in stream (the server
// expires TTLs on a one-second wheel) and fails after deadline.
func waitGone(t *testing.T, js natsjs.JetStream, stream, subject string, deadline time.Duration) {
	t.Helper()
	ctx := testCtx(t)
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(deadline)
	for {
		_, err := st.GetLastMsgForSubject(ctx, subject)
		if errors.Is(err, natsjs.ErrMsgNotFound) {
			return
		}
		if err != nil {
			t.Fatalf("get %s: %v", subject, err)
		}
		if time.Now().After(end) {
			t.Fatalf("%s still holds a message after %s", subject, deadline)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRecordTTL: a record with a TTL leaves the log once it has passed, in
// plain and atomic appends alike; records without one (values and
// tombstones) stay, and so does the marker.
func TestRecordTTL(t *testing.T) {
	for _, atomic := range []bool{false, true} {
		t.Run(fmt.Sprintf("atomic=%v", atomic), func(t *testing.T) {
			_, _, js := jstest.Start(t)
			ctx := testCtx(t)
			cl, err := jetstream.NewChangelog(ctx, js, jetstream.ChangelogConfig{App: app, Partitions: 1, Atomic: atomic})
			if err != nil {
				t.Fatal(err)
			}
			recs := []port.Record{
				{Table: "t", Key: []byte("keep"), Value: []byte("1")},
				{Table: "t", Key: []byte("gone"), Value: []byte("2"), TTL: time.Second},
				{Table: "t", Key: []byte("tomb"), Delete: true},
				{Table: "t", Key: []byte("tomb-ttl"), Delete: true, TTL: 1500 * time.Millisecond},
			}
			last := mustAppend(t, cl, 0, 0, recs, port.CommitMarker{SourceSeq: 4})

			// The header says whole seconds, rounded up.
			st, err := js.Stream(ctx, cl.Stream(0))
			if err != nil {
				t.Fatal(err)
			}
			m, err := st.GetLastMsgForSubject(ctx, jetstream.RecordSubject(app, 0, "t", []byte("tomb-ttl")))
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Header.Get(natsjs.MsgTTLHeader); got != "2" {
				t.Errorf("Nats-TTL of a 1.5s TTL = %q, want 2", got)
			}

			for _, k := range []string{"gone", "tomb-ttl"} {
				waitGone(t, js, cl.Stream(0), jetstream.RecordSubject(app, 0, "t", []byte(k)), 10*time.Second)
			}
			es := replayAll(t, cl, 0, 1, last, 100)
			var got []string
			for _, e := range es {
				if e.Commit != nil {
					got = append(got, "marker")
					continue
				}
				got = append(got, fmt.Sprintf("%s del=%v", e.Record.Key, e.Record.Delete))
			}
			if want := "[keep del=false tomb del=true marker]"; fmt.Sprint(got) != want {
				t.Errorf("log after the TTLs = %v, want %s", got, want)
			}
			// The log's end is where it was: a writer still expects it.
			if s, err := cl.State(ctx, 0); err != nil || s.Last != last {
				t.Errorf("state = %+v, %v; want last %d", s, err, last)
			}
			mustAppend(t, cl, 0, last, nil, port.CommitMarker{SourceSeq: 5})
		})
	}
}

// TestAppendRejectsNegativeTTL: a negative TTL is a caller's bug, refused
// before anything is sent.
func TestAppendRejectsNegativeTTL(t *testing.T) {
	_, _, js := jstest.Start(t)
	cl := newChangelog(t, js, 1)
	_, err := cl.Append(testCtx(t), 0, 0, []port.Record{{Table: "t", Key: []byte("k"), TTL: -time.Second}}, port.CommitMarker{})
	if err == nil {
		t.Fatal("append with a negative TTL succeeded")
	}
	if st, _ := cl.State(testCtx(t), 0); st.Last != 0 {
		t.Errorf("log ends at %d, want 0", st.Last)
	}
}

// TestExistingStreamGetsMsgTTL: a changelog stream created without
// AllowMsgTTL (by an older version) is updated in place: same data, same
// epoch, and records with a TTL are accepted and expire.
func TestExistingStreamGetsMsgTTL(t *testing.T) {
	_, _, js := jstest.Start(t)
	ctx := testCtx(t)
	name := jetstream.ChangelogStream(app, 0)
	// The configuration of the previous version.
	_, err := js.CreateStream(ctx, natsjs.StreamConfig{
		Name:               name,
		Description:        fmt.Sprintf("edgetables changelog of app %s, partition %d", app, 0),
		Subjects:           jetstream.ChangelogSubjects(app, 0),
		Retention:          natsjs.LimitsPolicy,
		Storage:            natsjs.FileStorage,
		Replicas:           1,
		MaxMsgs:            -1,
		MaxBytes:           -1,
		MaxMsgsPerSubject:  1,
		Discard:            natsjs.DiscardOld,
		AllowAtomicPublish: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, jetstream.RecordSubject(app, 0, "t", []byte("old")), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, jetstream.RecordSubject(app, 0, "t", []byte("ttl")), []byte("v"), natsjs.WithMsgTTL(time.Second)); err == nil {
		t.Fatal("a TTL was accepted before the update: the test's stream is not like the old version's")
	}
	before, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}

	cl := newChangelog(t, js, 1)
	after, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info := after.CachedInfo()
	if !info.Config.AllowMsgTTL {
		t.Fatalf("AllowMsgTTL not set on the existing stream: %+v", info.Config)
	}
	if !info.Created.Equal(before.CachedInfo().Created) || info.State.Msgs != 1 {
		t.Errorf("stream recreated or data lost: created %v → %v, %d messages", before.CachedInfo().Created, info.Created, info.State.Msgs)
	}
	last := mustAppend(t, cl, 0, info.State.LastSeq, []port.Record{{Table: "t", Key: []byte("ttl"), Delete: true, TTL: time.Second}}, port.CommitMarker{})
	waitGone(t, js, name, jetstream.RecordSubject(app, 0, "t", []byte("ttl")), 10*time.Second)
	if es := replayAll(t, cl, 0, 1, last, 10); len(es) != 2 || string(es[0].Record.Key) != "old" || es[1].Commit == nil {
		t.Errorf("log = %+v, want the old record and the marker", es)
	}
}

// TestTombstoneTTL: with ChangelogConfig.TombstoneTTL, a tombstone without
// a TTL of its own gets it (a closed window's keeps its own), leaves the
// log once it has passed, and a replay from the start has the key absent;
// State's TombstonesFrom then says that a store which applied the log only
// up to before the tombstone may have missed it, and one that applied it
// all did not.
func TestTombstoneTTL(t *testing.T) {
	_, _, js := jstest.Start(t)
	ctx := testCtx(t)
	cl, err := jetstream.NewChangelog(ctx, js, jetstream.ChangelogConfig{App: app, Partitions: 1, TombstoneTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	before := mustAppend(t, cl, 0, 0, []port.Record{
		{Table: "t", Key: []byte("a"), Value: []byte("1")},
		{Table: "t", Key: []byte("b"), Value: []byte("2")},
	}, port.CommitMarker{SourceSeq: 2})
	if s, err := cl.State(ctx, 0); err != nil || s.TombstonesFrom != 1 {
		t.Fatalf("state of a young log = %+v, %v; want TombstonesFrom 1", s, err)
	}
	last := mustAppend(t, cl, 0, before, []port.Record{
		{Table: "t", Key: []byte("a"), Delete: true},
		{Table: "w", Key: []byte("window"), Delete: true, TTL: time.Hour},
	}, port.CommitMarker{SourceSeq: 3})
	st, err := js.Stream(ctx, cl.Stream(0))
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(ctx, jetstream.RecordSubject(app, 0, "w", []byte("window")))
	if err != nil || m.Header.Get(natsjs.MsgTTLHeader) != "3600" {
		t.Fatalf("closed window's tombstone: %v, Nats-TTL %q; want its own 3600", err, m.Header.Get(natsjs.MsgTTLHeader))
	}
	waitGone(t, js, cl.Stream(0), jetstream.RecordSubject(app, 0, "t", []byte("a")), 10*time.Second)
	var got []string
	for _, e := range replayAll(t, cl, 0, 1, last, 100) {
		if e.Commit == nil {
			got = append(got, fmt.Sprintf("%s/%s del=%v", e.Record.Table, e.Record.Key, e.Record.Delete))
		}
	}
	if want := "[t/b del=false w/window del=true]"; fmt.Sprint(got) != want {
		t.Errorf("replay after the tombstone TTL = %v, want %s", got, want)
	}
	s, err := cl.State(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if s.TombstonesFrom != last+1 {
		t.Errorf("TombstonesFrom = %d once every message is older than the TTL less its margin, want %d", s.TombstonesFrom, last+1)
	}
}
