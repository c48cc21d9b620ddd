package jetstream_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
	"github.com/edgetables/edgetables/manager/port"
)

func TestDeadLetters(t *testing.T) {
	_, _, js := jstest.Start(t)
	ctx := testCtx(t)
	dlq, err := jetstream.NewDeadLetters(ctx, js, app, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jetstream.NewDeadLetters(ctx, js, app, 1); err != nil { // idempotent
		t.Fatal(err)
	}
	dl := port.DeadLetter{
		Agent:  "counter",
		Reason: "bad event:\r\nnot JSON",
		Message: port.SourceMessage{
			Seq:     17,
			Subject: "in.orders",
			Header: map[string][]string{
				"X-Trace":                     {"t1", "t2"},
				"Nats-Msg-Id":                 {"orig-id"},
				"Nats-Expected-Last-Sequence": {"3"},
			},
			Data: []byte("{oops"),
			Time: time.Now(),
		},
	}
	for range 2 { // the second send is a duplicate
		if err := dlq.Send(ctx, dl); err != nil {
			t.Fatal(err)
		}
	}
	st, err := js.Stream(ctx, jetstream.DeadLetterStream(app))
	if err != nil {
		t.Fatal(err)
	}
	info := st.CachedInfo()
	if info.State.Msgs != 1 {
		t.Errorf("%d dead letters stored, want 1", info.State.Msgs)
	}
	if c := info.Config; c.MaxAge != jetstream.DeadLetterMaxAge || c.MaxBytes != jetstream.DeadLetterMaxBytes || c.Discard != natsjs.DiscardOld {
		t.Errorf("stream config = %+v", c)
	}
	m, err := st.GetLastMsgForSubject(ctx, jetstream.DeadLetterSubject(app, "counter"))
	if err != nil {
		t.Fatal(err)
	}
	h := m.Header
	want := map[string]string{
		jetstream.HeaderAgent:                         "counter",
		jetstream.HeaderReason:                        "bad event:  not JSON",
		jetstream.HeaderSourceSubject:                 "in.orders",
		jetstream.HeaderSourceSeq:                     "17",
		"Nats-Msg-Id":                                 "counter-17",
		"Edgetables-Orig-Nats-Msg-Id":                 "orig-id",
		"Edgetables-Orig-Nats-Expected-Last-Sequence": "3",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if got := h.Values("X-Trace"); len(got) != 2 || got[0] != "t1" || got[1] != "t2" {
		t.Errorf("X-Trace = %q", got)
	}
	if string(m.Data) != "{oops" {
		t.Errorf("data = %q", m.Data)
	}
	dl.Agent = "a.b"
	if err := dlq.Send(ctx, dl); !errors.Is(err, jetstream.ErrBadName) {
		t.Errorf("agent with a dot: %v", err)
	}
}

// TestDeadLetterWithLargeHeaders: an event whose headers the source
// stream took (just under JetStream's 64 KiB) is stored as a dead letter
// without them, saying their size, whether sent or enqueued; an event's
// own Edgetables-* header does not pass for the dead letter's.
func TestDeadLetterWithLargeHeaders(t *testing.T) {
	_, _, js := jstest.Start(t)
	ctx := testCtx(t)
	dlq, err := jetstream.NewDeadLetters(ctx, js, app, 0)
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("p", 65300)
	for i, send := range []func(port.DeadLetter) error{
		func(dl port.DeadLetter) error { return dlq.Send(ctx, dl) },
		func(dl port.DeadLetter) error {
			if err := dlq.Enqueue(ctx, dl); err != nil {
				return err
			}
			return dlq.Flush(ctx)
		},
	} {
		agent := fmt.Sprintf("t%d", i)
		err := send(port.DeadLetter{Agent: agent, Reason: "not JSON",
			Message: port.SourceMessage{Seq: 5, Subject: "in.x", Header: map[string][]string{"X-Pad": {pad}}, Data: []byte("x")}})
		if err != nil {
			t.Fatal(err)
		}
		st, err := js.Stream(ctx, jetstream.DeadLetterStream(app))
		if err != nil {
			t.Fatal(err)
		}
		m, err := st.GetLastMsgForSubject(ctx, jetstream.DeadLetterSubject(app, agent))
		if err != nil {
			t.Fatalf("%s: the dead letter was not stored: %v", agent, err)
		}
		if m.Header.Get("X-Pad") != "" || m.Header.Get(jetstream.HeaderHeadersOmitted) != "65309" || string(m.Data) != "x" {
			t.Errorf("%s: X-Pad %d bytes, omitted %q, data %q", agent, len(m.Header.Get("X-Pad")), m.Header.Get(jetstream.HeaderHeadersOmitted), m.Data)
		}
	}

	forged := port.DeadLetter{Agent: "f", Reason: "r", Message: port.SourceMessage{Seq: 6, Subject: "in.x",
		Header: map[string][]string{jetstream.HeaderDataOmitted: {"999"}}, Data: []byte("y")}}
	if err := dlq.Send(ctx, forged); err != nil {
		t.Fatal(err)
	}
	st, _ := js.Stream(ctx, jetstream.DeadLetterStream(app))
	m, err := st.GetLastMsgForSubject(ctx, jetstream.DeadLetterSubject(app, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get(jetstream.HeaderDataOmitted) != "" || m.Header.Get(jetstream.HeaderOrigPrefix+jetstream.HeaderDataOmitted) != "999" {
		t.Errorf("forged header: %v", m.Header)
	}
	back, err := jetstream.DecodeDeadLetter(&nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data})
	if err != nil || back.Message.Header[jetstream.HeaderDataOmitted][0] != "999" || string(back.Message.Data) != "y" {
		t.Errorf("decoded %+v, %v", back, err)
	}
}

// TestDeadLetterStreamNearlyFull: a send that finds the dead-letter
// stream at 90% of its size or more warns that older dead letters are now
// dropped (they were dropped without a word).
func TestDeadLetterStreamNearlyFull(t *testing.T) {
	_, _, js := jstest.Start(t)
	var logs syncBuffer
	ctx := jetstream.WithLogger(testCtx(t), slog.New(slog.NewTextHandler(&logs, nil)))
	d, err := jetstream.NewDeadLetterQueue(ctx, js, jetstream.DeadLetterConfig{App: app, MaxBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	send := func(seq uint64) {
		t.Helper()
		dl := port.DeadLetter{Agent: "t", Reason: "r", Message: port.SourceMessage{Seq: seq, Subject: "in.x", Data: bytes.Repeat([]byte("x"), 1000)}}
		if err := d.Send(ctx, dl); err != nil {
			t.Fatal(err)
		}
	}
	for seq := range uint64(40) { // 40 KB: not nearly full
		send(seq + 1)
		jetstream.ForgetFullCheck(d)
	}
	if strings.Contains(logs.String(), "nearly full") {
		t.Fatalf("warned at 40 of 64 KB:\n%s", logs.String())
	}
	for seq := range uint64(40) { // beyond 64 KB: the oldest are dropped
		send(seq + 41)
	}
	if n := strings.Count(logs.String(), "dead-letter stream nearly full"); n != 0 {
		t.Fatalf("warned %d times within a minute of the last look", n)
	}
	jetstream.ForgetFullCheck(d)
	send(81)
	if !strings.Contains(logs.String(), "dead-letter stream nearly full") {
		t.Fatalf("no warning with the stream full:\n%s", logs.String())
	}
}
