package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// kvPeerMaxEvents bounds the events of the KV peer: at two round trips
// per event it runs at a few thousand events/s, and a rate over 20,000
// events is steady.
const kvPeerMaxEvents = 20_000

// kvPeerTarget is the goal: edgetables at least 10× the
// NATS-native way to keep the same table.
const kvPeerTarget = 10.0

// kvPeer measures the NATS-native alternative to a count table, as a NATS
// user would write it: a durable pull consumer over the source stream and,
// per event, a KV Get of the key's count and an Update conditional on the
// revision read (a Create for a new key), retried on a conflict, then the
// event's ack. It compares edgetables' rate, measured by the pipeline's
// run of the same key count at least once (edge), with it. The peer's
// counts are checked like the table's.
func (e *env) kvPeer(ctx context.Context, edge Result) (Result, error) {
	n := min(e.cfg.Events, kvPeerMaxEvents)
	keys := min(e.cfg.Keys, n)
	app := e.app("kvpeer")
	nc, js, err := e.connect(app)
	if err != nil {
		return Result{}, err
	}
	defer nc.Close()
	defer e.dropStreams(js, app)
	stream, inPrefix := app+"_source", app+".ev."
	if _, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: stream, Subjects: []string{inPrefix + ">"}, Storage: natsjs.FileStorage}); err != nil {
		return Result{}, fmt.Errorf("create source stream: %w", err)
	}
	kv, err := js.CreateKeyValue(ctx, natsjs.KeyValueConfig{Bucket: app + "_counts", Storage: natsjs.FileStorage})
	if err != nil {
		return Result{}, fmt.Errorf("create bucket: %w", err)
	}
	defer func() { _ = js.DeleteKeyValue(context.WithoutCancel(ctx), app+"_counts") }()
	e.log.Info("bench: publishing the KV peer's events", "events", n, "keys", keys)
	want, _, err := events(ctx, e.pub, stream, inPrefix, n, keys)
	if err != nil {
		return Result{}, fmt.Errorf("publish source events: %w", err)
	}

	var took time.Duration
	var conflicts int
	other, err := e.phase("kvpeer", func() error {
		ctx, cancel := context.WithTimeout(ctx, phaseTimeout)
		defer cancel()
		start := time.Now()
		cons, err := js.CreateConsumer(ctx, stream, natsjs.ConsumerConfig{Durable: "counter", AckPolicy: natsjs.AckExplicitPolicy})
		if err != nil {
			return fmt.Errorf("create consumer: %w", err)
		}
		for done := 0; done < n; {
			batch, err := cons.Fetch(min(256, n-done), natsjs.FetchMaxWait(5*time.Second))
			if err != nil {
				return fmt.Errorf("fetch: %w", err)
			}
			for msg := range batch.Messages() {
				key, ok := strings.CutPrefix(msg.Subject(), inPrefix)
				if !ok {
					return fmt.Errorf("unexpected subject %q", msg.Subject())
				}
				c, err := kvIncrement(ctx, kv, key)
				if err != nil {
					return err
				}
				conflicts += c
				if err := msg.Ack(); err != nil {
					return fmt.Errorf("ack: %w", err)
				}
				done++
			}
			if err := batch.Error(); err != nil && !errors.Is(err, natsjs.ErrNoHeartbeat) {
				return fmt.Errorf("fetch: %w", err)
			}
		}
		took = time.Since(start)
		return nil
	})
	if err != nil {
		return Result{}, fmt.Errorf("KV peer: %w", err)
	}
	for k, w := range want {
		en, err := kv.Get(ctx, keyName(k))
		switch {
		case w == 0 && errors.Is(err, natsjs.ErrKeyNotFound):
		case err != nil:
			return Result{}, fmt.Errorf("KV peer: key %s: %w", keyName(k), err)
		case string(en.Value()) != strconv.Itoa(int(w)):
			return Result{}, fmt.Errorf("KV peer: key %s: count %s, want %d", keyName(k), en.Value(), w)
		}
	}
	rate := float64(n) / took.Seconds()
	res := Result{
		Name: fmt.Sprintf("NATS-native peer: the count table in a NATS KV bucket, K=%s (at-least-once)", count(keys)),
		Unit: "events/s", Value: edge.Value,
		Baseline:      "consumer + KV Get and revision-checked Update per event",
		BaselineValue: rate, Ratio: edge.Value / rate,
		Target: fmt.Sprintf("≥ %.0f× the KV peer", kvPeerTarget),
		Note: fmt.Sprintf("edgetables: the %q run; the KV peer: %s events of %d B in %s, %d conflicts retried; other processes used %s of the CPUs during the peer's run",
			edge.Name, count(n), payloadSize, took.Round(time.Millisecond), conflicts, otherNote(other)),
	}
	res.Met = ptr(res.Ratio >= kvPeerTarget)
	res.OtherCPU = otherMax(other)
	return res, nil
}

// kvIncrement adds one to key's count in kv, as a NATS user would: Get,
// then Update on the revision read (Create if absent), again on a
// conflict. It returns the number of conflicts.
func kvIncrement(ctx context.Context, kv natsjs.KeyValue, key string) (int, error) {
	for conflicts := 0; conflicts < 100; conflicts++ {
		en, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, natsjs.ErrKeyNotFound):
			_, err = kv.Create(ctx, key, []byte("1"))
		case err != nil:
			return conflicts, fmt.Errorf("KV get %s: %w", key, err)
		default:
			var v int
			if v, err = strconv.Atoi(string(en.Value())); err != nil {
				return conflicts, fmt.Errorf("KV value of %s: %w", key, err)
			}
			_, err = kv.Update(ctx, key, []byte(strconv.Itoa(v+1)), en.Revision())
		}
		if err == nil {
			return conflicts, nil
		}
		var apiErr *natsjs.APIError
		if !errors.Is(err, natsjs.ErrKeyExists) && !(errors.As(err, &apiErr) && apiErr.ErrorCode == natsjs.JSErrCodeStreamWrongLastSequence) {
			return conflicts, fmt.Errorf("KV update %s: %w", key, err)
		}
	}
	return 100, fmt.Errorf("KV update %s: 100 conflicts in a row", key)
}
