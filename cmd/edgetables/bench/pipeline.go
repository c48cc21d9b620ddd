package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/status"
)

// deliveryMode is the delivery guarantee a pipeline run is measured with.
type deliveryMode string

const (
	atLeastOnce deliveryMode = "at-least-once"
	exactlyOnce deliveryMode = "exactly-once"
)

// Each key count's runs are compared with one raw baseline: the raw loop
// is measured in the first run, at least once, and the exactly-once run is
// compared with it.

// rawRun is a measured raw baseline: its duration and the share of the
// CPUs other processes took meanwhile.
type rawRun struct {
	took  time.Duration
	other float64
}

// pipelineSeed seeds the key choice of the events.
const pipelineSeed = 1

// pipeline measures events/s from "N events in the source stream" to "all
// committed", through a built-in count table, against a raw loop over the
// same events: with Keys keys at least once and exactly once, and with
// every event on its own key (no coalescing possible) at least once. With
// Keys equal to Events, that one key count runs in both modes. (Exactly
// once at K=N as well would add about 40 s to the default run, past its
// three minutes; --keys equal to --events measures it.)
func (e *env) pipeline(ctx context.Context) ([]Result, error) {
	cases := []struct {
		keys   int
		target float64
		modes  []deliveryMode
	}{{e.cfg.Keys, 1.5, []deliveryMode{atLeastOnce, exactlyOnce}}, {e.cfg.Events, 0.8, []deliveryMode{atLeastOnce}}}
	if e.cfg.Keys == e.cfg.Events {
		cases = cases[1:]
		cases[0].modes = []deliveryMode{atLeastOnce, exactlyOnce}
	}
	var out []Result
	for i, c := range cases {
		var raw *rawRun
		byMode := map[deliveryMode]Result{}
		for _, mode := range c.modes {
			sz := pipeSize{events: e.cfg.Events, keys: c.keys, partitions: e.cfg.Partitions}
			r, measured, err := e.pipelineRun(ctx, mode, sz, c.target, raw, i == 0)
			if err != nil {
				return nil, fmt.Errorf("K=%d, %s: %w", c.keys, mode, err)
			}
			raw = measured
			byMode[mode] = r[0]
			out = append(out, r...)
		}
		if alo, ok := byMode[atLeastOnce]; ok {
			if eo, ok := byMode[exactlyOnce]; ok {
				out = append(out, exactlyOnceCost(c.keys, alo, eo))
			}
		}
	}
	// The NATS-native peer, against the first run: Keys keys, at least once.
	peer, err := e.kvPeer(ctx, out[0])
	if err != nil {
		return nil, err
	}
	return append(out, peer), nil
}

// exactlyOnceTarget is the goal of exactly once against at least once on
// the same events.
const exactlyOnceTarget = 0.8

// exactlyOnceCost is the row of exactly once's rate against at least
// once's, on the same events and keys.
func exactlyOnceCost(keys int, alo, eo Result) Result {
	r := Result{
		Name: fmt.Sprintf("pipeline, K=%s: exactly-once vs at-least-once", count(keys)), Unit: "events/s", Value: eo.Value,
		Baseline: "the same pipeline at least once", BaselineValue: alo.Value, Ratio: eo.Value / alo.Value,
		Target: fmt.Sprintf("≥ %.1f× at-least-once", exactlyOnceTarget),
	}
	for _, o := range []*float64{alo.OtherCPU, eo.OtherCPU} {
		if o != nil {
			r.OtherCPU = otherMax(*o, valueOr(r.OtherCPU, -1))
		}
	}
	r.Met = ptr(r.Ratio >= exactlyOnceTarget)
	return r
}

// valueOr returns *p, or or when p is nil.
func valueOr(p *float64, or float64) float64 {
	if p == nil {
		return or
	}
	return *p
}

// events loads n events over keys keys into stream with pub: event i goes
// to <prefix>k<key> with payload(i); with keys == n event i has key i, else
// a key drawn uniformly. It returns per key the number of events and 1 +
// the index of its last event (0: none).
func events(ctx context.Context, pub *publisher, stream, prefix string, n, keys int) (counts, last []int32, err error) {
	counts, last = make([]int32, keys), make([]int32, keys)
	rng := rand.New(rand.NewPCG(pipelineSeed, uint64(keys)))
	err = pub.publish(ctx, stream, n, func(i int) (string, []byte) {
		k := i
		if keys != n {
			k = rng.IntN(keys)
		}
		counts[k]++
		last[k] = int32(i + 1)
		return prefix + keyName(k), payload(i)
	})
	return counts, last, err
}

