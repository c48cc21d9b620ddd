package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgetables/edgetables/manager/port"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// Defaults of ChangelogConfig.
const (
	// DefaultReplayBatch is the batch size Replay uses when asked for 0.
	DefaultReplayBatch = 1000
)

// replayPull is how many messages a replay asks the server for at a time
// (and buffers), with a byte cap per pull request.
const (
	replayPull      = 8192
	replayPullBytes = 64 << 20
)

// replayIdle is how long Replay waits for a message before it checks
// whether the log still holds any it has not read.
const replayIdle = 2 * time.Second

// replayFirstIdle is how long Replay waits for a new consumer's first
// message before that check, doubled at each consumer it replaced (up to
// replayIdle). Right after a node died, a consumer created on a live
// server has delivered nothing at all, in some of the failover
// benchmark's kills, until it was replaced: partitions without a standby
// then served 2–6 s late, one idle wait per consumer.
const replayFirstIdle = 500 * time.Millisecond

// replayWait is how long Replay waits for the next message of a consumer
// that delivered delivered messages, after reopens replacements.
func replayWait(delivered uint64, reopens int) time.Duration {
	if delivered > 0 {
		return replayIdle
	}
	return min(replayIdle, replayFirstIdle<<min(reopens, 8))
}

// stateAttempts are the timeouts of State's requests, each sent when the
// one before went unanswered or only a replica answered (see streamInfo).
// A request sent while the stream has no leader (its leader's node died
// and the others elect one, which takes seconds) is never answered, even
// once a leader is elected; short timeouts send the next one soon after
// the election, which is when a promoted standby can serve. The last ones
// are long enough for a busy server.
var stateAttempts = []time.Duration{
	500 * time.Millisecond, 500 * time.Millisecond, 500 * time.Millisecond, 500 * time.Millisecond,
	500 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second,
}

// consumerDropTimeout bounds the deletion of a replay's or follower's
// consumer.
const consumerDropTimeout = 2 * time.Second

// dropConsumer deletes cons, a consumer of stream that a replay or
// a follower is done with, in the background: its caller does not wait for
// the answer, which does not come while the stream has no leader (after
// its leader's node died, when standbys are promoted), and would hold up a
// promotion for consumerDropTimeout. The deletion ends with that timeout,
// or at once when the connection closes; Close waits for it. A consumer
// not deleted expires after its InactiveThreshold.
func (c *Changelog) dropConsumer(stream string, cons natsjs.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	c.drops.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), consumerDropTimeout)
		defer cancel()
		_ = c.js.DeleteConsumer(ctx, stream, info.Name)
	})
}

// logger returns cfg.Logger, or slog.Default() without one (the global
// log's Changelog is built without NewChangelog).
func (c *Changelog) logger() *slog.Logger {
	if c.cfg.Logger != nil {
		return c.cfg.Logger
	}
	return slog.Default()
}

// Close waits for the deletions of replay and follower consumers still in
// flight (each at most consumerDropTimeout). Call it when no Replay or
// Follow runs any more, before closing the connection.
func (c *Changelog) Close() {
	c.drops.Wait()
}

// firstAtOrAfter returns the sequence of partition p's first stored message
// at or after seq (0: none), with one message get, which the stream's
// leader answers (its streams do not allow direct gets from replicas).
func (c *Changelog) firstAtOrAfter(ctx context.Context, p int, seq uint64) (uint64, error) {
	st, err := c.js.Stream(ctx, c.streams[p])
	if err != nil {
		return 0, fmt.Errorf("edgetables/jetstream: stream %s: %w", c.streams[p], err)
	}
	msg, err := st.GetMsg(ctx, seq, natsjs.WithGetMsgSubject(c.cfg.App+".>"))
	if errors.Is(err, natsjs.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("edgetables/jetstream: stream %s: first message at or after %d: %w", c.streams[p], seq, err)
	}
	return msg.Sequence, nil
}

// FirstStored returns the sequence of the first message stored in
// partition p's log at or after seq, as the stream's leader holds it; 0
// when none is.
func (c *Changelog) FirstStored(ctx context.Context, p int, seq uint64) (uint64, error) {
	if err := c.checkPartition(p); err != nil {
		return 0, err
	}
	return c.firstAtOrAfter(ctx, p, max(seq, 1))
}

