package jetstream_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
	"github.com/edgetables/edgetables/manager/port"
)

func newSource(t testing.TB, js natsjs.JetStream, subjects ...string) *jetstream.Source {
	t.Helper()
	src, err := jetstream.NewSource(testCtx(t), js, jetstream.SourceConfig{App: app, Subjects: subjects, Consumer: "node.1", Logger: quiet})
	if err != nil {
		t.Fatalf("NewSource: %v", err)
	}
	return src
}

func publishN(t testing.TB, js natsjs.JetStream, subject string, n int, size int) {
	t.Helper()
	data := make([]byte, size)
	for i := 0; i < n; i++ {
		if _, err := js.PublishAsync(subject, data, natsjs.WithStallWait(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("publish did not complete")
	}
}

func open(t testing.TB, src *jetstream.Source, from uint64) port.SourceReader {
	t.Helper()
	r, err := src.Open(testCtx(t), from)
	if err != nil {
		t.Fatalf("Open(%d): %v", from, err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// readSeqs reads until n messages came or a read times out.
func readSeqs(t testing.TB, r port.SourceReader, n int) []uint64 {
	t.Helper()
	var seqs []uint64
	for len(seqs) < n {
		msgs, err := r.Next(testCtx(t), n-len(seqs), 2*time.Second)
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			seqs = append(seqs, m.Seq)
		}
	}
	return seqs
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func TestSourceOpenFromSequence(t *testing.T) {
	_, nc, js := jstest.Start(t)
	src := newSource(t, js, "in.>")
	ctx := testCtx(t)
	publishN(t, js, "in.a", 10, 10)

	r := open(t, src, 4)
	if got := readSeqs(t, r, 7); !slices.Equal(got, seqRange(4, 10)) {
		t.Fatalf("from 4: %v", got)
	}
	// Messages with headers, from a core NATS publisher.
	m := nats.NewMsg("in.b.c")
	m.Header.Set("X-Trace", "abc")
	m.Data = []byte("payload")
	if err := nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	msgs, err := r.Next(ctx, 10, 5*time.Second)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Next = %v, %v", msgs, err)
	}
	got := msgs[0]
	if got.Seq != 11 || got.Subject != "in.b.c" || string(got.Data) != "payload" || got.Header["X-Trace"][0] != "abc" || time.Since(got.Time) > time.Minute {
		t.Errorf("message = %+v", got)
	}

	// From 1 and from 0 read everything.
	for _, from := range []uint64{0, 1} {
		r := open(t, src, from)
		if got := readSeqs(t, r, 11); !slices.Equal(got, seqRange(1, 11)) {
			t.Errorf("from %d: %v", from, got)
		}
		_ = r.Close()
	}
	// From beyond the end waits for new messages.
	r = open(t, src, 13)
	publishN(t, js, "in.a", 3, 10)
	if got := readSeqs(t, r, 2); !slices.Equal(got, []uint64{13, 14}) {
		t.Errorf("from 13: %v", got)
	}
}

func TestSourceNextTimeout(t *testing.T) {
	_, _, js := jstest.Start(t)
	src := newSource(t, js, "in.>")
	r := open(t, src, 1)
	start := time.Now()
	msgs, err := r.Next(testCtx(t), 100, 100*time.Millisecond)
	took := time.Since(start)
	if err != nil || msgs == nil || len(msgs) != 0 {
		t.Fatalf("Next on empty stream = %v, %v", msgs, err)
	}
	if took < 100*time.Millisecond || took > 5*time.Second {
		t.Errorf("Next waited %v, want about 100ms", took)
	}
	// wait 0 returns at once.
	if msgs, err := r.Next(testCtx(t), 100, 0); err != nil || len(msgs) != 0 {
		t.Errorf("Next(wait 0) = %v, %v", msgs, err)
	}
	// A cancelled context.
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	if _, err := r.Next(ctx, 100, time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("Next(cancelled) = %v", err)
	}
	// After Close.
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(testCtx(t), 1, time.Second); !errors.Is(err, jetstream.ErrReaderClosed) {
		t.Errorf("Next after Close = %v", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestSourceNextBatches(t *testing.T) {
	_, _, js := jstest.Start(t)
	src := newSource(t, js, "in.>")
	publishN(t, js, "in.x", 50, 10)
	r := open(t, src, 1)
	var all []uint64
	for len(all) < 50 {
		msgs, err := r.Next(testCtx(t), 7, time.Second)
		if err != nil || len(msgs) == 0 || len(msgs) > 7 {
			t.Fatalf("Next = %d messages, %v", len(msgs), err)
		}
		for _, m := range msgs {
			all = append(all, m.Seq)
		}
	}
	if !slices.Equal(all, seqRange(1, 50)) {
		t.Errorf("sequences %v", all)
	}
}

func TestSourceAckThenReopen(t *testing.T) {
	_, _, js := jstest.Start(t)
	src := newSource(t, js, "in.>")
	ctx := testCtx(t)
	publishN(t, js, "in.a", 10, 10)
	r := open(t, src, 1)
	if got := readSeqs(t, r, 8); len(got) != 8 {
		t.Fatalf("read %v", got)
	}
	if err := r.Ack(ctx, 5); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, src.Stream(), r.(*jetstream.SourceReader).Consumer())
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.AckFloor.Stream != 5 || info.Config.AckPolicy != natsjs.AckAllPolicy || info.Config.MaxAckPending != jetstream.SourceMaxAckPending {
		t.Errorf("after Ack(5): ack floor %d, config %+v", info.AckFloor.Stream, info.Config)
	}
	// Ack of a sequence not delivered acks what was delivered (8).
	if err := r.Ack(ctx, 100); err != nil {
		t.Fatal(err)
	}
	if info, _ = cons.Info(ctx); info.AckFloor.Stream != 8 {
		t.Errorf("after Ack(100): ack floor %d, want 8", info.AckFloor.Stream)
	}
	// Nothing left to ack is no error.
	if err := r.Ack(ctx, 3); err != nil {
		t.Error(err)
	}
	_ = r.Close()

	r = open(t, src, 6)
	if got := readSeqs(t, r, 5); !slices.Equal(got, seqRange(6, 10)) {
		t.Errorf("reopened from 6: %v", got)
	}
}

func TestSourceTrim(t *testing.T) {
	_, _, js := jstest.Start(t)
	src := newSource(t, js, "in.>")
	ctx := testCtx(t)
	state := func() (uint64, uint64) {
		st, err := src.State(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.First, st.Last
	}
	if f, l := state(); f != 0 || l != 0 {
		t.Errorf("empty: %d..%d", f, l)
	}
	publishN(t, js, "in.a", 10, 10)
	for _, seq := range []uint64{0, 1} {
		if err := src.Trim(ctx, seq); err != nil {
			t.Fatal(err)
		}
		if f, l := state(); f != 1 || l != 10 {
			t.Errorf("after Trim(%d): %d..%d, want 1..10", seq, f, l)
		}
	}
	if err := src.Trim(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if f, l := state(); f != 5 || l != 10 {
		t.Errorf("after Trim(5): %d..%d", f, l)
	}
	if err := src.Trim(ctx, 3); err != nil { // below first: nothing
		t.Fatal(err)
	}
	// Open below the first sequence starts at the first stored one.
	r := open(t, src, 2)
	if got := readSeqs(t, r, 6); !slices.Equal(got, seqRange(5, 10)) {
		t.Errorf("open(2) after trim: %v", got)
	}
	_ = r.Close()
	// Trim beyond the end empties the stream without renumbering it.
	if err := src.Trim(ctx, 1000); err != nil {
		t.Fatal(err)
	}
	if f, l := state(); f != 11 || l != 10 {
		t.Errorf("after Trim(1000): %d..%d, want 11..10", f, l)
	}
	ack, err := js.Publish(ctx, "in.a", nil)
	if err != nil || ack.Sequence != 11 {
		t.Errorf("publish after trim: %+v, %v; want sequence 11", ack, err)
	}
}

func TestSourceSubjects(t *testing.T) {
	_, _, js := jstest.Start(t)
	ctx := testCtx(t)
	src := newSource(t, js, "a.*.b", "a.>", "c.d", "a.>", "c.d")
	if got := src.Subjects(); !slices.Equal(got, []string{"a.>", "c.d"}) {
		t.Errorf("Subjects = %q", got)
	}
	st, err := js.Stream(ctx, src.Stream())
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if !slices.Equal(cfg.Subjects, []string{"a.>", "c.d"}) || cfg.Discard != natsjs.DiscardNew || cfg.MaxBytes != jetstream.DefaultSourceMaxBytes || cfg.Retention != natsjs.LimitsPolicy {
		t.Errorf("stream config = %+v", cfg)
	}
	// Idempotent, and subjects can change.
	src = newSource(t, js, "a.>", "e.>")
	if got := src.Subjects(); !slices.Equal(got, []string{"a.>", "e.>"}) {
		t.Errorf("Subjects = %q", got)
	}

	// Overlap with another stream names it.
	if _, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: "other", Subjects: []string{"x.>"}}); err != nil {
		t.Fatal(err)
	}
	_, err = jetstream.NewSource(ctx, js, jetstream.SourceConfig{App: app, Subjects: []string{"a.>", "x.y"}})
	if !errors.Is(err, jetstream.ErrSubjectOverlap) || !strings.Contains(err.Error(), "other") {
		t.Errorf("overlap with stream other: %v", err)
	}
	// The app's own subjects.
	for _, s := range []string{app + ".>", app + ".changelog.1.x", "*.dlq.a", ">"} {
		_, err = jetstream.NewSource(ctx, js, jetstream.SourceConfig{App: app, Subjects: []string{s}})
		if !errors.Is(err, jetstream.ErrSubjectOverlap) {
			t.Errorf("subject %q: %v", s, err)
		}
	}
	// Partial overlap within the list.
	_, err = jetstream.NewSource(ctx, js, jetstream.SourceConfig{App: app, Subjects: []string{"a.*.c", "a.b.*"}})
	if !errors.Is(err, jetstream.ErrSubjectOverlap) {
		t.Errorf("partial overlap: %v", err)
	}
}

func TestSourceFull(t *testing.T) {
	_, _, js := jstest.Start(t)
	ctx := testCtx(t)
	_, err := jetstream.NewSource(ctx, js, jetstream.SourceConfig{App: app, Subjects: []string{"in.>"}, MaxBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	var full error
	for i := 0; i < 100 && full == nil; i++ {
		_, full = js.Publish(ctx, "in.a", make([]byte, 200))
	}
	if full == nil {
		t.Fatal("a full source stream accepted every JetStream publish")
	}
	t.Logf("full stream: %v", full)
}

func TestSourceConcurrentNextAck(t *testing.T) {
	_, _, js := jstest.Start(t)
	src := newSource(t, js, "in.>")
	const n = 20000
	publishN(t, js, "in.a", n, 20)
	r := open(t, src, 1)
	ctx := testCtx(t)
	acks := make(chan uint64, 100)
	done := make(chan error, 1)
	go func() {
		var err error
		for seq := range acks {
			if e := r.Ack(ctx, seq); e != nil && err == nil {
				err = e
			}
		}
		done <- err
	}()
	var next uint64 = 1
	for next <= n {
		msgs, err := r.Next(ctx, 1000, 2*time.Second)
		if err != nil || len(msgs) == 0 {
			t.Fatalf("Next at %d: %d, %v", next, len(msgs), err)
		}
		for _, m := range msgs {
			if m.Seq != next {
				t.Fatalf("got %d, want %d", m.Seq, next)
			}
			next++
		}
		acks <- msgs[len(msgs)-1].Seq
	}
	close(acks)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cons, _ := js.Consumer(ctx, src.Stream(), r.(*jetstream.SourceReader).Consumer())
	if info, _ := cons.Info(ctx); info.AckFloor.Stream != n || info.NumAckPending != 0 {
		t.Errorf("ack floor %d, pending %d", info.AckFloor.Stream, info.NumAckPending)
	}
}

func TestSourceReaderEndsWhenReplaced(t *testing.T) {
	_, _, js := jstest.Start(t)
	src := newSource(t, js, "in.>")
	publishN(t, js, "in.a", 3, 10)
	r1 := open(t, src, 1)
	if got := readSeqs(t, r1, 3); len(got) != 3 {
		t.Fatalf("read %v", got)
	}
	r2 := open(t, src, 2) // deletes the consumer under r1
	ctx := testCtx(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		msgs, err := r1.Next(ctx, 10, 200*time.Millisecond)
		if errors.Is(err, jetstream.ErrReaderClosed) {
			t.Logf("old reader: %v", err)
			break
		}
		if err != nil || len(msgs) != 0 || time.Now().After(deadline) {
			t.Fatalf("old reader: %d messages, %v", len(msgs), err)
		}
	}
	if got := readSeqs(t, r2, 2); !slices.Equal(got, []uint64{2, 3}) {
		t.Errorf("new reader: %v", got)
	}
}

// TestSourceReaderDrained: a reader with a backlog beyond its buffer is not
// drained; once it has delivered the last message stored, it is, until
// more are stored and delivered.
func TestSourceReaderDrained(t *testing.T) {
	_, _, js := jstest.Start(t)
	src := newSource(t, js, "in.>")
	const n = 30000 // three times the reader's buffer of 10,000
	publishN(t, js, "in.a", n, 10)
	r := open(t, src, 1).(*jetstream.SourceReader)
	if got := readSeqs(t, r, 100); len(got) != 100 {
		t.Fatalf("read %d of 100", len(got))
	}
	if r.Drained() {
		t.Error("drained with most of the backlog still in the stream")
	}
	if got := readSeqs(t, r, n-100); len(got) != n-100 {
		t.Fatalf("read %d of the rest, want %d", len(got), n-100)
	}
	if !r.Drained() {
		t.Error("not drained after the last message stored")
	}
	publishN(t, js, "in.a", 5, 10)
	if got := readSeqs(t, r, 5); !slices.Equal(got, seqRange(n+1, n+5)) {
		t.Fatalf("read %v after 5 more", got)
	}
	if !r.Drained() {
		t.Error("not drained after the 5 new messages")
	}
}

// TestValidateSourceSubject: what a source may capture, checked before a
// node starts.
func TestValidateSourceSubject(t *testing.T) {
	for subj, ok := range map[string]bool{
		"sensors.>": true, "*.sensors.*.temp": true, "a.*": true, "JS.x": true,
		">": false, "*.>": false, "edgetables.>": false, "edgetables.changelog.1.t.x": false,
		"$JS.API.>": false, "$JS.>": false, "$SYS.REQ.x": false, "_INBOX.>": false, "$KV.b.k": false,
		"a..b": false, "": false,
	} {
		err := jetstream.ValidateSourceSubject("edgetables", subj)
		if (err == nil) != ok {
			t.Errorf("ValidateSourceSubject(%q) = %v, want ok %v", subj, err, ok)
		}
	}
}