// consumeTarget is the goal of the pipeline against the raw consumer
// alone, which does nothing with the events: the limit of any pipeline.
const consumeTarget = 0.4

// pipeSize is the size of one pipeline run: events over keys keys, into
// a table of partitions partitions.
type pipeSize struct{ events, keys, partitions int }

// pipelineRun measures one mode and size. It measures the raw baseline on
// the same events too, unless raw is given, and then with consumeAlone
// also the raw consumer alone, reported as a second result; it returns the
// baseline it compared with.
func (e *env) pipelineRun(ctx context.Context, mode deliveryMode, sz pipeSize, target float64, raw *rawRun, consumeAlone bool) ([]Result, *rawRun, error) {
	n, keys := sz.events, sz.keys
	app := e.app("pipe")
	name := fmt.Sprintf("pipeline, K=%s (%s)", count(keys), mode)
	if keys == n {
		name = fmt.Sprintf("pipeline, K=N=%s (%s)", count(keys), mode)
	}
	phase := fmt.Sprintf("pipeline-k%d-%s", keys, mode)
	if sz.partitions != e.cfg.Partitions {
		phase = fmt.Sprintf("pipeline-k%d-p%d-%s", keys, sz.partitions, mode)
	}
	table, agent, err := builtin(fmt.Sprintf("name=counts,source=%s.ev.*,key=subject:3,agg=count", app))
	if err != nil {
		return nil, nil, err
	}
	counter, ok := table.(*manager.Table[string, int64])
	if !ok {
		return nil, nil, fmt.Errorf("built-in count table is a %T, want *manager.Table[string, int64]", table)
	}
	nc, js, err := e.connect(app)
	if err != nil {
		return nil, nil, err
	}
	defer nc.Close()
	// The run's streams go when it ends: a million-message source and its
	// changelog would otherwise weigh on the scenarios after it (the
	// embedded server shares this process's heap and garbage collector).
	defer e.dropStreams(js, app)
	p, err := e.newPorts(ctx, js, app, sz.partitions, []manager.Agent{agent}, mode)
	if err != nil {
		return nil, nil, err
	}

	e.log.Info("bench: publishing source events", "run", name, "events", n)
	t0 := time.Now()
	want, _, err := events(ctx, e.pub, p.source.Stream(), app+".ev.", n, keys)
	if err != nil {
		return nil, nil, fmt.Errorf("publish source events: %w", err)
	}
	pubRate := float64(n) / time.Since(t0).Seconds()
	ss, err := p.source.State(ctx)
	if err != nil {
		return nil, nil, err
	}
	first, last := ss.First, ss.Last
	if last-first+1 != uint64(n) {
		return nil, nil, fmt.Errorf("source stream holds sequences %d..%d, want %d events", first, last, n)
	}

	rawNote := "raw"
	var consume *rawRun
	if raw == nil {
		e.log.Info("bench: raw baseline", "run", name)
		raw = &rawRun{}
		raw.other, err = e.phase(phase+"-raw", func() (err error) {
			raw.took, err = e.rawPipeline(ctx, app, p.source.Stream(), n, last, true)
			return err
		})
		if err != nil {
			return nil, nil, fmt.Errorf("raw baseline: %w", err)
		}
		if consumeAlone {
			e.log.Info("bench: raw consumer alone", "run", name)
			consume = &rawRun{}
			consume.other, err = e.phase(phase+"-consume", func() (err error) {
				consume.took, err = e.rawPipeline(ctx, app, p.source.Stream(), n, last, false)
				return err
			})
			if err != nil {
				return nil, nil, fmt.Errorf("raw consumer alone: %w", err)
			}
		}
	} else {
		rawNote = "raw (measured in the " + string(atLeastOnce) + " run)"
	}

	e.log.Info("bench: edgetables", "run", name)
	m, err := e.newManager(p, sz.partitions, filepath.Join(e.dir, app, "tables"), []manager.Collection{table}, []manager.Agent{agent}, mode)
	if err != nil {
		return nil, nil, err
	}
	var took time.Duration
	var st status.Status
	r := run(ctx, m)
	otherEdge, err := e.phase(phase+"-edgetables", func() error {
		at, err := r.waitCommitted(ctx, last)
		took = at.Sub(r.start)
		st = m.Status()
		return err
	})
	if err != nil {
		_ = r.stop()
		return nil, nil, err
	}
	verr := checkCounts(ctx, m, counter, want)
	if err := r.stop(); err != nil && verr == nil {
		verr = err
	}
	if verr != nil {
		return nil, nil, fmt.Errorf("wrong table contents: %w", verr)
	}
	if dl := deadLetters(st); dl > 0 {
		return nil, nil, fmt.Errorf("%d events were dead-lettered", dl)
	}

	rate, rawRate := float64(n)/took.Seconds(), float64(n)/raw.took.Seconds()
	res := Result{
		Name: name, Unit: "events/s", Value: rate,
		Baseline:      "raw loop: AckAll consume + async publish per event",
		BaselineValue: rawRate, Ratio: rate / rawRate,
		Target: fmt.Sprintf("≥ %.1f× raw", target),
		Note: fmt.Sprintf("%s events of %d B on %d partitions: edgetables %s, %s %s; %d commits (mean %s), %.3f changelog records/event; source loaded at %s/s; other processes used %s of the CPUs during the edgetables run, %s during the raw run",
			count(n), payloadSize, sz.partitions, took.Round(time.Millisecond), rawNote, raw.took.Round(time.Millisecond),
			st.Commits, st.MeanCommit.Round(10*time.Microsecond), float64(st.ChangelogRecords)/float64(n), short(pubRate),
			otherNote(otherEdge), otherNote(raw.other)),
	}
	res.Met = ptr(res.Ratio >= target)
	res.OtherCPU = otherMax(otherEdge, raw.other)
	out := []Result{res}
	if consume != nil {
		consumeRate := float64(n) / consume.took.Seconds()
		c := Result{
			Name: name + " vs the consumer alone", Unit: "events/s", Value: rate,
			Baseline:      "raw AckAll consume alone (no table, no publish): the limit",
			BaselineValue: consumeRate, Ratio: rate / consumeRate,
			Target: fmt.Sprintf("≥ %.1f× the consumer alone", consumeTarget),
			Note: fmt.Sprintf("the consumer alone read the %s events in %s; other processes used %s of the CPUs meanwhile",
				count(n), consume.took.Round(time.Millisecond), otherNote(consume.other)),
		}
		c.Met = ptr(c.Ratio >= consumeTarget)
		c.OtherCPU = otherMax(otherEdge, consume.other)
		out = append(out, c)
	}
	return out, raw, nil
}