// ChangelogConfig configures an app's changelog streams.
type ChangelogConfig struct {
	// App is the app name (see ValidateApp). Required.
	App string
	// Partitions is the number of partitions, one stream each. Required.
	Partitions int
	// Replicas is the replication factor of each stream. Default 1.
	Replicas int
	// MaxBytes caps each partition's stream in bytes; beyond it the oldest
	// messages are dropped (Discard old), which loses data. Default -1,
	// unlimited: compaction bounds the size by the number of live keys.
	MaxBytes int64
	// Atomic makes every Append one JetStream atomic batch (records and
	// marker stored all or none; at most MaxBatch messages): the
	// exactly-once mode. Each batch costs the server a staging store and an
	// fsync, about 3 ms plus 10 µs a message on the reference machine.
	// Without it (at least once), an Append to a stream of one replica is
	// one JetStream fast batch, whose messages the server stores as they
	// arrive: a failure may leave a commit's first records stored without
	// the marker. Replicated streams, and streams that refuse fast batches
	// (a server before 2.14, or AllowBatchPublish turned off), take atomic
	// batches of MaxBatch messages instead, with the same outcome.
	Atomic bool
	// TombstoneTTL, if positive, is how long a tombstone (a deleted key)
	// stays in the log: the server removes it then (Nats-TTL), so deleted
	// keys do not accumulate for ever. Tombstones given their own TTL
	// (port.Record.TTL: closed windows) keep it. With it, State reports
	// TombstonesFrom, and a store that may have missed an expired
	// tombstone is rebuilt by a full replay. Default 0: kept for ever.
	TombstoneTTL time.Duration
	// MaxBatch is the most messages one atomic batch may hold, as wanted:
	// NewChangelog asks each stream's leader (one request each) and lowers
	// it to what that server accepts (its max_batch_size; see
	// Changelog.MaxBatch). Set it above MaxAtomicBatch only when every
	// server that may ever lead the streams accepts it: a server that
	// refuses a batch as too large later fails that Append
	// (ErrBatchTooLarge, nothing stored), and an exactly-once commit cannot
	// be split. Default 0: MaxAtomicBatch, the servers' default, assumed
	// without asking (a new replicated stream's leader may still be in
	// its election).
	MaxBatch int
	// BeforeCommit, if set, is called before the commit message of each
	// batch of an Append (batch counts from 0 within the Append): a failure
	// injection point. An error abandons the batch and ends the Append with
	// that error: the server never stores an abandoned atomic batch, while
	// the messages of a fast batch sent before it are stored.
	BeforeCommit func(p, batch int) error
	// Logger gets what a read survives without an error: a replay's or
	// follower's consumer replaced (default slog.Default()).
	Logger *slog.Logger
}

// Changelog implements port.Changelog with one JetStream stream per
// partition (see the package documentation). It is safe for concurrent use;
// Append and Replay of different partitions run independently.
type Changelog struct {
	js  natsjs.JetStream
	cfg ChangelogConfig
	// per partition: stream name, record subject prefix, commit subject
	streams, prefixes, commits []string
	maxBatch                   int // messages per atomic batch
	// fast[p]: at-least-once Appends to partition p go as one fast batch
	// (the stream has one replica and allows them); else as atomic batches.
	fast []atomic.Bool
	// afterAdd, if set (tests), is called after message i of a fast batch
	// to partition p was published.
	afterAdd func(p, i int)
	drops    sync.WaitGroup // consumer deletions in flight
}

var _ port.Changelog = (*Changelog)(nil)

