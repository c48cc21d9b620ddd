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
// recoveryTarget is the goal of a recovery against the raw replay of the
// same streams.
const recoveryTarget = 0.6

func (e *env) recovery(ctx context.Context) ([]Result, error) {
	sz := recoverySize{records: e.cfg.RecoveryRecords, keys: e.cfg.RecoveryKeys, partitions: e.cfg.Partitions,
		reps: recoveryReps, phase: "recovery"}
	m, err := e.recoveryCase(ctx, sz)
	if err != nil {
		return nil, err
	}
	n, keys := sz.records, sz.keys
	took, raw := median(m.edge), median(m.raw)
	rate, rawRate := float64(m.live)/took.Seconds(), float64(m.live)/raw.Seconds()
	res := Result{
		Name: fmt.Sprintf("recovery, %s records over %s keys into a fresh store", count(n), count(keys)),
		Unit: "records/s", Value: rate,
		Baseline:      fmt.Sprintf("raw ordered-consumer replay of the same %d streams, concurrently", sz.partitions),
		BaselineValue: rawRate, Ratio: rate / rawRate, Target: fmt.Sprintf("≥ %.1f× raw", recoveryTarget), Met: ptr(rate/rawRate >= recoveryTarget),
		Note: fmt.Sprintf("written with Changelog.Append in batches of %s in %s (%s records/s); compacted by the server to %s live messages (records and one marker per partition), all replayed; median of %d: edgetables %s from Run to the last partition recovered (all %v), %s to Ready (all %v); raw %s (all %v); other processes used up to %s of the CPUs during a recovery, %s during a raw replay",
			count(appendBatch), m.appendTook.Round(time.Millisecond), short(float64(n)/m.appendTook.Seconds()), count(m.live),
			sz.reps, took.Round(time.Millisecond), rounded(m.edge), median(m.ready).Round(time.Millisecond), rounded(m.ready),
			raw.Round(time.Millisecond), rounded(m.raw), otherNote(m.otherEdge), otherNote(m.otherRaw)),
		OtherCPU: otherMax(m.otherEdge, m.otherRaw),
	}
	return []Result{res}, nil
}

// recoverySize is the size of one recovery case: records records over
// keys keys in a changelog of partitions partitions, recovered (and
// replayed raw) reps times. phase prefixes its profiles' names.
type recoverySize struct {
	records, keys, partitions, reps int
	phase                           string
}

// recoveryMeasure is what recoveryCase measured.
type recoveryMeasure struct {
	live       int           // messages in the compacted changelog, each replayed by every rep
	appendTook time.Duration // writing the changelog
	// edge holds the time of each edgetables recovery from Run to the
	// last partition recovered, ready to Ready, raw of each raw replay.
	edge, ready, raw []time.Duration
	// otherEdge and otherRaw are the most other processes used of the
	// CPUs during a recovery and a raw replay (-1: unknown).
	otherEdge, otherRaw float64
}

