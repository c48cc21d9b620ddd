package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/edge/httpapi"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/port"
)

// Reads settings.
const (
	readsSeed = 3
	// warmup is the number of unmeasured reads before each measured loop
	// (connections, caches).
	warmup = 200
	// readRounds is the number of turns the kinds of read take.
	readRounds = 10
	// inProcessTargetX and inProcessP50 are the reads' targets: Lookup at
	// least 20× as many ops/s as KV Get, and a median under 5 µs.
	inProcessTargetX = 20
	inProcessP50     = 5 * time.Microsecond
	// httpTargetX is the HTTP API's target: a GET of a key at least 1.5×
	// as many ops/s as KV Get.
	httpTargetX = 1.5
)

// readValue is the count key k holds in the reads' table and bucket.
func readValue(k int) int64 { return int64(k)*7 + 1 }

// reads measures random-key reads of a Keys-key count table: Table.Lookup
// in process and GET over the HTTP API with a keep-alive client, against
// NATS KV Get from a bucket holding the same keys and values. Every value
// read is checked.
func (e *env) reads(ctx context.Context) ([]Result, error) {
	keys, n := e.cfg.Keys, e.cfg.Reads
	app := e.app("reads")
	table, agent, err := builtin(fmt.Sprintf("name=counts,source=%s.ev.*,key=subject:3,agg=count", app))
	if err != nil {
		return nil, err
	}
	counter, ok := table.(*manager.Table[string, int64])
	if !ok {
		return nil, fmt.Errorf("built-in count table is a %T, want *manager.Table[string, int64]", table)
	}
	nc, js, err := e.connect(app)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	defer e.dropStreams(js, app)
	p, err := e.newPorts(ctx, js, app, e.cfg.Partitions, []manager.Agent{agent}, atLeastOnce)
	if err != nil {
		return nil, err
	}

	// The table: one changelog record per key, recovered by a manager.
	names := make([]string, keys)
	values := make([][]byte, keys)
	batches := make([][]port.Record, e.cfg.Partitions)
	for k := range names {
		names[k] = keyName(k)
		values[k] = strconv.AppendInt(nil, readValue(k), 10)
		part := manager.PartitionOf([]byte(names[k]), e.cfg.Partitions)
		batches[part] = append(batches[part], port.Record{Table: table.Name(), Key: []byte(names[k]), Value: values[k]})
	}
	for part, recs := range batches {
		var expect uint64
		for len(recs) > 0 {
			b := recs[:min(len(recs), appendBatch)]
			recs = recs[len(b):]
			if expect, err = p.changelog.Append(ctx, part, expect, b, port.CommitMarker{Node: nodeName}); err != nil {
				return nil, fmt.Errorf("write changelog: %w", err)
			}
		}
	}
	m, err := e.newManager(p, e.cfg.Partitions, filepath.Join(e.dir, app, "tables"), []manager.Collection{table}, []manager.Agent{agent}, atLeastOnce)
	if err != nil {
		return nil, err
	}
	r := run(ctx, m)
	defer func() { _ = r.stop() }()
	if err := r.waitReady(ctx); err != nil {
		return nil, err
	}

	// The bucket.
	bucket := app
	kv, err := js.CreateKeyValue(ctx, natsjs.KeyValueConfig{Bucket: bucket, Storage: natsjs.FileStorage, History: 1})
	if err != nil {
		return nil, fmt.Errorf("create KV bucket: %w", err)
	}
	err = e.pub.publish(ctx, "KV_"+bucket, keys, func(k int) (string, []byte) { return "$KV." + bucket + "." + names[k], values[k] })
	if err != nil {
		return nil, fmt.Errorf("fill KV bucket: %w", err)
	}

	// The HTTP API.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("HTTP listener: %w", err)
	}
	// The server a node runs (its timeouts set deadlines on every request).
	api := httpapi.NewServer(httpapi.New(m, httpapi.Options{Logger: e.plog}).Handler())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = api.Serve(ln)
	}()
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = api.Shutdown(sctx)
		<-served
	}()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	urlPrefix := "http://" + ln.Addr().String() + "/v1/tables/" + table.Name() + "/keys/"

	rng := rand.New(rand.NewPCG(readsSeed, uint64(keys)))
	order := make([]int, n+warmup)
	for i := range order {
		order[i] = rng.IntN(keys)
	}
	lookup := func(k int) error {
		v, found, err := counter.Lookup(ctx, names[k])
		if err != nil {
			return err
		}
		if !found || v != readValue(k) {
			return fmt.Errorf("key %s: %d (found %v), want %d", names[k], v, found, readValue(k))
		}
		return nil
	}
	var body bytes.Buffer
	get := func(k int) error {
		resp, err := client.Get(urlPrefix + names[k])
		if err != nil {
			return err
		}
		body.Reset()
		_, err = body.ReadFrom(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return err
		}
		return checkGet(names[k], resp.StatusCode, body.Bytes(), readValue(k))
	}
	direct := newDirectGetter(ln.Addr().String(), 10*time.Second)
	defer direct.close()
	pathPrefix := "/v1/tables/" + table.Name() + "/keys/"
	directGet := func(k int) error {
		status, err := direct.get(pathPrefix+names[k], &body)
		if err != nil {
			return err
		}
		return checkGet(names[k], status, body.Bytes(), readValue(k))
	}
	kvGet := func(k int) error {
		en, err := kv.Get(ctx, names[k])
		if err != nil {
			return err
		}
		if !bytes.Equal(en.Value(), values[k]) {
			return fmt.Errorf("KV key %s: %q, want %q", names[k], en.Value(), values[k])
		}
		return nil
	}

	// The four kinds take turns over the same keys, so that a change in
	// the machine's speed (another process waking up) touches each alike.
	e.log.Info("bench: reads", "kinds", "lookup, http, http-direct, kv", "reads", n, "rounds", readRounds)
	var st []readStats
	other, err := e.phase("reads", func() (err error) {
		st, err = measureReads(ctx, order, readRounds, []func(int) error{lookup, get, directGet, kvGet})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reads: %w", err)
	}
	lk, ht, hd, kvs := st[0], st[1], st[2], st[3]

	sizes := fmt.Sprintf("%s random reads of %s keys, one caller, the kinds taking turns in %d rounds", count(n), count(keys), readRounds)
	return []Result{{
		Name: "reads: Table.Lookup in process", Unit: "ops/s", Value: lk.rate,
		Baseline: "NATS KV Get (same keys and values)", BaselineValue: kvs.rate, Ratio: lk.rate / kvs.rate,
		Target: fmt.Sprintf("≥ %d× KV Get", inProcessTargetX), Met: ptr(lk.rate/kvs.rate >= inProcessTargetX), OtherCPU: otherMax(other),
		Note: fmt.Sprintf("%s; p50 %s, p99 %s; KV Get p50 %s, p99 %s", sizes, us(lk.p50), us(lk.p99), us(kvs.p50), us(kvs.p99)),
	}, {
		Name: "reads: Table.Lookup p50 latency", Unit: "µs", Value: micros(lk.p50),
		Baseline: "NATS KV Get p50", BaselineValue: micros(kvs.p50), Ratio: micros(kvs.p50) / micros(lk.p50),
		Target: "< 5 µs", Met: ptr(lk.p50 < inProcessP50), OtherCPU: otherMax(other),
	}, {
		Name: "reads: HTTP GET /v1/tables/{t}/keys/{k}, keep-alive", Unit: "ops/s", Value: hd.rate,
		Baseline: "NATS KV Get (same keys and values)", BaselineValue: kvs.rate, Ratio: hd.rate / kvs.rate, OtherCPU: otherMax(other),
		Target: fmt.Sprintf("≥ %.1f× KV Get", httpTargetX), Met: ptr(hd.rate/kvs.rate >= httpTargetX),
		Note: fmt.Sprintf("%s, client and server in one process, the client writing each request and reading its answer in the caller's goroutine (net/http's parser); p50 %s, p99 %s (request, response body and JSON decode)", sizes, us(hd.p50), us(hd.p99)),
	}, {
		Name: "reads: HTTP GET, net/http's Client", Unit: "ops/s", Value: ht.rate,
		Baseline: "NATS KV Get (same keys and values)", BaselineValue: kvs.rate, Ratio: ht.rate / kvs.rate, OtherCPU: otherMax(other),
		Note: fmt.Sprintf("the row above through net/http's Client (its Transport's reader and writer goroutines per connection); p50 %s, p99 %s", us(ht.p50), us(ht.p99)),
	}}, nil
}