// dropStreams deletes app's streams, logging what it cannot delete (a
// leftover costs the later scenarios memory, not correctness).
func (e *env) dropStreams(js natsjs.JetStream, app string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	names := js.StreamNames(ctx)
	var drop []string
	for name := range names.Name() {
		if strings.HasPrefix(name, app+"_") {
			drop = append(drop, name)
		}
	}
	if err := names.Err(); err != nil {
		e.log.Warn("bench: cannot list the streams to delete", "app", app, "err", err)
	}
	for _, name := range drop {
		if err := js.DeleteStream(ctx, name); err != nil {
			e.log.Warn("bench: cannot delete a stream", "stream", name, "err", err)
		}
	}
}

// checkCounts checks that the count of every key is the expected one and
// that the table holds no other key.
func checkCounts(ctx context.Context, m *manager.TableManager, t *manager.Table[string, int64], want []int32) error {
	present := 0
	for k, w := range want {
		got, found, err := t.Lookup(ctx, keyName(k))
		if err != nil {
			return fmt.Errorf("lookup %s: %w", keyName(k), err)
		}
		if got != int64(w) || found != (w > 0) {
			return fmt.Errorf("key %s: count %d (found %v), want %d", keyName(k), got, found, w)
		}
		if found {
			present++
		}
	}
	n, err := m.Count(t.Name())
	if err != nil {
		return err
	}
	if n != present {
		return fmt.Errorf("table holds %d keys, want %d", n, present)
	}
	return nil
}

