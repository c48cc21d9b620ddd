package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/edgetables/edgetables/manager"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// Limits of the dead-letter stream.
const (
	// DeadLetterMaxAge is how long dead letters are kept.
	DeadLetterMaxAge = 7 * 24 * time.Hour
	// DeadLetterMaxBytes caps the dead-letter stream; beyond it the oldest
	// dead letters are dropped.
	DeadLetterMaxBytes = 256 << 20
	// maxReasonLen caps the Edgetables-Reason header.
	maxReasonLen = 4096
)

// DeadLetters implements manager.DeadLetters on the stream <app>_dlq.
type DeadLetters struct {
	js  natsjs.JetStream
	app string
}

var _ manager.DeadLetters = (*DeadLetters)(nil)

// NewDeadLetters creates the stream <app>_dlq with subjects <app>.dlq.>, or
// updates it: file storage, messages kept 7 days and at most 256 MiB in
// total, the oldest dropped first (Discard old) so a flood of bad events
// never blocks the app, and the default 2-minute duplicate window that
// drops a dead letter sent again after a redelivery. replicas <= 0 means 1.
func NewDeadLetters(ctx context.Context, js natsjs.JetStream, app string, replicas int) (*DeadLetters, error) {
	if err := ValidateApp(app); err != nil {
		return nil, err
	}
	if replicas <= 0 {
		replicas = 1
	}
	name := DeadLetterStream(app)
	_, err := ensureStream(ctx, js, natsjs.StreamConfig{
		Name:        name,
		Description: "edgetables dead letters of app " + app,
		Subjects:    DeadLetterSubjects(app),
		Retention:   natsjs.LimitsPolicy,
		Storage:     natsjs.FileStorage,
		Replicas:    replicas,
		MaxMsgs:     -1,
		MaxBytes:    DeadLetterMaxBytes,
		MaxAge:      DeadLetterMaxAge,
		Discard:     natsjs.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("edgetables/jetstream: create or update stream %s: %w", name, err)
	}
	return &DeadLetters{js: js, app: app}, nil
}

// Send publishes dl to <app>.dlq.<agent> and returns once it is stored (one
// round trip). The message keeps the original payload and headers, except
// that the original's Nats-* headers, which would steer this publish (for
// example Nats-Expected-Last-Sequence or Nats-Msg-Id), are renamed with the
// prefix Edgetables-Orig-. It adds Edgetables-Agent, Edgetables-Reason
// (line breaks replaced by spaces, cut to 4 KiB), Edgetables-Source-Subject,
// Edgetables-Source-Seq, and Nats-Msg-Id "<agent>-<seq>", so sending the
// same message again within the duplicate window stores it once.
func (d *DeadLetters) Send(ctx context.Context, dl manager.DeadLetter) error {
	if err := ValidateToken("agent", dl.Agent); err != nil {
		return fmt.Errorf("edgetables/jetstream: dead letter of source sequence %d: %w", dl.Message.Seq, err)
	}
	h := make(nats.Header, len(dl.Message.Header)+5)
	for k, vs := range dl.Message.Header {
		if strings.HasPrefix(strings.ToLower(k), "nats-") {
			k = HeaderOrigPrefix + k
		}
		h[k] = append([]string(nil), vs...)
	}
	reason := strings.NewReplacer("\r", " ", "\n", " ").Replace(dl.Reason)
	if len(reason) > maxReasonLen {
		reason = strings.ToValidUTF8(reason[:maxReasonLen], "")
	}
	seq := strconv.FormatUint(dl.Message.Seq, 10)
	h.Set(HeaderAgent, dl.Agent)
	h.Set(HeaderReason, reason)
	h.Set(HeaderSourceSubject, dl.Message.Subject)
	h.Set(HeaderSourceSeq, seq)
	subj := DeadLetterSubject(d.app, dl.Agent)
	m := &nats.Msg{Subject: subj, Header: h, Data: dl.Message.Data}
	_, err := d.js.PublishMsg(ctx, m, natsjs.WithMsgID(dl.Agent+"-"+seq))
	if errors.Is(err, nats.ErrMaxPayload) {
		// An event refused for its size may not fit with the dead
		// letter's headers: the reason and origin go without the data.
		h.Set(HeaderDataOmitted, strconv.Itoa(len(dl.Message.Data)))
		m.Data = nil
		_, err = d.js.PublishMsg(ctx, m, natsjs.WithMsgID(dl.Agent+"-"+seq))
	}
	if err != nil {
		return fmt.Errorf("edgetables/jetstream: dead letter of source sequence %d to %s: %w", dl.Message.Seq, subj, err)
	}
	return nil
}
