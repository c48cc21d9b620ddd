package jetstream_test

import (
	"errors"
	"testing"
	"time"

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
