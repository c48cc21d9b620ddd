package jetstream

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/edgetables/edgetables/manager/port"
)

// TestParseAckSeqs: the stream and consumer sequences and the pending
// count come from the places nats.go reads them in v1 and v2 reply
// subjects; anything else is an error, as is a number nats.go would read
// as 0.
func TestParseAckSeqs(t *testing.T) {
	tests := []struct {
		name, reply string
		want        ackSeqs
		ok          bool
	}{
		{"v1", "$JS.ACK.s.c.1.100.7.1700000000000000000.42", ackSeqs{100, 7, 42, 1700000000000000000}, true},
		{"v2", "$JS.ACK.hub.ACCHASH.s.c.2.100.7.1700000000000000000.0.rnd", ackSeqs{100, 7, 0, 1700000000000000000}, true},
		{"v2 without the last token", "$JS.ACK._.ACCHASH.s.c.1.5.6.17.8", ackSeqs{5, 6, 8, 17}, true},
		{"v2 with more tokens", "$JS.ACK._.h.s.c.1.5.6.17.8.r.x.y", ackSeqs{5, 6, 8, 17}, true},
		{"largest numbers", "$JS.ACK.s.c.1.18446744073709551615.18446744073709551615.1.18446744073709551615",
			ackSeqs{1<<64 - 1, 1<<64 - 1, 1<<64 - 1, 1}, true},
		{"time past int64", "$JS.ACK.s.c.1.5.6.9223372036854775808.8", ackSeqs{}, false},
		{"empty time", "$JS.ACK.s.c.1.5.6..8", ackSeqs{}, false},
		{"overflow", "$JS.ACK.s.c.1.18446744073709551616.1.1.1", ackSeqs{}, false},
		{"10 tokens", "$JS.ACK.x.s.c.1.5.6.17.8", ackSeqs{}, false},
		{"8 tokens", "$JS.ACK.s.c.1.5.6.17", ackSeqs{}, false},
		{"not an ack subject", "$JS.NAK.s.c.1.100.7.17.42", ackSeqs{}, false},
		{"empty", "", ackSeqs{}, false},
		{"empty stream sequence", "$JS.ACK.s.c.1..7.17.42", ackSeqs{}, false},
		{"letters in the consumer sequence", "$JS.ACK.s.c.1.100.7a.17.42", ackSeqs{}, false},
		{"negative pending", "$JS.ACK.s.c.1.100.7.17.-1", ackSeqs{}, false},
		{"empty pending", "$JS.ACK._.h.s.c.1.5.6.17..r", ackSeqs{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseAckSeqs(tt.reply)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("parseAckSeqs(%q) = %+v, %v; want %+v, ok %v", tt.reply, got, err, tt.want, tt.ok)
			}
		})
	}
}

// FuzzParseAckSeqs: parseAckSeqs never panics and agrees with a plain
// split of the subject at nats.go's token positions.
func FuzzParseAckSeqs(f *testing.F) {
	f.Add("$JS.ACK.s.c.1.100.7.1700000000000000000.42")
	f.Add("$JS.ACK.hub.ACCHASH.s.c.2.100.7.1700000000000000000.0.rnd")
	f.Add("$JS.ACK._.h.s.c.1.5.6.17.8")
	f.Add("$JS.ACK.s.c.1..7.17.42")
	f.Add("$JS.ACK.........")
	f.Fuzz(func(t *testing.T, reply string) {
		got, err := parseAckSeqs(reply)
		want, wantOK := splitAckSeqs(reply)
		if (err == nil) != wantOK || got != want {
			t.Fatalf("parseAckSeqs(%q) = %+v, %v; the split gives %+v, ok %v", reply, got, err, want, wantOK)
		}
	})
}

// splitAckSeqs is parseAckSeqs written plainly: nats.go's split of the
// subject, and strconv for the numbers.
func splitAckSeqs(reply string) (ackSeqs, bool) {
	tokens := strings.Split(reply, ".")
	if !strings.HasPrefix(reply, "$JS.ACK.") || len(tokens) != 9 && len(tokens) < 11 {
		return ackSeqs{}, false
	}
	if len(tokens) == 9 {
		tokens = append([]string{"$JS", "ACK", "", ""}, tokens[2:]...)
	}
	var s ackSeqs
	var tm uint64
	for i, dst := range map[int]*uint64{7: &s.stream, 8: &s.consumer, 9: &tm, 10: &s.pending} {
		tok := tokens[i]
		if tok == "" || strings.TrimLeft(tok, "0123456789") != "" {
			return ackSeqs{}, false
		}
		n, err := strconv.ParseUint(tok, 10, 64)
		if err != nil {
			return ackSeqs{}, false
		}
		*dst = n
	}
	if tm > math.MaxInt64 {
		return ackSeqs{}, false
	}
	s.stored = int64(tm)
	return s, true
}

