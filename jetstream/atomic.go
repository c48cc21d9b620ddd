package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/edgetables/edgetables/manager/port"
)

// MaxAtomicBatch is the most messages one atomic batch may hold on a
// nats-server left at its default max_batch_size: what a changelog
// assumes unless ChangelogConfig.MaxBatch says otherwise (a server given
// with --nats-url, a cluster whose nodes may run an older edgetables). An
// atomic Append holds a commit's records plus its marker; other Appends
// take as many batches as needed.
const MaxAtomicBatch = 1000

// EmbeddedMaxAtomicBatch is the max_batch_size StartServer gives an
// embedded server (unless ServerConfig.MaxAtomicBatch or its config file
// sets one): a standalone node, the only writer of its own server, commits
// up to this many messages at once exactly once.
const EmbeddedMaxAtomicBatch = 10_000

// CommitCapacity is the most records one exactly-once commit can hold on a
// server at the default max_batch_size: one atomic batch less its commit
// marker (manager.Config.CommitCapacity). See CommitLimits for others.
const CommitCapacity = MaxAtomicBatch - 1

// commitHeadroom is how many records below a full atomic batch an
// exactly-once commit is started, so that most events that write several
// keys still fit the buffer without forcing a commit first.
const commitHeadroom = 100

// MaxCommitRecords returns the manager.Config.MaxCommitRecords of a node
// whose server is at the default max_batch_size: none at least once, a
// full atomic batch less a headroom exactly once. See CommitLimits.
func MaxCommitRecords(exactlyOnce bool) int {
	maxRecords, _ := CommitLimits(exactlyOnce, MaxAtomicBatch)
	return maxRecords
}

// CommitLimits returns manager.Config's MaxCommitRecords and
// CommitCapacity for a changelog whose atomic batches hold at most
// maxBatch messages (Changelog.MaxBatch; 0 means MaxAtomicBatch): none at
// least once; exactly once, a commit holds at most maxBatch-1 records (its
// marker is the last message) and is started a headroom below that.
func CommitLimits(exactlyOnce bool, maxBatch int) (maxRecords, capacity int) {
	if !exactlyOnce {
		return 0, 0
	}
	if maxBatch <= 0 {
		maxBatch = MaxAtomicBatch
	}
	capacity = max(maxBatch-1, 1)
	headroom := min(commitHeadroom, maxBatch/10)
	return max(capacity-headroom+1, 1), capacity
}

// recordHeaderRoom is what a changelog record's message needs besides its
// value: its headers (TTL, tombstone, atomic batch and fencing headers).
const recordHeaderRoom = 1024

// MaxRecordBytes returns the largest record value a changelog message can
// carry on nc (manager.Config.MaxRecordBytes): the server's max_payload
// less room for the headers.
func MaxRecordBytes(nc *nats.Conn) int {
	return max(int(nc.MaxPayload())-recordHeaderRoom, 0)
}

// Headers of JetStream atomic batch publish (ADR-50), for the batch size
// probe.
const (
	headerBatchID  = jetstreamext.BatchIDHeader
	headerBatchSeq = jetstreamext.BatchSeqHeader
)

// ErrBatchTooLarge is returned by an atomic Append of more than
// Changelog.MaxBatch messages, and wrapped by an Append whose batch the
// server refused as larger than its max_batch_size (nothing of that batch
// is stored).
var ErrBatchTooLarge = errors.New("edgetables/jetstream: commit larger than one atomic batch")

// Error codes of a JetStream atomic batch (ADR-50) in nats-server 2.15.
const (
	errCodeBatchIncomplete  = 10176 // a batch the server does not hold
	errCodeBatchTooLarge    = 10199 // "atomic publish batch is too large: N"
	errCodeBatchExpectation = 10164 // a batch's expectation refused
)

// defaultAckTimeout bounds each wait for the server's answer to a batch
// message sent as a request (a batch's first message, its commit), or for
// its acks, when the Append's context has no earlier deadline.
const defaultAckTimeout = 10 * time.Second

// ackWait is how long a batch waits for an answer: until ctx's deadline if
// it has one, else defaultAckTimeout.
func ackWait(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond)
	}
	return defaultAckTimeout
}

// apiErrorCode returns the JetStream error code err carries, or 0.
func apiErrorCode(err error) natsjs.ErrorCode {
	var apiErr *natsjs.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode
	}
	return 0
}

// batchError is err, an Append's failure, wrapped with what callers test
// for: port.ErrFenced when the server refused an expectation (another
// writer appended), ErrBatchTooLarge when it refused an atomic batch's
// size.
func batchError(err error) error {
	switch apiErrorCode(err) {
	case natsjs.JSErrCodeStreamWrongLastSequence, errCodeBatchExpectation:
		return fmt.Errorf("%w: %w", port.ErrFenced, err)
	case errCodeBatchTooLarge:
		return fmt.Errorf("%w: %w", ErrBatchTooLarge, err)
	}
	return err
}

