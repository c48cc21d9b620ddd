package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/edgetables/edgetables/manager/port"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// Limits of the dead-letter stream.
const (
	// DeadLetterMaxAge is how long dead letters are kept.
	DeadLetterMaxAge = 7 * 24 * time.Hour
	// DeadLetterMaxBytes is the default cap of the dead-letter stream
	// (DeadLetterConfig.MaxBytes); beyond it the oldest dead letters are
	// dropped.
	DeadLetterMaxBytes = 256 << 20
	// maxReasonLen caps the Edgetables-Reason header.
	maxReasonLen = 4096
	// maxOrigHeaderLen caps the original headers a dead letter keeps:
	// JetStream refuses a message whose headers pass 64 KiB, which the
	// source stream may have taken with the event's alone.
	maxOrigHeaderLen = 48 << 10
)

// DeadLetters implements port.DeadLetterQueue on the stream <app>_dlq.
type DeadLetters struct {
	js  natsjs.JetStream
	app string
	// async publishes what Enqueue sends, on a JetStream context of its
	// own, so that Flush waits for dead letters only.
	async natsjs.JetStream
	// lastErrLog rate-limits the log of failed asynchronous sends, which
	// go to log (the logger of NewDeadLetters' context, see WithLogger).
	lastErrLog atomic.Int64
	failed     atomic.Int64 // failed asynchronous sends not yet logged
	log        *slog.Logger
	// lastFullCheck rate-limits the look at the stream's size after a
	// send (fullCheckEvery).
	lastFullCheck atomic.Int64
}

// fullCheckEvery is how often, at most, a send looks at the dead-letter
// stream's size; fullShare is the share of its MaxBytes it warns at.
const (
	fullCheckEvery = time.Minute
	fullShare      = 0.9
)

var _ port.DeadLetterQueue = (*DeadLetters)(nil)

// maxPendingDeadLetters bounds the dead letters sent and not yet
// acknowledged; Enqueue waits beyond it.
const maxPendingDeadLetters = 4096

// DeadLetterConfig configures an app's dead-letter stream.
type DeadLetterConfig struct {
	// App is the app name (see ValidateApp). Required.
	App string
	// Replicas is the stream's replication factor. Default 1.
	Replicas int
	// MaxBytes caps the stream; beyond it the oldest dead letters are
	// dropped. The server reserves it from its storage limit
	// (ServerConfig.MaxStore) when the stream is created. Default
	// DeadLetterMaxBytes.
	MaxBytes int64
}

// NewDeadLetters is NewDeadLetterQueue with the default size limit.
func NewDeadLetters(ctx context.Context, js natsjs.JetStream, app string, replicas int) (*DeadLetters, error) {
	return NewDeadLetterQueue(ctx, js, DeadLetterConfig{App: app, Replicas: replicas})
}

// NewDeadLetterQueue creates the stream <app>_dlq with subjects <app>.dlq.>,
// or updates it: file storage, messages kept 7 days and at most
// cfg.MaxBytes in total, the oldest dropped first (Discard old) so a flood
// of bad events never blocks the app, and the default 2-minute duplicate
// window that drops a dead letter sent again after a redelivery.
func NewDeadLetterQueue(ctx context.Context, js natsjs.JetStream, cfg DeadLetterConfig) (*DeadLetters, error) {
	app, replicas := cfg.App, cfg.Replicas
	if err := ValidateApp(app); err != nil {
		return nil, err
	}
	if replicas <= 0 {
		replicas = 1
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DeadLetterMaxBytes
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
		MaxBytes:    cfg.MaxBytes,
		MaxAge:      DeadLetterMaxAge,
		Discard:     natsjs.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("edgetables/jetstream: create or update stream %s: %w", name, err)
	}
	d := &DeadLetters{js: js, app: app, log: loggerFrom(ctx)}
	d.async, err = natsjs.New(js.Conn(), natsjs.WithPublishAsyncMaxPending(maxPendingDeadLetters),
		natsjs.WithPublishAsyncErrHandler(func(_ natsjs.JetStream, m *nats.Msg, err error) { d.asyncFailed(m, err) }))
	if err != nil {
		return nil, fmt.Errorf("edgetables/jetstream: dead letters of %s: %w", app, err)
	}
	return d, nil
}