// NewChangelog creates every partition's stream, or updates it to the
// configuration below if it exists, so it is idempotent. Streams: file
// storage, MaxMsgsPerSubject 1 (compaction), Discard old, AllowAtomicPublish,
// AllowBatchPublish (fast batches), AllowMsgTTL (records with a TTL carry
// Nats-TTL), the server's default duplicate window (2 min). A stream created
// by an older version, without AllowMsgTTL or AllowBatchPublish, gets them
// by the update: the server allows enabling AllowMsgTTL in place (it only
// refuses disabling it again), and AllowBatchPublish both ways. No SubjectDeleteMarkerTTL: an expired
// tombstone leaves nothing behind. It costs one request per partition.
func NewChangelog(ctx context.Context, js natsjs.JetStream, cfg ChangelogConfig) (*Changelog, error) {
	if err := ValidateApp(cfg.App); err != nil {
		return nil, err
	}
	if cfg.Partitions <= 0 {
		return nil, fmt.Errorf("edgetables/jetstream: changelog of %s: Partitions must be > 0, got %d", cfg.App, cfg.Partitions)
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = -1
	}
	if cfg.MaxBatch < 0 || cfg.MaxBatch == 1 {
		return nil, fmt.Errorf("edgetables/jetstream: changelog of %s: MaxBatch must be 0 (default) or at least 2, got %d", cfg.App, cfg.MaxBatch)
	}
	probe := cfg.MaxBatch != 0
	if !probe {
		cfg.MaxBatch = MaxAtomicBatch
	}
	c := &Changelog{js: js, cfg: cfg, maxBatch: cfg.MaxBatch, fast: make([]atomic.Bool, cfg.Partitions)}
	for p := 0; p < cfg.Partitions; p++ {
		name := ChangelogStream(cfg.App, p)
		sc := natsjs.StreamConfig{
			Name:               name,
			Description:        fmt.Sprintf("edgetables changelog of app %s, partition %d", cfg.App, p),
			Subjects:           ChangelogSubjects(cfg.App, p),
			Retention:          natsjs.LimitsPolicy,
			Storage:            natsjs.FileStorage,
			Replicas:           cfg.Replicas,
			MaxMsgs:            -1,
			MaxBytes:           cfg.MaxBytes,
			MaxMsgsPerSubject:  1,
			Discard:            natsjs.DiscardOld,
			AllowAtomicPublish: true,
			AllowBatchPublish:  true,
			AllowMsgTTL:        true,
		}
		st, err := ensureStream(ctx, js, sc)
		if err != nil {
			return nil, fmt.Errorf("edgetables/jetstream: create or update stream %s: %w", name, err)
		}
		if got := st.CachedInfo(); got != nil && !got.Config.AllowAtomicPublish {
			return nil, fmt.Errorf("edgetables/jetstream: stream %s: server did not enable atomic publish", name)
		}
		if got := st.CachedInfo(); got != nil && !got.Config.AllowMsgTTL {
			return nil, fmt.Errorf("edgetables/jetstream: stream %s: server did not enable per-message TTLs (needs nats-server 2.11 or later)", name)
		}
		// A server older than 2.14 knows no fast batches and leaves the
		// setting off: at-least-once Appends use atomic batches there. So
		// do replicated streams: a fast batch to a stream of three
		// replicas was seen to lose messages in flight (a gap, which ends
		// the batch with part of it stored) while a new cluster settled,
		// and the commit's retry was then fenced by the writer's own
		// records, so the partition was taken over again and its
		// uncommitted events counted twice.
		c.fast[p].Store(cfg.Replicas == 1 && st.CachedInfo() != nil && st.CachedInfo().Config.AllowBatchPublish)
		c.streams = append(c.streams, name)
		c.prefixes = append(c.prefixes, recordPrefix(cfg.App, p))
		c.commits = append(c.commits, CommitSubject(cfg.App, p))
	}
	if probe {
		c.learnMaxBatch(ctx)
	}
	return c, nil
}

// probeTimeout bounds one stream's atomic batch size probe.
const probeTimeout = 5 * time.Second

// learnMaxBatch lowers c.maxBatch to what every stream's leader accepts
// (see probeMaxBatch). A stream whose leader does not answer the probe
// leaves at most MaxAtomicBatch, the servers' default, logged.
func (c *Changelog) learnMaxBatch(ctx context.Context) {
	for p := range c.streams {
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		n, err := c.probeMaxBatch(pctx, p, c.maxBatch)
		cancel()
		if err != nil {
			n = min(c.maxBatch, MaxAtomicBatch)
			c.logger().Warn("atomic batch size unknown; assuming the servers' default", "partition", p, "stream", c.streams[p], "max_batch", n, "err", err)
		}
		if n < c.maxBatch {
			c.logger().Info("atomic batches limited by the server", "partition", p, "stream", c.streams[p], "wanted", c.maxBatch, "max_batch", n)
			c.maxBatch = n
		}
	}
}