// rawPipeline is the baseline: a durable AckAll pull consumer reads the n
// events of stream (acking every 1000th and the last), and for each it
// counts in a map and, with publish, async-publishes the new count of the
// event's key to a compacted stream (one subject per key, as the
// changelog). The time runs from the consumer's creation until every
// publish is acknowledged and the consumer's ack floor is at last.
func (e *env) rawPipeline(ctx context.Context, app, stream string, n int, last uint64, publish bool) (time.Duration, error) {
	nc, _, err := e.connect(app + "-raw")
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	var pubErrs errCount
	js, err := natsjs.New(nc, natsjs.WithPublishAsyncMaxPending(productWindow),
		natsjs.WithPublishAsyncErrHandler(func(_ natsjs.JetStream, _ *nats.Msg, err error) { pubErrs.add(err) }))
	if err != nil {
		return 0, fmt.Errorf("JetStream context: %w", err)
	}
	outPrefix := app + ".raw."
	_, err = js.CreateStream(ctx, natsjs.StreamConfig{
		Name: app + "_raw", Subjects: []string{outPrefix + ">"}, Storage: natsjs.FileStorage,
		MaxMsgsPerSubject: 1, Discard: natsjs.DiscardOld,
	})
	if err != nil {
		return 0, fmt.Errorf("create output stream: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, phaseTimeout)
	defer cancel()

	start := time.Now()
	cons, err := js.CreateConsumer(ctx, stream, natsjs.ConsumerConfig{
		Durable: "raw", AckPolicy: natsjs.AckAllPolicy, MaxAckPending: jetstream.SourceMaxAckPending,
		AckWait: jetstream.SourceAckWait, DeliverPolicy: natsjs.DeliverAllPolicy,
	})
	if err != nil {
		return 0, fmt.Errorf("create consumer: %w", err)
	}
	// A Consume callback, as the product's reader: a slow iterator over
	// Messages would overflow its channel and drop messages. mu guards
	// the loop's state against a callback still running after Stop.
	inPrefix := app + ".ev."
	counts := make(map[string]int64)
	var (
		mu      sync.Mutex
		got     int
		loopErr error
		done    = make(chan struct{})
	)
	fail := func(err error) {
		if loopErr == nil {
			loopErr = err
			close(done)
		}
	}
	cc, err := cons.Consume(func(msg natsjs.Msg) {
		mu.Lock()
		defer mu.Unlock()
		if loopErr != nil || got == n {
			return
		}
		key, ok := strings.CutPrefix(msg.Subject(), inPrefix)
		if !ok {
			fail(fmt.Errorf("unexpected subject %q", msg.Subject()))
			return
		}
		counts[key]++
		if publish {
			if _, err := js.PublishAsync(outPrefix+key, strconv.AppendInt(nil, counts[key], 10), natsjs.WithStallWait(time.Minute)); err != nil {
				fail(fmt.Errorf("publish: %w", err))
				return
			}
		}
		got++
		if got%1000 == 0 || got == n {
			if err := msg.Ack(); err != nil {
				fail(fmt.Errorf("ack: %w", err))
				return
			}
		}
		if got == n {
			close(done)
		}
	}, natsjs.PullMaxMessagesWithBytesLimit(4096, 64<<20))
	if err != nil {
		return 0, fmt.Errorf("consume: %w", err)
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
	cc.Stop()
	mu.Lock()
	consumed, cerr := got, loopErr
	mu.Unlock()
	if cerr != nil {
		return 0, cerr
	}
	if consumed != n {
		return 0, fmt.Errorf("consumed %d of %d messages: %w", consumed, n, ctx.Err())
	}
	if err := waitPublished(ctx, js); err != nil {
		return 0, err
	}
	err = waitUntil(ctx, "the raw consumer's ack floor", time.Millisecond, func() (bool, error) {
		info, err := cons.Info(ctx)
		if err != nil {
			return false, err
		}
		return info.AckFloor.Stream >= last, nil
	})
	if err != nil {
		return 0, err
	}
	took := time.Since(start)
	if err := pubErrs.err(); err != nil {
		return 0, fmt.Errorf("publish: %w", err)
	}
	if err := js.DeleteConsumer(ctx, stream, "raw"); err != nil {
		return 0, fmt.Errorf("delete consumer: %w", err)
	}
	return took, nil
}