// seqReaderFixture is a changelog of one partition holding n records (and
// a commit marker), on a server of its own.
func seqReaderFixture(t *testing.T, n int) (*Changelog, context.Context) {
	t.Helper()
	_, js := testServer(t, &server.Options{JetStream: true, StoreDir: t.TempDir()})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	cl, err := NewChangelog(ctx, js, ChangelogConfig{App: "seqr", Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	appendRecords(t, ctx, cl, 0, n)
	return cl, ctx
}

// appendRecords appends n records to partition 0 of cl after sequence
// after, with a commit marker.
func appendRecords(t *testing.T, ctx context.Context, cl *Changelog, after uint64, n int) uint64 {
	t.Helper()
	recs := make([]port.Record, n)
	for i := range recs {
		recs[i] = port.Record{Table: "t", Key: fmt.Appendf(nil, "k%d-%d", after, i), Value: []byte("v")}
	}
	last, err := cl.Append(ctx, 0, after, recs, port.CommitMarker{SourceSeq: after + 1})
	if err != nil {
		t.Fatal(err)
	}
	return last
}

// TestSeqReaderSeqsMatchMetadata: on real messages the sequences next
// returns are the ones of the message's full metadata. (nats-server
// v2.15.2 sends v1 reply subjects, with a JetStream domain too; v2 ones are
// covered by TestParseAckSeqs.)
func TestSeqReaderSeqsMatchMetadata(t *testing.T) {
	const n = 20
	cl, ctx := seqReaderFixture(t, n)
	r, err := cl.openSeqReader(ctx, cl.streams[0], 1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	for i := range n + 1 {
		msg, got, err := r.next(5 * time.Second)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		want := ackSeqs{md.Sequence.Stream, md.Sequence.Consumer, md.NumPending, md.Timestamp.UnixNano()}
		if got != want || got.stream != uint64(i+1) {
			t.Fatalf("message %d (reply %q): sequences %+v; the metadata says %+v", i, msg.Reply(), got, want)
		}
	}
}

// TestSeqReaderIdleWait: next returns what is buffered without waiting,
// and nats.ErrTimeout once nothing came for maxWait since the call, no
// sooner: after a burst, after a caller busy for longer than maxWait
// between calls, after an earlier timeout, when the call before began less
// than maxWait before, and with a shorter maxWait than the call before.
func TestSeqReaderIdleWait(t *testing.T) {
	const n, wait = 50, 300 * time.Millisecond
	cl, ctx := seqReaderFixture(t, n)
	r, err := cl.openSeqReader(ctx, cl.streams[0], 1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	// expectTimeout calls next(maxWait) on an exhausted log.
	expectTimeout := func(what string, maxWait time.Duration) {
		t.Helper()
		start := time.Now()
		msg, _, err := r.next(maxWait)
		took := time.Since(start)
		if !errors.Is(err, nats.ErrTimeout) {
			t.Fatalf("%s: next = %v, %v; want nats.ErrTimeout", what, msg, err)
		}
		if took < maxWait || took > maxWait+2*time.Second {
			t.Fatalf("%s: timed out after %s; want %s", what, took, maxWait)
		}
	}
	// expectMsg calls next and wants stream sequence seq.
	expectMsg := func(what string, seq uint64) {
		t.Helper()
		_, md, err := r.next(wait)
		if err != nil || md.stream != seq {
			t.Fatalf("%s: next = %+v, %v; want stream sequence %d", what, md, err, seq)
		}
	}
	for i := range n + 1 {
		expectMsg("burst", uint64(i+1))
	}
	expectTimeout("after the burst", wait)
	expectTimeout("after a timeout", wait)

	// A caller busy for longer than maxWait between calls: the wait that
	// follows still gets what comes within it, and a wait with nothing to
	// read lasts maxWait from its own start.
	time.Sleep(2 * wait)
	last := appendRecords(t, ctx, cl, uint64(n+1), 1)
	expectMsg("after a busy caller", uint64(n+2))
	expectMsg("after a busy caller", last)
	time.Sleep(2 * wait)
	expectTimeout("after a busy caller", wait)

	// A wait that begins while the timer is armed for an earlier one's
	// end lasts its own maxWait.
	last = appendRecords(t, ctx, cl, last, 1)
	expectMsg("before a pause", last-1)
	time.Sleep(wait / 2)
	expectMsg("after a pause", last)
	expectTimeout("after a pause", wait)

	// A long wait that got a message, then a short one.
	last = appendRecords(t, ctx, cl, last, 1)
	if _, md, err := r.next(time.Minute); err != nil || md.stream != last-1 {
		t.Fatalf("long wait: %+v, %v; want stream sequence %d", md, err, last-1)
	}
	expectMsg("after a long wait", last)
	expectTimeout("short after long", 100*time.Millisecond)
}

// TestSeqReaderGapAndCancel: a consumer sequence other than the one after
// the last read is a gap (errReaderGap), and a wait ends with the
// context.
func TestSeqReaderGapAndCancel(t *testing.T) {
	cl, ctx := seqReaderFixture(t, 5)
	r, err := cl.openSeqReader(ctx, cl.streams[0], 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.next(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	r.delivered++ // as if a message had been read that the consumer did not send
	if _, _, err := r.next(5 * time.Second); !errors.Is(err, errReaderGap) {
		t.Fatalf("next after a skipped consumer sequence: %v; want errReaderGap", err)
	}
	r.close()

	rctx, cancel := context.WithCancel(ctx)
	r, err = cl.openSeqReader(rctx, cl.streams[0], 100) // past the end: nothing to read
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	_, _, err = r.next(time.Minute)
	if err == nil || errors.Is(err, nats.ErrTimeout) || rctx.Err() == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("next with its context cancelled after 200ms: %v after %s", err, time.Since(start))
	}
}