// MaxBatch returns the most messages one atomic batch of an Append holds:
// ChangelogConfig.MaxBatch, lowered to what the streams' leaders accepted
// when NewChangelog asked them. An exactly-once commit holds at most
// MaxBatch-1 records (see CommitLimits).
func (c *Changelog) MaxBatch() int { return c.maxBatch }

// Subjects returns the subjects holding table's records in every partition:
// "<app>.changelog.*.<table>.>".
func (c *Changelog) Subjects(table string) []string { return TableSubjects(c.cfg.App, table) }

// Stream returns the name of partition p's stream.
func (c *Changelog) Stream(p int) string { return ChangelogStream(c.cfg.App, p) }

func (c *Changelog) checkPartition(p int) error {
	if p < 0 || p >= len(c.streams) {
		return fmt.Errorf("%w: %d of app %s (partitions: %d)", ErrBadPartition, p, c.cfg.App, len(c.streams))
	}
	return nil
}

// State returns partition p's first and last sequences and its epoch: the
// stream's creation time in UTC, RFC 3339 with nanoseconds. The epoch
// survives server restarts and changes when the stream is deleted and
// created again. One request.
func (c *Changelog) State(ctx context.Context, p int) (port.LogState, error) {
	if err := c.checkPartition(p); err != nil {
		return port.LogState{}, err
	}
	var (
		info *natsjs.StreamInfo
		err  error
	)
	for _, d := range stateAttempts {
		actx, cancel := context.WithTimeout(ctx, d)
		// The leader's answer: a replica's own state may lag (one that
		// restarted a moment ago, or one of a leaderless group), and a
		// recovery would then stop short of the log's end.
		info, err = streamInfoWaiting(actx, c.js, c.streams[p], "", confirmAfter)
		cancel()
		if errors.Is(err, ErrLeaderless) && c.leaderConfirms(ctx, p, info) {
			err = nil
		}
		if err == nil || ctx.Err() != nil || !(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, ErrLeaderless)) {
			break
		}
	}
	if err != nil {
		return port.LogState{}, fmt.Errorf("edgetables/jetstream: state of partition %d (stream %s): %w", p, c.streams[p], err)
	}
	state := port.LogState{
		First: info.State.FirstSeq,
		Last:  info.State.LastSeq,
		Epoch: epochOf(info),
	}
	if c.cfg.TombstoneTTL > 0 {
		if state.TombstonesFrom, err = tombstonesFrom(ctx, c.js.Conn(), c.streams[p], c.cfg.TombstoneTTL, state.Last); err != nil {
			return port.LogState{}, fmt.Errorf("state of partition %d: %w", p, err)
		}
	}
	return state, nil
}

// LastCommit returns the last commit marker in partition p's log and its
// sequence (ok false when the log holds none). The stream's leader answers
// (a lagging replica cannot): every source event up to the marker's
// SourceSeq has its effects in the log. Two requests.
func (c *Changelog) LastCommit(ctx context.Context, p int) (marker port.CommitMarker, seq uint64, ok bool, err error) {
	if err := c.checkPartition(p); err != nil {
		return marker, 0, false, err
	}
	st, err := c.js.Stream(ctx, c.streams[p])
	if err != nil {
		return marker, 0, false, fmt.Errorf("edgetables/jetstream: last commit of partition %d (stream %s): %w", p, c.streams[p], err)
	}
	msg, err := st.GetLastMsgForSubject(ctx, c.commits[p])
	if errors.Is(err, natsjs.ErrMsgNotFound) {
		return marker, 0, false, nil
	}
	if err != nil {
		return marker, 0, false, fmt.Errorf("edgetables/jetstream: last commit of partition %d (stream %s): %w", p, c.streams[p], err)
	}
	if marker, err = decodeMarker(msg.Data); err != nil {
		return marker, 0, false, fmt.Errorf("edgetables/jetstream: partition %d (stream %s) sequence %d: %w", p, c.streams[p], msg.Sequence, err)
	}
	return marker, msg.Sequence, true, nil
}

