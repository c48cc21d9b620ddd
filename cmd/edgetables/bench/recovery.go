package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/port"
)

// Recovery settings.
const (
	// recoveryReps is how many times recovery and the raw replay run; the
	// median is reported.
	recoveryReps = 3
	// appendBatch is the number of records per Append, as a commit of
	// CommitEvery (10,000) events writes at most.
	appendBatch  = 10_000
	recoverySeed = 2
)

// recovery measures the recovery of a fresh store from a changelog that
// received RecoveryRecords records over RecoveryKeys keys (compacted by the
// server to the last record per key), against a raw ordered-consumer replay
// of the same streams.
func (e *env) recovery(ctx context.Context) ([]Result, error) {
	n, keys := e.cfg.RecoveryRecords, e.cfg.RecoveryKeys
	app := e.app("rec")
	spec := fmt.Sprintf("name=latest,source=%s.ev.*,key=subject:3,agg=latest", app)
	table, agent, err := builtin(spec)
	if err != nil {
		return nil, err
	}
	nc, js, err := e.connect(app)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	defer e.dropStreams(js, app)
	p, err := newPorts(ctx, js, app, e.cfg.Partitions, []manager.Agent{agent}, atLeastOnce)
	if err != nil {
		return nil, err
	}
	e.log.Info("bench: writing the changelog", "records", n, "keys", keys)
	t0 := time.Now()
	last, err := e.writeChangelog(ctx, p.changelog, table.Name(), n, keys)
	if err != nil {
		return nil, fmt.Errorf("write changelog: %w", err)
	}
	appendTook := time.Since(t0)
	live := 0
	for part := 0; part < e.cfg.Partitions; part++ {
		st, err := js.Stream(ctx, p.changelog.Stream(part))
		if err != nil {
			return nil, fmt.Errorf("changelog stream %d: %w", part, err)
		}
		live += int(st.CachedInfo().State.Msgs)
	}

	var edgeTimes, readyTimes, rawTimes []time.Duration
	var entries, rawEntries int
	otherEdge, otherRaw := -1.0, -1.0 // the most other processes used in a rep
	for rep := 1; rep <= recoveryReps; rep++ {
		e.log.Info("bench: raw replay", "rep", rep)
		var took time.Duration
		other, err := e.phase(fmt.Sprintf("recovery-raw-%d", rep), func() (err error) {
			took, rawEntries, err = e.rawReplay(ctx, app)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("raw replay: %w", err)
		}
		rawTimes, otherRaw = append(rawTimes, took), max(otherRaw, other)
		e.log.Info("bench: edgetables recovery", "rep", rep)
		rr, err := e.recoverOnce(ctx, p, rep, spec, last)
		if err != nil {
			return nil, err
		}
		edgeTimes, readyTimes = append(edgeTimes, rr.took), append(readyTimes, rr.ready)
		entries, otherEdge = rr.entries, max(otherEdge, rr.other)
	}
	if entries != live || rawEntries != live {
		return nil, fmt.Errorf("the changelog holds %d messages; recovery replayed %d, the raw replay read %d", live, entries, rawEntries)
	}
	took, raw := median(edgeTimes), median(rawTimes)
	rate, rawRate := float64(entries)/took.Seconds(), float64(rawEntries)/raw.Seconds()
	res := Result{
		Name: fmt.Sprintf("recovery, %s records over %s keys into a fresh store", count(n), count(keys)),
		Unit: "records/s", Value: rate,
		Baseline:      fmt.Sprintf("raw ordered-consumer replay of the same %d streams, concurrently", e.cfg.Partitions),
		BaselineValue: rawRate, Ratio: rate / rawRate, Target: "≥ 0.5× raw", Met: ptr(rate/rawRate >= 0.5),
		Note: fmt.Sprintf("written with Changelog.Append in batches of %s in %s (%s records/s); compacted by the server to %s live messages (records and one marker per partition), all replayed; median of %d: edgetables %s from Run to the last partition recovered (all %v), %s to Ready (all %v); raw %s (all %v); other processes used up to %s of the CPUs during a recovery, %s during a raw replay",
			count(appendBatch), appendTook.Round(time.Millisecond), short(float64(n)/appendTook.Seconds()), count(live),
			recoveryReps, took.Round(time.Millisecond), rounded(edgeTimes), median(readyTimes).Round(time.Millisecond), rounded(readyTimes),
			raw.Round(time.Millisecond), rounded(rawTimes), otherNote(otherEdge), otherNote(otherRaw)),
		OtherCPU: otherMax(otherEdge, otherRaw),
	}
	return []Result{res}, nil
}

// writeChangelog appends n records of table over keys keys to the
// changelog, each partition in its own goroutine in batches of appendBatch
// records and a marker, as commits do. Record i has key k<r> (r drawn
// uniformly) and value payload(i). It returns, per key, 1 + the index of
// its last record (0: never written).
func (e *env) writeChangelog(ctx context.Context, cl *jetstream.Changelog, table string, n, keys int) ([]int32, error) {
	parts := e.cfg.Partitions
	keyOf := make([]int32, n)
	last := make([]int32, keys)
	partOf := make([]int16, keys)
	for k := range partOf {
		partOf[k] = int16(manager.PartitionOf([]byte(keyName(k)), parts))
	}
	rng := rand.New(rand.NewPCG(recoverySeed, uint64(keys)))
	for i := range keyOf {
		k := rng.IntN(keys)
		keyOf[i], last[k] = int32(k), int32(i+1)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, parts)
	for part := 0; part < parts; part++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var expect uint64
			batch := make([]port.Record, 0, appendBatch)
			flush := func(i int) error {
				l, err := cl.Append(ctx, part, expect, batch, port.CommitMarker{SourceSeq: uint64(i), Node: nodeName})
				expect = l
				batch = batch[:0]
				return err
			}
			for i, k := range keyOf {
				if int(partOf[k]) != part {
					continue
				}
				batch = append(batch, port.Record{Table: table, Key: []byte(keyName(int(k))), Value: payload(i)})
				if len(batch) == appendBatch {
					if errs[part] = flush(i + 1); errs[part] != nil {
						cancel()
						return
					}
				}
			}
			if len(batch) > 0 {
				if errs[part] = flush(n); errs[part] != nil {
					cancel()
				}
			}
		}()
	}
	wg.Wait()
	for part, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("partition %d: %w", part, err)
		}
	}
	return last, nil
}