// readStats are the outcome of one kind of read.
type readStats struct {
	rate     float64 // ops/s over the kind's measured reads
	p50, p99 time.Duration
}

// measureReads measures each of readers on the keys of order. Each first
// reads the warmup first keys unmeasured; then the rest of order is cut
// into rounds slices, and in each round every reader reads the round's
// keys, taking turns in an order that rotates from round to round. A
// reader's rate is its reads over the time it spent in them. Any error
// ends the loop.
func measureReads(ctx context.Context, order []int, rounds int, readers []func(int) error) ([]readStats, error) {
	if len(order) <= warmup {
		return nil, errors.New("no reads")
	}
	for _, read := range readers {
		for _, k := range order[:warmup] {
			if err := read(k); err != nil {
				return nil, err
			}
		}
	}
	order = order[warmup:]
	rounds = max(1, min(rounds, len(order)))
	lat := make([][]time.Duration, len(readers))
	for i := range lat {
		lat[i] = make([]time.Duration, 0, len(order))
	}
	took := make([]time.Duration, len(readers))
	for r := range rounds {
		keys := order[r*len(order)/rounds : (r+1)*len(order)/rounds]
		for j := range readers {
			i := (r + j) % len(readers)
			start := time.Now()
			for n, k := range keys {
				t := time.Now()
				err := readers[i](k)
				lat[i] = append(lat[i], time.Since(t))
				if err != nil {
					return nil, err
				}
				if n%4096 == 0 && ctx.Err() != nil {
					return nil, ctx.Err()
				}
			}
			took[i] += time.Since(start)
		}
	}
	out := make([]readStats, len(readers))
	for i, l := range lat {
		slices.Sort(l)
		out[i] = readStats{
			rate: float64(len(l)) / took[i].Seconds(),
			p50:  l[len(l)/2],
			p99:  l[min(len(l)-1, len(l)*99/100)],
		}
	}
	return out, nil
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", micros(d)) }

// checkGet checks the answer to a GET of key: status 200 and a JSON
// object whose value is want.
func checkGet(key string, status int, body []byte, want int64) error {
	if status != http.StatusOK {
		return fmt.Errorf("GET %s: status %d: %s", key, status, body)
	}
	var got struct{ Value int64 }
	if err := json.Unmarshal(body, &got); err != nil {
		return fmt.Errorf("GET %s: %w", key, err)
	}
	if got.Value != want {
		return fmt.Errorf("GET %s: value %d, want %d", key, got.Value, want)
	}
	return nil
}