// asyncFailed logs a dead letter whose asynchronous send failed, at most
// once every 10 s.
func (d *DeadLetters) asyncFailed(m *nats.Msg, err error) {
	d.failed.Add(1)
	now := time.Now().UnixNano()
	last := d.lastErrLog.Load()
	if now-last < int64(10*time.Second) || !d.lastErrLog.CompareAndSwap(last, now) {
		return
	}
	d.log.Error("dead-letter publish failed: the refused event is only in the source stream (until trimmed) and in the node's log",
		"app", d.app, "subject", m.Subject, "agent", m.Header.Get(HeaderAgent), "source_seq", m.Header.Get(HeaderSourceSeq),
		"failed_since_last_log", d.failed.Swap(0), "err", err)
}

// Send publishes dl to <app>.dlq.<agent> and returns once it is stored (one
// round trip). The message keeps the original payload and headers, except
// that the original's Nats-* headers, which would steer this publish (for
// example Nats-Expected-Last-Sequence or Nats-Msg-Id), are renamed with the
// prefix Edgetables-Orig-. It adds Edgetables-Agent, Edgetables-Reason
// (line breaks replaced by spaces, cut to 4 KiB), Edgetables-Source-Subject,
// Edgetables-Source-Seq, Edgetables-Version (DeadLetterVersion), and Nats-Msg-Id "<agent>-<seq>", so sending the
// same message again within the duplicate window stores it once.
func (d *DeadLetters) Send(ctx context.Context, dl port.DeadLetter) error {
	m, id, err := d.message(dl)
	if err != nil {
		return err
	}
	_, err = d.js.PublishMsg(ctx, m, natsjs.WithMsgID(id))
	if errors.Is(err, nats.ErrMaxPayload) {
		omitData(m, dl)
		_, err = d.js.PublishMsg(ctx, m, natsjs.WithMsgID(id))
	}
	if err != nil {
		return fmt.Errorf("edgetables/jetstream: dead letter of source sequence %d to %s: %w", dl.Message.Seq, m.Subject, err)
	}
	d.checkFull(ctx)
	return nil
}

// checkFull warns, at most once every fullCheckEvery, when the stream is
// nearly full: from then on each new dead letter drops the oldest ones.
func (d *DeadLetters) checkFull(ctx context.Context) {
	now := time.Now().UnixNano()
	last := d.lastFullCheck.Load()
	if now-last < int64(fullCheckEvery) || !d.lastFullCheck.CompareAndSwap(last, now) {
		return
	}
	st, err := d.js.Stream(ctx, DeadLetterStream(d.app))
	if err != nil {
		return // the next send looks again
	}
	info := st.CachedInfo()
	if max := info.Config.MaxBytes; max > 0 && float64(info.State.Bytes) >= fullShare*float64(max) {
		d.log.Warn("dead-letter stream nearly full: each new dead letter now drops the oldest ones; read and remove them, or raise --max-store",
			"app", d.app, "stream", info.Config.Name, "bytes", info.State.Bytes, "max_bytes", max, "dead_letters", info.State.Msgs,
			"first_seq", info.State.FirstSeq)
	}
}

// Enqueue is Send without waiting for the dead letter to be stored: at
// most 4,096 are unacknowledged at a time, and Enqueue waits while that
// many are (it never drops one). A send that fails later is logged (at
// most once every 10 s); the event stays in the source stream until it is
// trimmed.
func (d *DeadLetters) Enqueue(ctx context.Context, dl port.DeadLetter) error {
	m, id, err := d.message(dl)
	if err != nil {
		return err
	}
	for omitted := false; ; {
		_, err = d.async.PublishMsgAsync(m, natsjs.WithMsgID(id), natsjs.WithStallWait(time.Second))
		if errors.Is(err, nats.ErrMaxPayload) && !omitted {
			omitData(m, dl)
			omitted = true
			continue
		}
		if !errors.Is(err, natsjs.ErrTooManyStalledMsgs) || ctx.Err() != nil {
			break
		}
		m, _, _ = d.message(dl) // a fresh message: the headers were set
		if omitted {
			omitData(m, dl)
		}
	}
	if err != nil {
		return fmt.Errorf("edgetables/jetstream: dead letter of source sequence %d to %s: %w", dl.Message.Seq, m.Subject, err)
	}
	return nil
}

