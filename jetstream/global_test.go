package jetstream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
	"github.com/edgetables/edgetables/manager/port"
)

// TestGlobalLog: any writer puts records; conditional puts succeed only
// against the key's last sequence (0 for a key never written, the
// tombstone's for a deleted one); the log is compacted per key and reads
// back as records.
func TestGlobalLog(t *testing.T) {
	_, _, js := jstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gl, err := jetstream.NewGlobalLog(ctx, js, jetstream.GlobalConfig{App: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jetstream.NewGlobalLog(ctx, js, jetstream.GlobalConfig{App: "app"}); err != nil {
		t.Fatalf("second NewGlobalLog: %v", err)
	}
	seq := func(s uint64) *uint64 { return &s }
	put := func(rec port.Record, expect *uint64) (uint64, error) {
		t.Helper()
		return gl.Put(ctx, rec, expect)
	}
	a1, err := put(port.Record{Table: "cfg", Key: []byte("a"), Value: []byte("1")}, seq(0))
	if err != nil {
		t.Fatalf("create a: %v", err)
	}
	if _, err := put(port.Record{Table: "cfg", Key: []byte("a"), Value: []byte("x")}, seq(0)); !errors.Is(err, port.ErrConflict) {
		t.Fatalf("create of an existing key = %v, want ErrConflict", err)
	}
	a2, err := put(port.Record{Table: "cfg", Key: []byte("a"), Value: []byte("2")}, seq(a1))
	if err != nil {
		t.Fatalf("update a at %d: %v", a1, err)
	}
	if _, err := put(port.Record{Table: "cfg", Key: []byte("a"), Value: []byte("y")}, seq(a1)); !errors.Is(err, port.ErrConflict) {
		t.Fatalf("stale update = %v, want ErrConflict", err)
	}
	b1, err := put(port.Record{Table: "cfg", Key: []byte("b"), Value: []byte("1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bDel, err := put(port.Record{Table: "cfg", Key: []byte("b"), Delete: true}, seq(b1))
	if err != nil {
		t.Fatalf("delete b: %v", err)
	}
	if _, err := put(port.Record{Table: "cfg", Key: []byte("b"), Value: []byte("again")}, seq(0)); !errors.Is(err, port.ErrConflict) {
		t.Fatalf("create over a tombstone expecting 0 = %v, want ErrConflict", err)
	}
	if _, err := put(port.Record{Table: "cfg", Key: []byte("b"), Value: []byte("again")}, seq(bDel)); err != nil {
		t.Fatalf("write after the tombstone at %d: %v", bDel, err)
	}
	if _, err := put(port.Record{Table: "bad.name", Key: []byte("k")}, nil); err == nil {
		t.Error("put with a dotted table name succeeded")
	}
	if _, err := put(port.Record{Table: "cfg", Key: make([]byte, jetstream.MaxKeyLen+1)}, nil); !errors.Is(err, jetstream.ErrKeyTooLong) {
		t.Errorf("put with a long key = %v, want ErrKeyTooLong", err)
	}

	st, err := gl.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Epoch == "" || st.Last != bDel+1 {
		t.Fatalf("state = %+v, want last %d and an epoch", st, bDel+1)
	}
	var got []port.Entry
	if err := gl.Replay(ctx, 1, st.Last, 0, func(es []port.Entry) error {
		got = append(got, es...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Compaction keeps a's second value and b's last write.
	if len(got) != 2 || got[0].Seq != a2 || string(got[0].Record.Value) != "2" || got[0].Record.Table != "cfg" ||
		string(got[1].Record.Key) != "b" || string(got[1].Record.Value) != "again" || got[1].Commit != nil {
		t.Fatalf("replay = %+v", got)
	}
	if subj := gl.Subjects("cfg"); len(subj) != 1 || subj[0] != "app.global.cfg.>" {
		t.Errorf("Subjects = %q", subj)
	}
}

// TestGlobalLogConflictReplicated: on a replicated stream, of concurrent
// conditional writes expecting the same sequence exactly one lands; the
// others get ErrConflict (in flight or after).
func TestGlobalLogConflictReplicated(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	skipUnderRace(t)
	nodes := jstest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	gls := make([]*jetstream.GlobalLog, len(nodes))
	for i, n := range nodes {
		gl, err := jetstream.NewGlobalLog(ctx, n.JS, jetstream.GlobalConfig{App: "app", Replicas: 3})
		if err != nil {
			t.Fatal(err)
		}
		gls[i] = gl
	}
	base, err := gls[0].Put(ctx, port.Record{Table: "c", Key: []byte("k"), Value: []byte("0")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 3*len(gls))
	for i := range 3 * len(gls) {
		go func() {
			_, err := gls[i%len(gls)].Put(ctx, port.Record{Table: "c", Key: []byte("k"), Value: []byte{'a' + byte(i)}}, &base)
			errs <- err
		}()
	}
	ok := 0
	for range 3 * len(gls) {
		err := <-errs
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, port.ErrConflict):
			t.Errorf("concurrent put: %v, want nil or ErrConflict", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent conditional puts landed, want exactly 1", ok)
	}
}