// Append writes recs and then marker to partition p and returns the
// marker's sequence. Every Append is fenced: it fails with an error
// wrapping port.ErrFenced, and stores nothing after another writer's
// messages, when the log does not end at expectLast or another writer
// appends meanwhile.
//
// With Atomic set (exactly once) the messages go as one JetStream atomic
// batch (else ErrBatchTooLarge) whose first message carries
// Nats-Expected-Last-Sequence, checked when the server commits the batch,
// against the stream as it is then: the records are stored all together
// with their marker, or not at all.
//
// Without it (at least once) they go, to a stream of one replica, as one
// JetStream fast batch (see appendFast): each message expects its predecessor's sequence, and the
// first refused ends the batch, so what is stored after an error is a
// prefix of the messages, right after expectLast. Pipelined single
// messages could not promise that (a paused writer's later messages, each
// expecting a sequence, may match a log another writer has grown
// meanwhile). A replicated stream, or one that refuses fast batches, gets
// atomic batches of at most MaxBatch messages, each waiting for its predecessor's
// acknowledgement, with the same outcome.
// Records are checked (table name, key length) before anything is sent.
//
// Appends to different partitions may run concurrently; a partition has one
// writer, and two concurrent Appends to the same partition fence each other.
// The marker is JSON on <app>.commit.<p>; a tombstone is an empty message
// with the header Edgetables-Op: del. A record with a TTL carries Nats-TTL
// (its TTL in whole seconds, rounded up): the server removes it once the
// TTL has passed.
func (c *Changelog) Append(ctx context.Context, p int, expectLast uint64, recs []port.Record, marker port.CommitMarker) (uint64, error) {
	if err := c.checkPartition(p); err != nil {
		return 0, err
	}
	for i := range recs {
		if err := ValidateToken("table", recs[i].Table); err != nil {
			return 0, fmt.Errorf("edgetables/jetstream: append to partition %d: record %d: %w", p, i, err)
		}
		if recs[i].TTL < 0 {
			return 0, fmt.Errorf("edgetables/jetstream: append to partition %d: record %d of table %s: negative TTL %s", p, i, recs[i].Table, recs[i].TTL)
		}
		if len(recs[i].Key) > MaxKeyLen {
			return 0, fmt.Errorf("%w: append to partition %d: record %d of table %s: %d bytes (max %d)", ErrKeyTooLong, p, i, recs[i].Table, len(recs[i].Key), MaxKeyLen)
		}
	}
	n := len(recs) + 1
	if c.cfg.Atomic && n > c.maxBatch {
		return 0, fmt.Errorf("%w: partition %d: %d messages (max %d)", ErrBatchTooLarge, p, n, c.maxBatch)
	}
	markerData, err := EncodeCommitMarker(marker)
	if err != nil {
		return 0, fmt.Errorf("edgetables/jetstream: append to partition %d: encode marker: %w", p, err)
	}
	msgs := make([]*nats.Msg, 0, n)
	for i := range recs {
		msgs = append(msgs, c.recordMsg(p, &recs[i]))
	}
	msgs = append(msgs, &nats.Msg{Subject: c.commits[p], Data: markerData, Header: make(nats.Header, 4)})
	if !c.cfg.Atomic && c.fast[p].Load() {
		last, ok, err := c.appendFast(ctx, p, expectLast, msgs)
		if ok {
			return last, err
		}
		c.fast[p].Store(false)
		c.logger().Warn("stream refuses fast batches; appending in atomic batches", "partition", p, "stream", c.streams[p])
	}
	last, batch := expectLast, 0
	for len(msgs) > 0 {
		b := msgs[:min(len(msgs), c.maxBatch)]
		msgs = msgs[len(b):]
		if last, err = c.appendBatch(ctx, p, batch, last, b); err != nil {
			return 0, err
		}
		batch++
	}
	return last, nil
}

// recordMsg returns the message of record r in partition p.
func (c *Changelog) recordMsg(p int, r *port.Record) *nats.Msg {
	m := &nats.Msg{Subject: c.prefixes[p] + r.Table + "." + EncodeKey(r.Key), Header: make(nats.Header, 4)}
	if r.Delete {
		m.Header.Set(HeaderOp, OpDelete)
	} else {
		m.Data = r.Value
	}
	switch {
	case r.TTL > 0:
		m.Header.Set(natsjs.MsgTTLHeader, ttlHeader(r.TTL))
	case r.Delete && c.cfg.TombstoneTTL > 0:
		m.Header.Set(natsjs.MsgTTLHeader, ttlHeader(c.cfg.TombstoneTTL))
	}
	return m
}