// recoveryCase writes a changelog of sz and times, sz.reps times each, a
// raw replay of it and the recovery of a fresh store from it, checking
// every recovered table. The changelog's streams are deleted at the end.
func (e *env) recoveryCase(ctx context.Context, sz recoverySize) (recoveryMeasure, error) {
	n, keys := sz.records, sz.keys
	app := e.app("rec")
	spec := fmt.Sprintf("name=latest,source=%s.ev.*,key=subject:3,agg=latest", app)
	table, agent, err := builtin(spec)
	if err != nil {
		return recoveryMeasure{}, err
	}
	nc, js, err := e.connect(app)
	if err != nil {
		return recoveryMeasure{}, err
	}
	defer nc.Close()
	defer e.dropStreams(js, app)
	p, err := e.newPorts(ctx, js, app, sz.partitions, []manager.Agent{agent}, atLeastOnce)
	if err != nil {
		return recoveryMeasure{}, err
	}
	e.log.Info("bench: writing the changelog", "records", n, "keys", keys, "partitions", sz.partitions)
	t0 := time.Now()
	last, err := e.writeChangelog(ctx, p.changelog, sz.partitions, table.Name(), n, keys)
	if err != nil {
		return recoveryMeasure{}, fmt.Errorf("write changelog: %w", err)
	}
	m := recoveryMeasure{appendTook: time.Since(t0), otherEdge: -1, otherRaw: -1}
	for part := 0; part < sz.partitions; part++ {
		st, err := js.Stream(ctx, p.changelog.Stream(part))
		if err != nil {
			return recoveryMeasure{}, fmt.Errorf("changelog stream %d: %w", part, err)
		}
		m.live += int(st.CachedInfo().State.Msgs)
	}

	for rep := 1; rep <= sz.reps; rep++ {
		e.log.Info("bench: raw replay", "rep", rep)
		var took time.Duration
		var rawEntries int
		other, err := e.phase(fmt.Sprintf("%s-raw-%d", sz.phase, rep), func() (err error) {
			took, rawEntries, err = e.rawReplay(ctx, app, sz.partitions)
			return err
		})
		if err != nil {
			return recoveryMeasure{}, fmt.Errorf("raw replay: %w", err)
		}
		m.raw, m.otherRaw = append(m.raw, took), max(m.otherRaw, other)
		e.log.Info("bench: edgetables recovery", "rep", rep)
		rr, err := e.recoverOnce(ctx, p, sz, app, rep, spec, last)
		if err != nil {
			return recoveryMeasure{}, err
		}
		m.edge, m.ready = append(m.edge, rr.took), append(m.ready, rr.ready)
		m.otherEdge = max(m.otherEdge, rr.other)
		if rr.entries != m.live || rawEntries != m.live {
			return recoveryMeasure{}, fmt.Errorf("the changelog holds %d messages; recovery replayed %d, the raw replay read %d", m.live, rr.entries, rawEntries)
		}
	}
	return m, nil
}

// writeChangelog appends n records of table over keys keys to the
// changelog of parts partitions, each partition in its own goroutine in
// batches of appendBatch records and a marker, as commits do. Record i has
// key k<r> (r drawn uniformly) and value payload(i). It returns, per key,
// 1 + the index of its last record (0: never written).
func (e *env) writeChangelog(ctx context.Context, cl *jetstream.Changelog, parts int, table string, n, keys int) ([]int32, error) {
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
			// The markers commit no source position: the source stream
			// is empty, and a position beyond its end would be taken for
			// a source that lost its tail, which a takeover confirms
			// for seconds before it ends the partition's recovery.
			flush := func() error {
				l, err := cl.Append(ctx, part, expect, batch, port.CommitMarker{Node: nodeName})
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
					if errs[part] = flush(); errs[part] != nil {
						cancel()
						return
					}
				}
			}
			if len(batch) > 0 {
				if errs[part] = flush(); errs[part] != nil {
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

// recoverOnce starts a manager of sz.partitions partitions on a fresh
// store directory, times its recovery, checks the table and stops the
// manager.
func (e *env) recoverOnce(ctx context.Context, p ports, sz recoverySize, app string, rep int, spec string, last []int32) (recoveryRun, error) {
	// A table belongs to one manager: every run gets its own.
	table, agent, err := builtin(spec)
	if err != nil {
		return recoveryRun{}, err
	}
	latest, ok := table.(*manager.Table[string, json.RawMessage])
	if !ok {
		return recoveryRun{}, fmt.Errorf("built-in latest table is a %T, want *manager.Table[string, json.RawMessage]", table)
	}
	dir := filepath.Join(e.dir, app, fmt.Sprintf("recovery-%d", rep))
	m, err := e.newManager(p, sz.partitions, dir, []manager.Collection{table}, []manager.Agent{agent}, atLeastOnce)
	if err != nil {
		return recoveryRun{}, err
	}
	var rr recoveryRun
	r := run(ctx, m)
	rr.other, err = e.phase(fmt.Sprintf("%s-edgetables-%d", sz.phase, rep), func() error {
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

// rawReplay reads the parts partition streams of app from their start
// with an ordered consumer, all streams concurrently, pulling as the
// product's Replay does, and returns the time from the first consumer's
// creation to the last message, and the messages read.
func (e *env) rawReplay(ctx context.Context, app string, parts int) (time.Duration, int, error) {
	nc, js, err := e.connect(app + "-replay")
	if err != nil {
		return 0, 0, err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, phaseTimeout)
	defer cancel()
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
