package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// DefaultTombstoneTTL is how long the edgetables command keeps a
// tombstone (a deleted key of a table or of a global table) in its log:
// ChangelogConfig.TombstoneTTL and GlobalConfig.TombstoneTTL of a node.
const DefaultTombstoneTTL = 24 * time.Hour

// maxTombstoneMargin bounds tombstoneMargin.
const maxTombstoneMargin = time.Hour

// tombstoneMargin is how long before its tombstones could expire a store
// counts as having possibly missed them: a replay that starts then has
// that long to read them. A quarter of ttl, at most an hour.
func tombstoneMargin(ttl time.Duration) time.Duration { return min(ttl/4, maxTombstoneMargin) }

// tombstoneAttempts bounds each attempt of tombstonesFrom's request.
var tombstoneAttempts = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}

// errNoMessage is the JetStream API's error code for "no message found".
const errNoMessage = 10037

// tombstonesFrom returns the first sequence of stream written after
// now - ttl + tombstoneMargin(ttl), or last+1 if none was: a store that
// has applied the log at least up to the sequence before it cannot have
// missed a tombstone that has expired (every later message was written
// after that time, tombstones included, and expires no earlier than ttl
// after). One request: a message get by start time.
func tombstonesFrom(ctx context.Context, nc *nats.Conn, stream string, ttl time.Duration, last uint64) (uint64, error) {
	since := time.Now().Add(-ttl + tombstoneMargin(ttl)).UTC()
	req, err := json.Marshal(struct {
		StartTime time.Time `json:"start_time"`
		NextFor   string    `json:"next_by_subj"`
		NoHeaders bool      `json:"no_hdr"`
	}{since, ">", true})
	if err != nil {
		return 0, err
	}
	// Each attempt is bounded: a request the stream's leader never
	// answers (it died, or an election lost it) used to hang a recovery
	// for good.
	var msg *nats.Msg
	for _, d := range tombstoneAttempts {
		actx, cancel := context.WithTimeout(ctx, d)
		msg, err = nc.RequestWithContext(actx, "$JS.API.STREAM.MSG.GET."+stream, req)
		cancel()
		if err == nil || ctx.Err() != nil || !(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)) {
			break
		}
	}
	if err != nil {
		return 0, fmt.Errorf("edgetables/jetstream: stream %s: first message since %s: %w", stream, since.Format(time.RFC3339), err)
	}
	var resp struct {
		Message *struct {
			Seq uint64 `json:"seq"`
		} `json:"message"`
		Error *struct {
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, fmt.Errorf("edgetables/jetstream: stream %s: first message since %s: %w", stream, since.Format(time.RFC3339), err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrCode == errNoMessage:
		return last + 1, nil
	case resp.Error != nil:
		return 0, fmt.Errorf("edgetables/jetstream: stream %s: first message since %s: %s (%d)", stream, since.Format(time.RFC3339), resp.Error.Description, resp.Error.ErrCode)
	case resp.Message == nil:
		return 0, errors.New("edgetables/jetstream: stream " + stream + ": message get without a message")
	}
	return resp.Message.Seq, nil
}