// ttlHeader returns the Nats-TTL value of ttl: whole seconds, rounded up,
// at least 1 (the server's minimum).
func ttlHeader(ttl time.Duration) string {
	return strconv.FormatInt(max(int64((ttl+time.Second-1)/time.Second), 1), 10)
}

// Replay reads partition p from sequence from up to and including until with
// a consumer of its own (see seqReader) and passes the entries to fn in batches of at most
// batchSize (DefaultReplayBatch if <= 0); fn may keep the slices. It returns
// once the entry at until, or the last one before it, has been passed: the
// log may have gaps (compaction) or end before until. It returns at once if
// until < from or the log holds nothing at or after from. A message whose
// subject is neither a record nor a marker of partition p gives an error
// wrapping ErrBadSubject. A consumer lost with its server, or one that skips
// a message, is replaced (maxReaderReopens times) by one reading on from
// the next sequence; after that the replay ends with an error: the entries
// passed to fn are good, and the caller replays again from after them. The
// cost is one
// stream info request, one consumer creation and deletion, and the messages
// (about 0.5 M/s measured).
func (c *Changelog) Replay(ctx context.Context, p int, from, until uint64, batchSize int, fn func([]port.Entry) error) error {
	if err := c.checkPartition(p); err != nil {
		return err
	}
	if batchSize <= 0 {
		batchSize = DefaultReplayBatch
	}
	from = max(from, 1)
	if until < from {
		return nil
	}
	stream := c.streams[p]
	st, err := c.State(ctx, p)
	if err != nil {
		return err
	}
	if st.Last < from {
		return nil
	}
	first, err := c.firstAtOrAfter(ctx, p, from)
	if err != nil {
		return err
	}
	if first == 0 || first > until {
		return nil // the messages from there on were removed or superseded
	}
	from = first
	r, err := c.openSeqReader(ctx, stream, from)
	if err != nil {
		return fmt.Errorf("edgetables/jetstream: replay partition %d (stream %s) from %d: %w", p, stream, from, err)
	}
	defer func() { r.close() }()
	reopens := 0
	// The consumer's NumPending at creation is not reliable on replicated
	// streams, nor are the messages' own on a lagging replica, so when a
	// message says nothing is pending before until, or nothing arrives for a
	// while, the loop asks the stream whether a message it has not read is
	// left.
	batch := make([]port.Entry, 0, min(uint64(batchSize), until-from+1))
	next := from
	lagging := false // the leader said messages up to until are left
	for {
		wait := replayWait(r.delivered, reopens)
		msg, md, err := r.next(wait)
		if errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			left, lerr := c.firstAtOrAfter(ctx, p, next)
			if lerr != nil {
				return lerr
			}
			if left == 0 || left > until {
				break // what remained was removed or superseded
			}
			// A consumer lost with its server may go silent.
			err = fmt.Errorf("no message for %s although sequence %d is stored", wait, left)
		}
		if err != nil && ctx.Err() == nil && reopens < maxReaderReopens {
			// The consumer was lost with its server, or skipped a message:
			// go on from next on a new one.
			c.logger().Info("replay: replacing its consumer", "partition", p, "stream", stream, "at", next, "err", err)
			reopens++
			r.close()
			r, err = c.openSeqReader(ctx, stream, next)
			if err == nil {
				continue
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return fmt.Errorf("edgetables/jetstream: replay partition %d (stream %s) from %d to %d, at %d: %w", p, stream, from, until, next, err)
		}
		seq := md.stream
		if seq > until {
			break
		}
		next = seq + 1
		e, err := c.decode(p, seq, msg)
		if err != nil {
			return err
		}
		batch = append(batch, e)
		if len(batch) == batchSize {
			if err := fn(batch); err != nil {
				return err
			}
			batch = make([]port.Entry, 0, batchSize)
		}
		if seq >= until {
			break
		}
		if md.pending == 0 && !lagging {
			// Nothing pending on the replica the consumer reads, which
			// may be one still catching up (an R1 consumer goes to any
			// replica): the stream's leader says whether a message up to
			// until is left, and if one is, the consumer delivers it once
			// its replica has it. Asked once: while that replica catches
			// up every message says nothing is pending, and the replay
			// then ends at until or by the idle check above.
			left, err := c.firstAtOrAfter(ctx, p, next)
			if err != nil {
				return err
			}
			if left == 0 || left > until {
				break
			}
			lagging = true
		}
	}
	if len(batch) > 0 {
		return fn(batch)
	}
	return nil
}

