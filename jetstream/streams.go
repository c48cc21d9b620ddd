package jetstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// attemptTimeout bounds one attempt of ensureStream and ensureKeyValue: a
// request whose answer was lost (seen while an R3 stream's Raft group
// forms) would otherwise wait for the whole ctx.
const attemptTimeout = 5 * time.Second

// ensureStream creates the stream or updates it to sc. In a fresh cluster,
// with several nodes creating the same replicated streams at once, one
// request can time out while the stream's Raft group forms: it is retried
// (the request is idempotent) until ctx ends.
func ensureStream(ctx context.Context, js natsjs.JetStream, sc natsjs.StreamConfig) (natsjs.Stream, error) {
	var st natsjs.Stream
	err := retry(ctx, "create or update stream "+sc.Name, func() (err error) {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		// Create first and update only a stream whose configuration
		// differs: concurrent updates of one replicated stream by several
		// nodes were measured to stall each other for the API timeout.
		st, err = js.CreateStream(actx, sc)
		if !errors.Is(err, natsjs.ErrStreamNameAlreadyInUse) {
			return err
		}
		if st, err = js.Stream(actx, sc.Name); err != nil {
			return err
		}
		if info := st.CachedInfo(); info != nil && sameStreamConfig(info.Config, sc) {
			return nil
		}
		st, err = js.UpdateStream(actx, sc)
		return err
	})
	return st, err
}

// sameStreamConfig compares the settings edgetables sets.
func sameStreamConfig(have, want natsjs.StreamConfig) bool {
	return slices.Equal(have.Subjects, want.Subjects) && have.Retention == want.Retention &&
		have.Storage == want.Storage && have.Replicas == max(want.Replicas, 1) &&
		(want.MaxMsgs == 0 || have.MaxMsgs == want.MaxMsgs) && (want.MaxBytes == 0 || have.MaxBytes == want.MaxBytes) &&
		have.MaxAge == want.MaxAge && (want.MaxMsgsPerSubject == 0 || have.MaxMsgsPerSubject == want.MaxMsgsPerSubject) &&
		have.Discard == want.Discard && have.AllowAtomicPublish == want.AllowAtomicPublish &&
		(!want.AllowBatchPublish || have.AllowBatchPublish) &&
		(!want.AllowMsgTTL || have.AllowMsgTTL) &&
		have.Description == want.Description && (want.Duplicates == 0 || have.Duplicates == want.Duplicates) &&
		sameSources(have.Sources, want.Sources)
}

// ensureKeyValue is ensureStream for a KV bucket.
func ensureKeyValue(ctx context.Context, js natsjs.JetStream, kc natsjs.KeyValueConfig) (natsjs.KeyValue, error) {
	var kv natsjs.KeyValue
	err := retry(ctx, "create or update bucket "+kc.Bucket, func() (err error) {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		kv, err = js.CreateOrUpdateKeyValue(actx, kc)
		return err
	})
	return kv, err
}

// retry calls f until it succeeds, fails with an error a retry cannot cure,
// 20 attempts fail, or ctx ends; the pause grows from 250 ms to 3 s.
func retry(ctx context.Context, what string, f func() error) error {
	delay := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil {
			return nil
		}
		if !retryable(err) || ctx.Err() != nil || attempt == 20 {
			return fmt.Errorf("edgetables/jetstream: %s (attempt %d): %w", what, attempt, err)
		}
		if attempt == 1 || attempt%5 == 0 {
			// Say what start-up waits for, rather than nothing for a
			// minute.
			loggerFrom(ctx).Warn("waiting for JetStream; retrying", "what", what, "attempt", attempt, "err", err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("edgetables/jetstream: %s: %w", what, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, 3*time.Second)
	}
}

// retryable tells errors of a JetStream request that a retry may cure: time
// outs and a cluster without quorum or leader yet.
func retryable(err error) bool {
	if errors.Is(err, errStaleAnswer) || errors.Is(err, ErrLeaderless) {
		return true // whatever the answer said
	}
	var apiErr *natsjs.APIError
	if errors.As(err, &apiErr) {
		// 10008: JetStream cluster not available (no meta leader yet);
		// 10005 no suitable peers; 503/408/500: temporarily unavailable.
		switch apiErr.ErrorCode {
		case 10008, 10005:
			return true
		}
		return apiErr.Code == 503 || apiErr.Code == 408 || apiErr.Code == 500
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, natsjs.ErrNoStreamResponse) || errors.Is(err, natsjs.ErrJetStreamNotEnabled) ||
		errors.Is(err, nats.ErrTimeout)
}

// errStaleAnswer: a read answered by a server that has not caught up with
// the stream (a replica, or a meta leader elected a moment ago); asking
// again is answered right soon.
var errStaleAnswer = errors.New("edgetables/jetstream: answered by a server still catching up")
