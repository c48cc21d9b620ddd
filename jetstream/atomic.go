package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/edgetables/edgetables/manager/port"
)

// MaxAtomicBatch is the most messages one atomic batch may hold (the
// server's default max_batch_size). An atomic Append holds a commit's
// records plus its marker; other Appends take as many batches as needed.
const MaxAtomicBatch = 1000

// CommitCapacity is the most records one exactly-once commit can hold:
// one atomic batch less its commit marker (manager.Config.CommitCapacity).
const CommitCapacity = MaxAtomicBatch - 1

// commitHeadroom is how many records below a full atomic batch an
// exactly-once commit is started, so that most events that write several
// keys still fit the buffer without forcing a commit first.
const commitHeadroom = 100

// MaxCommitRecords returns the manager.Config.MaxCommitRecords of a node:
// none at least once, a full atomic batch less a headroom exactly once.
func MaxCommitRecords(exactlyOnce bool) int {
	if !exactlyOnce {
		return 0
	}
	return MaxAtomicBatch - commitHeadroom
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

// Headers of JetStream atomic batch publish (ADR-50).
const (
	headerBatchID     = "Nats-Batch-Id"
	headerBatchSeq    = "Nats-Batch-Sequence"
	headerBatchCommit = "Nats-Batch-Commit"
)

// ErrBatchTooLarge is returned by an atomic Append of more than
// MaxAtomicBatch messages.
var ErrBatchTooLarge = errors.New("edgetables/jetstream: commit larger than one atomic batch")

// batchReply is the server's answer to a batch message sent as a request:
// empty while staging, a PubAck with the batch's last sequence at commit,
// or an error.
type batchReply struct {
	Stream string `json:"stream"`
	Seq    uint64 `json:"seq"`
	Count  int    `json:"count"`
	Error  *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// appendBatch writes msgs (at most MaxAtomicBatch) to partition p as one
// atomic batch: the server stores all of them or none. The first message
// expects the log to end at expectLast (checked at commit, against the
// stream as it is then), which fences other writers. Cost: one request for
// the first message, plain publishes, one request for the commit; the
// server stages the batch and fsyncs it once. It returns the batch's last
// sequence.
func (c *Changelog) appendBatch(ctx context.Context, p, batch int, expectLast uint64, msgs []*nats.Msg) (uint64, error) {
	n := len(msgs)
	nc := c.js.Conn()
	id := nuid.Next()
	for i, m := range msgs {
		m.Header.Set(headerBatchID, id)
		m.Header.Set(headerBatchSeq, strconv.Itoa(i+1))
		if i == 0 {
			m.Header.Set(nats.ExpectedLastSeqHdr, strconv.FormatUint(expectLast, 10))
		}
		last := i == n-1
		if last {
			m.Header.Set(headerBatchCommit, "1")
		}
		if last && c.cfg.BeforeCommit != nil {
			if err := c.cfg.BeforeCommit(p, batch); err != nil {
				return 0, fmt.Errorf("edgetables/jetstream: append to partition %d: batch %d abandoned before its commit: %w", p, batch, err)
			}
		}
		if i != 0 && !last {
			if err := nc.PublishMsg(m); err != nil {
				return 0, fmt.Errorf("edgetables/jetstream: append to partition %d: message %d: %w", p, i+1, err)
			}
			continue
		}
		resp, err := nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			return 0, fmt.Errorf("edgetables/jetstream: append to partition %d (stream %s, after %d): message %d of %d: %w", p, c.streams[p], expectLast, i+1, n, err)
		}
		if len(resp.Data) == 0 {
			continue // staged
		}
		var r batchReply
		if err := json.Unmarshal(resp.Data, &r); err != nil {
			return 0, fmt.Errorf("edgetables/jetstream: append to partition %d: reply %q: %w", p, resp.Data, err)
		}
		if r.Error != nil {
			err := fmt.Errorf("edgetables/jetstream: append to partition %d (stream %s, expected last %d): %s (code %d)",
				p, c.streams[p], expectLast, r.Error.Description, r.Error.ErrCode)
			if r.Error.ErrCode == 10071 || r.Error.ErrCode == 10164 {
				return 0, fmt.Errorf("%w: %w", port.ErrFenced, err)
			}
			return 0, err
		}
		if last {
			if r.Count != n || r.Seq != expectLast+uint64(n) {
				return 0, fmt.Errorf("edgetables/jetstream: append to partition %d: committed %d messages ending at %d, want %d ending at %d",
					p, r.Count, r.Seq, n, expectLast+uint64(n))
			}
			return r.Seq, nil
		}
	}
	return 0, fmt.Errorf("edgetables/jetstream: append to partition %d: no commit reply", p)
}