// decode turns a changelog message into an Entry. A message that is no
// record or commit marker at all (its subject, key token or marker does
// not decode) was not written by a node: a client with write access to
// the app's subjects, or a hand, put it there. It is logged and passed on
// as an Entry of no table, which readers count as unknown and skip, so
// that one such message does not stop the partition's recovery for good.
// A record or marker of a later wire version stays an error: this node is
// too old to read the log.
func (c *Changelog) decode(p int, seq uint64, msg natsjs.Msg) (port.Entry, error) {
	e, err := decodeEntry(p, c.streams[p], c.prefixes[p], c.commits[p], seq, msg.Subject(), msg.Headers(), msg.Data())
	if err != nil && !errors.Is(err, ErrWireVersion) &&
		(errors.Is(err, ErrBadSubject) || errors.Is(err, ErrBadKeyToken) || errors.Is(err, ErrBadMarker)) {
		c.logger().Error("changelog message skipped: it is no record or commit marker of edgetables (written by hand, or by a client allowed the app's subjects)",
			"partition", p, "stream", c.streams[p], "seq", seq, "subject", msg.Subject(), "err", err)
		return port.Entry{Seq: seq}, nil
	}
	return e, err
}

// decodeEntry turns the message at seq of partition p's changelog (stream,
// its record subjects' prefix and its commit subject) into an Entry: a
// record of the subject's table and key, a tombstone with a delete header,
// or a commit marker. Anything else is an error wrapping ErrBadSubject, a
// key token that does not decode one wrapping ErrBadKeyToken, a marker
// that does not decode one wrapping ErrBadMarker.
func decodeEntry(p int, stream, prefix, commits string, seq uint64, subj string, h nats.Header, data []byte) (port.Entry, error) {
	if rest, ok := strings.CutPrefix(subj, prefix); ok {
		dot := strings.LastIndexByte(rest, '.')
		if dot <= 0 || strings.IndexByte(rest[:dot], '.') >= 0 {
			return port.Entry{}, fmt.Errorf("%w: partition %d (stream %s) sequence %d: %q", ErrBadSubject, p, stream, seq, subj)
		}
		key, err := DecodeKey(rest[dot+1:])
		if err != nil {
			return port.Entry{}, fmt.Errorf("edgetables/jetstream: partition %d (stream %s) sequence %d: subject %q: %w", p, stream, seq, subj, err)
		}
		if err := headerVersion("record", h.Get(HeaderVersion), RecordVersion); err != nil {
			return port.Entry{}, fmt.Errorf("edgetables/jetstream: partition %d (stream %s) sequence %d: %w", p, stream, seq, err)
		}
		e := port.Entry{Seq: seq, Record: port.Record{Table: rest[:dot], Key: key}}
		// A subject delete marker (left by the server when a TTL or MaxAge
		// removes a subject's last message, if SubjectDeleteMarkerTTL is
		// set on the stream by hand) says the key is gone: a tombstone.
		if h != nil && (h.Get(HeaderOp) == OpDelete || h.Get(natsjs.MarkerReasonHeader) != "") {
			e.Record.Delete = true
		} else {
			e.Record.Value = data
		}
		return e, nil
	}
	if subj == commits {
		m, err := decodeMarker(data)
		if err != nil {
			return port.Entry{}, fmt.Errorf("edgetables/jetstream: partition %d (stream %s) sequence %d: %w", p, stream, seq, err)
		}
		return port.Entry{Seq: seq, Commit: &m}, nil
	}
	return port.Entry{}, fmt.Errorf("%w: partition %d (stream %s) sequence %d: %q", ErrBadSubject, p, stream, seq, subj)
}

// decodeMarker decodes a commit marker (DecodeCommitMarker); an error
// wraps ErrBadMarker, or ErrWireVersion for a later version.
func decodeMarker(data []byte) (port.CommitMarker, error) { return DecodeCommitMarker(data) }