// probeReply is the server's answer to the batch size probe: an error.
type probeReply struct {
	Error *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// appendBatch writes msgs (at most c.maxBatch) to partition p as one
// atomic batch (orbit.go jetstreamext.BatchPublisher): the server stores
// all of them or none. The first message expects the log to end at
// expectLast (checked at commit, against the stream as it is then), which
// fences other writers. Cost: one request for the first message, plain
// publishes, one request for the commit; the server stages the batch and
// fsyncs it once. It returns the batch's last sequence.
func (c *Changelog) appendBatch(ctx context.Context, p, batch int, expectLast uint64, msgs []*nats.Msg) (uint64, error) {
	n := len(msgs)
	bp, err := jetstreamext.NewBatchPublisher(c.js, jetstreamext.BatchFlowControl{AckFirst: true, AckTimeout: ackWait(ctx)})
	if err != nil {
		return 0, fmt.Errorf("edgetables/jetstream: append to partition %d: %w", p, err)
	}
	fail := func(i int, err error) error {
		return batchError(fmt.Errorf("edgetables/jetstream: append to partition %d (stream %s, expected last %d): message %d of %d: %w",
			p, c.streams[p], expectLast, i+1, n, err))
	}
	for i, m := range msgs {
		// Only the first message may carry the expectation (the
		// publisher refuses it on the others).
		m.Header.Del(nats.ExpectedLastSeqHdr)
		var opts []jetstreamext.BatchMsgOpt
		if i == 0 {
			opts = append(opts, jetstreamext.WithBatchExpectLastSequence(expectLast))
		}
		if i < n-1 {
			if err := bp.AddMsg(m, opts...); err != nil {
				return 0, fail(i, err)
			}
			continue
		}
		if c.cfg.BeforeCommit != nil {
			if err := c.cfg.BeforeCommit(p, batch); err != nil {
				_ = bp.Discard()
				return 0, fmt.Errorf("edgetables/jetstream: append to partition %d: batch %d abandoned before its commit: %w", p, batch, err)
			}
		}
		ack, err := bp.CommitMsg(ctx, m, opts...)
		if err != nil {
			return 0, fail(i, err)
		}
		if ack.Sequence != expectLast+uint64(n) {
			return 0, fmt.Errorf("edgetables/jetstream: append to partition %d: committed %d messages ending at %d, want %d ending at %d",
				p, ack.BatchSize, ack.Sequence, n, expectLast+uint64(n))
		}
		return ack.Sequence, nil
	}
	return 0, fmt.Errorf("edgetables/jetstream: append to partition %d: empty batch", p)
}

// probeMaxBatch returns how many messages one atomic batch to partition
// p's stream may hold, up to want, as the stream's leader says now,
// without staging or storing anything. It sends one request: a message of
// a batch the server has never seen, with sequence want. The server holds
// no batch of that id and the sequence is not 1, so it refuses the message
// either as larger than its max_batch_size (10199, "too large: N", N its
// limit) or as an incomplete batch (10176): then it accepts want (nats-server
// 2.15 server/stream.go: stream.processJetStreamAtomicBatchMsg). The
// message also expects a stream of another name: a server that took it for
// a plain publish would refuse it (10060) rather than store it.
func (c *Changelog) probeMaxBatch(ctx context.Context, p, want int) (int, error) {
	m := &nats.Msg{Subject: c.prefixes[p] + "_probe._probe", Header: make(nats.Header, 4)}
	m.Header.Set(headerBatchID, nuid.Next())
	m.Header.Set(headerBatchSeq, strconv.Itoa(want))
	m.Header.Set(nats.ExpectedStreamHdr, c.streams[p]+"-batch-size-probe")
	resp, err := c.js.Conn().RequestMsgWithContext(ctx, m)
	if err != nil {
		return 0, fmt.Errorf("edgetables/jetstream: stream %s: atomic batch size probe: %w", c.streams[p], err)
	}
	var r probeReply
	if err := json.Unmarshal(resp.Data, &r); err != nil || r.Error == nil {
		return 0, fmt.Errorf("edgetables/jetstream: stream %s: atomic batch size probe: unexpected reply %q", c.streams[p], resp.Data)
	}
	switch r.Error.ErrCode {
	case errCodeBatchIncomplete:
		return want, nil
	case errCodeBatchTooLarge:
		d := r.Error.Description
		n, err := strconv.Atoi(strings.TrimSpace(d[strings.LastIndexByte(d, ':')+1:]))
		if err != nil || n <= 0 || n >= want {
			return 0, fmt.Errorf("edgetables/jetstream: stream %s: atomic batch size probe: no size in %q", c.streams[p], d)
		}
		return n, nil
	default:
		return 0, fmt.Errorf("edgetables/jetstream: stream %s: atomic batch size probe: %s (code %d)", c.streams[p], r.Error.Description, r.Error.ErrCode)
	}
}