// Flush waits until every dead letter enqueued so far is stored or has
// failed, or ctx ends.
func (d *DeadLetters) Flush(ctx context.Context) error {
	select {
	case <-d.async.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("edgetables/jetstream: flush dead letters of %s: %w", d.app, ctx.Err())
	}
}

// lineBreaks replaces line breaks in a dead letter's reason.
var lineBreaks = strings.NewReplacer("\r", " ", "\n", " ")

// message builds dl's message and its message id.
func (d *DeadLetters) message(dl port.DeadLetter) (*nats.Msg, string, error) {
	if err := ValidateToken("agent", dl.Agent); err != nil {
		return nil, "", fmt.Errorf("edgetables/jetstream: dead letter of source sequence %d: %w", dl.Message.Seq, err)
	}
	h := make(nats.Header, len(dl.Message.Header)+5)
	if n := headerLen(dl.Message.Header); n > maxOrigHeaderLen {
		h.Set(HeaderHeadersOmitted, strconv.Itoa(n))
	} else {
		for k, vs := range dl.Message.Header {
			if l := strings.ToLower(k); strings.HasPrefix(l, "nats-") || strings.HasPrefix(l, "edgetables-") {
				k = HeaderOrigPrefix + k
			}
			h[k] = append([]string(nil), vs...)
		}
	}
	reason := lineBreaks.Replace(dl.Reason)
	if len(reason) > maxReasonLen {
		reason = strings.ToValidUTF8(reason[:maxReasonLen], "")
	}
	seq := strconv.FormatUint(dl.Message.Seq, 10)
	h.Set(HeaderAgent, dl.Agent)
	h.Set(HeaderReason, reason)
	h.Set(HeaderSourceSubject, dl.Message.Subject)
	h.Set(HeaderSourceSeq, seq)
	h.Set(HeaderVersion, strconv.Itoa(DeadLetterVersion))
	return &nats.Msg{Subject: DeadLetterSubject(d.app, dl.Agent), Header: h, Data: dl.Message.Data}, dl.Agent + "-" + seq, nil
}

// headerLen is about the size of h on the wire.
func headerLen(h nats.Header) int {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4 // ": " and CRLF
		}
	}
	return n
}

// omitData leaves the event's data out of m: an event refused for its size
// may not fit with the dead letter's headers; the reason and origin go
// without it.
func omitData(m *nats.Msg, dl port.DeadLetter) {
	m.Header.Set(HeaderDataOmitted, strconv.Itoa(len(dl.Message.Data)))
	m.Data = nil
}

// DecodeDeadLetter reads back a dead letter stored by Send or Enqueue (of
// this or an earlier version: one without Edgetables-Version is version 1)
// from its subject, headers and data: the agent, the reason, and the
// refused message with its source subject, sequence, original headers
// (the Edgetables-Orig- prefix removed) and data (nil when the dead letter
// says it was omitted; the header keeps its size). The source message's
// time is not recorded.
func DecodeDeadLetter(m *nats.Msg) (port.DeadLetter, error) {
	if m == nil || m.Header == nil {
		return port.DeadLetter{}, errors.New("edgetables/jetstream: dead letter without headers")
	}
	if err := headerVersion("dead letter", m.Header.Get(HeaderVersion), DeadLetterVersion); err != nil {
		return port.DeadLetter{}, err
	}
	seq, err := strconv.ParseUint(m.Header.Get(HeaderSourceSeq), 10, 64)
	if err != nil {
		return port.DeadLetter{}, fmt.Errorf("edgetables/jetstream: dead letter on %s: %s: %w", m.Subject, HeaderSourceSeq, err)
	}
	dl := port.DeadLetter{
		Agent:  m.Header.Get(HeaderAgent),
		Reason: m.Header.Get(HeaderReason),
		Message: port.SourceMessage{
			Seq: seq, Subject: m.Header.Get(HeaderSourceSubject), Data: m.Data,
		},
	}
	for k, vs := range m.Header {
		switch k {
		case HeaderAgent, HeaderReason, HeaderSourceSubject, HeaderSourceSeq, HeaderVersion, HeaderDataOmitted, HeaderHeadersOmitted,
			"Nats-Msg-Id", "Nats-Expected-Stream":
			continue
		}
		if dl.Message.Header == nil {
			dl.Message.Header = map[string][]string{}
		}
		dl.Message.Header[strings.TrimPrefix(k, HeaderOrigPrefix)] = append([]string(nil), vs...)
	}
	return dl, nil
}