// recoveryRun is one timed recovery.
type recoveryRun struct {
	took    time.Duration // from Run until the last partition's recovery ended
	ready   time.Duration // from Run until Ready
	entries int           // replayed
	other   float64       // other processes' share of the CPUs meanwhile
}

// recoverOnce starts a manager on a fresh store directory, times its
// recovery, checks the table and stops the manager.
func (e *env) recoverOnce(ctx context.Context, p ports, rep int, spec string, last []int32) (recoveryRun, error) {
	// A table belongs to one manager: every run gets its own.
	table, agent, err := builtin(spec)
	if err != nil {
		return recoveryRun{}, err
	}
	latest, ok := table.(*manager.Table[string, json.RawMessage])
	if !ok {
		return recoveryRun{}, fmt.Errorf("built-in latest table is a %T, want *manager.Table[string, json.RawMessage]", table)
	}
	dir := filepath.Join(e.dir, fmt.Sprintf("recovery-%d", rep))
	m, err := e.newManager(p, dir, []manager.Collection{table}, []manager.Agent{agent}, atLeastOnce)
	if err != nil {
		return recoveryRun{}, err
	}
	var rr recoveryRun
	r := run(ctx, m)
	rr.other, err = e.phase(fmt.Sprintf("recovery-edgetables-%d", rep), func() error {
		err := r.waitReady(ctx)
		rr.ready = time.Since(r.start)
		return err
	})
	if err != nil {
		_ = r.stop()
		return recoveryRun{}, err
	}
	var ended time.Time
	for _, ps := range m.Status().Partitions {
		rp := ps.Recovery
		if rp == nil {
			continue
		}
		rr.entries += rp.Records
		if rp.Ended.After(ended) {
			ended = rp.Ended
		}
	}
	rr.took = ended.Sub(r.start)
	verr := checkLatest(ctx, m, latest, last)
	if err := r.stop(); err != nil && verr == nil {
		verr = err
	}
	if verr != nil {
		return recoveryRun{}, fmt.Errorf("wrong table contents after recovery %d: %w", rep, verr)
	}
	return rr, nil
}

// checkLatest checks that every key holds its last record's value and that
// the table holds no other key.
func checkLatest(ctx context.Context, m *manager.TableManager, t *manager.Table[string, json.RawMessage], last []int32) error {
	present := 0
	for k, l := range last {
		v, found, err := t.Lookup(ctx, keyName(k))
		if err != nil {
			return fmt.Errorf("lookup %s: %w", keyName(k), err)
		}
		if found != (l > 0) {
			return fmt.Errorf("key %s: found %v, want %v", keyName(k), found, l > 0)
		}
		if !found {
			continue
		}
		present++
		if want := payload(int(l - 1)); !bytes.Equal(v, want) {
			return fmt.Errorf("key %s: value %s, want %s", keyName(k), v, want)
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

// rawReplay reads every partition stream of app from its start with an
// ordered consumer, all streams concurrently, pulling as the product's
// Replay does, and returns the time from the first consumer's creation to
// the last message, and the messages read.
func (e *env) rawReplay(ctx context.Context, app string) (time.Duration, int, error) {
	nc, js, err := e.connect(app + "-replay")
	if err != nil {
		return 0, 0, err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, phaseTimeout)
	defer cancel()
	parts := e.cfg.Partitions
	counts := make([]int, parts)
	errs := make([]error, parts)
	var wg sync.WaitGroup
	start := time.Now()
	for part := 0; part < parts; part++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts[part], errs[part] = replayStream(ctx, js, jetstream.ChangelogStream(app, part))
			if errs[part] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	total := 0
	for part := range counts {
		if errs[part] != nil {
			return 0, 0, fmt.Errorf("partition %d: %w", part, errs[part])
		}
		total += counts[part]
	}
	return took, total, nil
}

// replayStream reads stream from its start to its end with an ordered
// consumer and returns the number of messages.
func replayStream(ctx context.Context, js natsjs.JetStream, stream string) (int, error) {
	cons, err := js.OrderedConsumer(ctx, stream, natsjs.OrderedConsumerConfig{DeliverPolicy: natsjs.DeliverAllPolicy})
	if err != nil {
		return 0, err
	}
	if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
		return 0, nil
	}
	it, err := cons.Messages(natsjs.PullMaxMessagesWithBytesLimit(8192, 64<<20))
	if err != nil {
		return 0, err
	}
	defer it.Stop()
	n := 0
	for {
		msg, err := it.Next(natsjs.NextContext(ctx))
		if err != nil {
			return n, err
		}
		md, err := msg.Metadata()
		if err != nil {
			return n, err
		}
		n++
		if md.NumPending == 0 {
			return n, nil
		}
	}
}

// rounded rounds durations to milliseconds, for notes.
func rounded(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}
