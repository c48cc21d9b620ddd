package jetstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/manager/port"
)

// GlobalConfig configures the stream of an app's global tables.
type GlobalConfig struct {
	// App is the app name (see ValidateApp). Required.
	App string
	// Replicas is the stream's replication factor. Default 1.
	Replicas int
	// TombstoneTTL, if positive, is how long a deleted key's tombstone
	// stays in the stream (see ChangelogConfig.TombstoneTTL). Default 0:
	// kept for ever.
	TombstoneTTL time.Duration
}

// GlobalLog implements port.GlobalLog with one JetStream stream,
// <app>_global, holding every global table's records on subjects
// <app>.global.<table>.<keytoken>, compacted like a partition's changelog
// (MaxMsgsPerSubject 1). Any node may write: the stream's order is the one
// order every replica applies. It is safe for concurrent use.
type GlobalLog struct {
	js  natsjs.JetStream
	app string
	// log reads the stream as a changelog of one partition.
	log *Changelog
}

var _ port.GlobalLog = (*GlobalLog)(nil)

// NewGlobalLog creates the app's global stream, or updates it to the
// configuration below if it exists: file storage, MaxMsgsPerSubject 1,
// Discard old, no limits.
func NewGlobalLog(ctx context.Context, js natsjs.JetStream, cfg GlobalConfig) (*GlobalLog, error) {
	if err := ValidateApp(cfg.App); err != nil {
		return nil, err
	}
	cfg.Replicas = max(cfg.Replicas, 1)
	name := GlobalStream(cfg.App)
	sc := natsjs.StreamConfig{
		Name:              name,
		Description:       fmt.Sprintf("edgetables global tables of app %s", cfg.App),
		Subjects:          []string{globalPrefix(cfg.App) + ">"},
		Retention:         natsjs.LimitsPolicy,
		Storage:           natsjs.FileStorage,
		Replicas:          cfg.Replicas,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgsPerSubject: 1,
		Discard:           natsjs.DiscardOld,
		AllowMsgTTL:       true, // tombstones expire (TombstoneTTL)
	}
	if _, err := ensureStream(ctx, js, sc); err != nil {
		return nil, fmt.Errorf("edgetables/jetstream: create or update stream %s: %w", name, err)
	}
	return &GlobalLog{js: js, app: cfg.App, log: &Changelog{
		js:       js,
		cfg:      ChangelogConfig{App: cfg.App, Partitions: 1, Replicas: cfg.Replicas, TombstoneTTL: cfg.TombstoneTTL},
		streams:  []string{name},
		prefixes: []string{globalPrefix(cfg.App)},
		commits:  []string{""}, // no commit markers: no subject matches
	}}, nil
}

// Stream returns the name of the global stream.
func (g *GlobalLog) Stream() string { return GlobalStream(g.app) }

// Subjects returns the subjects holding table's records:
// "<app>.global.<table>.>".
func (g *GlobalLog) Subjects(table string) []string { return GlobalTableSubjects(g.app, table) }

// State returns the stream's first and last sequences and its epoch (see
// Changelog.State). It fails with ErrLeaderless while a replicated stream
// elects its leader.
func (g *GlobalLog) State(ctx context.Context) (port.LogState, error) {
	return g.log.State(ctx, 0)
}

// Put publishes rec and returns its sequence once the stream stored it.
// With expect set, the message carries Nats-Expected-Last-Subject-Sequence:
// the server stores it only if the key's subject last changed at *expect
// (0: never), else Put fails with an error wrapping port.ErrConflict.
// Replicated streams also refuse a check while another write to the same
// subject is in flight; that is a conflict too.
func (g *GlobalLog) Put(ctx context.Context, rec port.Record, expect *uint64) (uint64, error) {
	if err := ValidateToken("table", rec.Table); err != nil {
		return 0, fmt.Errorf("edgetables/jetstream: put to global table: %w", err)
	}
	if len(rec.Key) > MaxKeyLen {
		return 0, fmt.Errorf("%w: put to global table %s: %d bytes (max %d)", ErrKeyTooLong, rec.Table, len(rec.Key), MaxKeyLen)
	}
	msg := &nats.Msg{Subject: GlobalSubject(g.app, rec.Table, rec.Key), Header: make(nats.Header, 2)}
	if rec.Delete {
		msg.Header.Set(HeaderOp, OpDelete)
		if ttl := g.log.cfg.TombstoneTTL; ttl > 0 {
			msg.Header.Set(natsjs.MsgTTLHeader, ttlHeader(ttl))
		}
	} else {
		msg.Data = rec.Value
	}
	var opts []natsjs.PublishOpt
	if expect != nil {
		opts = append(opts, natsjs.WithExpectLastSequencePerSubject(*expect))
	}
	ack, err := g.js.PublishMsg(ctx, msg, opts...)
	if err != nil {
		var apiErr *natsjs.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == natsjs.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == natsjs.JSErrCodeStreamWrongLastSequenceConstant) {
			return 0, fmt.Errorf("%w: global table %s (stream %s): %w", port.ErrConflict, rec.Table, g.Stream(), err)
		}
		return 0, fmt.Errorf("edgetables/jetstream: put to global table %s (stream %s): %w", rec.Table, g.Stream(), err)
	}
	return ack.Sequence, nil
}

// Replay reads the stream from sequence from up to and including until (see
// Changelog.Replay).
func (g *GlobalLog) Replay(ctx context.Context, from, until uint64, batchSize int, fn func([]port.Entry) error) error {
	return g.log.Replay(ctx, 0, from, until, batchSize, fn)
}

// Follow reads the stream from sequence from and keeps reading as it grows
// (see Changelog.Follow).
func (g *GlobalLog) Follow(ctx context.Context, from uint64, batchSize int, fn func([]port.Entry) error) error {
	return g.log.Follow(ctx, 0, from, batchSize, fn)
}
