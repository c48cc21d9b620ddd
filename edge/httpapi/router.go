package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/status"
	"github.com/edgetables/edgetables/manager/window"
)

// queryTimeout bounds one routed read.
const queryTimeout = 3 * time.Second

// Router answers reads from the node that owns the key's partition: locally
// when it is this node, else by NATS request/reply to the owner (never HTTP
// between nodes). Alone, every read is local. Serve answers the other
// nodes' reads; the node subscribes it to its query subject.
type Router struct {
	m   *manager.TableManager
	nc  *nats.Conn // nil alone
	app string
}

// NewRouter returns the router of the reads of m: with nc, reads of keys
// other members own go to them over app's query subjects; without, every
// read is local.
func NewRouter(m *manager.TableManager, nc *nats.Conn, app string) *Router {
	return &Router{m: m, nc: nc, app: app}
}

// Wire versions of a routed query and its answer (field "v"; absent, as
// from a release before versions, is 1). A version changes only when a
// reader of the previous one would misread the new one: a node refuses a
// query of a later version (bad_request) and fails on such an answer.
const (
	queryVersion  = 1
	answerVersion = 1
)

// query is a routed read on the wire (a request on <app>.query.<node>).
// testdata/query-v1.json is its golden file.
type query struct {
	V      int    `json:"v"`
	Op     string `json:"op"` // get, scan, count, windows, partitions
	Table  string `json:"table"`
	Key    []byte `json:"key,omitempty"`
	Prefix []byte `json:"prefix,omitempty"`
	After  []byte `json:"after,omitempty"`
	Limit  int    `json:"limit,omitempty"`
	// All and At select windows (op windows).
	All bool       `json:"all,omitempty"`
	At  *time.Time `json:"at,omitempty"`
}

// answer is the reply to a query. Code is one of the HTTP API's error codes
// when the read failed. testdata/answer-v1.json is its golden file.
type answer struct {
	V         int            `json:"v"`
	Code      string         `json:"code,omitempty"`
	Error     string         `json:"error,omitempty"`
	Value     []byte         `json:"value,omitempty"`
	Partition int            `json:"partition"`
	Entries   []entryWire    `json:"entries,omitempty"`
	Count     int            `json:"count,omitempty"`
	Windows   []window.Entry `json:"windows,omitempty"`
	// Partitions is the answering node's partition states (op
	// partitions; a node of an earlier release answers bad_request).
	Partitions []status.PartitionStatus `json:"partitions,omitempty"`
}

// entryWire is a scanned entry in an answer. Its names are those the first
// release wrote (manager.KeyValue without tags).
type entryWire struct {
	Key       []byte `json:"Key"`
	Value     []byte `json:"Value"`
	Partition int    `json:"Partition"`
}

// toEntries converts scanned entries for an answer.
func toEntries(kvs []manager.KeyValue) []entryWire {
	if kvs == nil {
		return nil
	}
	out := make([]entryWire, len(kvs))
	for i, kv := range kvs {
		out[i] = entryWire(kv)
	}
	return out
}

// fromEntries converts an answer's entries back.
func fromEntries(es []entryWire) []manager.KeyValue {
	if es == nil {
		return nil
	}
	out := make([]manager.KeyValue, len(es))
	for i, e := range es {
		out[i] = manager.KeyValue(e)
	}
	return out
}

// errBadQuery marks a query a node refuses as malformed.
var errBadQuery = errors.New("bad query")

var codeErrors = map[string]error{
	CodeBadRequest:    errBadQuery,
	CodeTableNotFound: manager.ErrTableNotFound,
	CodeKeyNotFound:   manager.ErrKeyNotFound,
	CodeNotReady:      manager.ErrNotReady,
	CodeNotOwner:      manager.ErrNotOwner,
}

func errCode(err error) string {
	if errors.Is(err, manager.ErrNotWindowed) {
		return CodeBadRequest // a query no HTTP request makes
	}
	for code, e := range codeErrors {
		if errors.Is(err, e) {
			return code
		}
	}
	return CodeInternal
}

// get reads key of table from its owner.
func (r *Router) get(ctx context.Context, table string, key []byte) ([]byte, int, error) {
	p := manager.PartitionOf(key, r.m.Partitions())
	owner, serving := r.m.Owner(p)
	if owner == r.m.Node() || r.nc == nil || r.m.IsGlobal(table) {
		return r.m.Get(ctx, table, key)
	}
	if owner == "" || !serving {
		return nil, p, fmt.Errorf("partition %d is moving to %q: %w", p, owner, manager.ErrNotReady)
	}
	a, err := r.ask(ctx, owner, query{Op: "get", Table: table, Key: key})
	if err != nil {
		return nil, p, err
	}
	return a.Value, a.Partition, nil
}

// windows reads the windows of key of a windowed table from its owner.
func (r *Router) windows(ctx context.Context, table string, key []byte, wq window.Query) ([]window.Entry, int, error) {
	p := manager.PartitionOf(key, r.m.Partitions())
	owner, serving := r.m.Owner(p)
	if owner == r.m.Node() || r.nc == nil {
		return r.m.Windows(ctx, table, key, wq)
	}
	if owner == "" || !serving {
		return nil, p, fmt.Errorf("partition %d is moving to %q: %w", p, owner, manager.ErrNotReady)
	}
	q := query{Op: "windows", Table: table, Key: key, All: wq.All}
	if !wq.At.IsZero() {
		q.At = &wq.At
	}
	a, err := r.ask(ctx, owner, q)
	if err != nil {
		return nil, p, err
	}
	return a.Windows, a.Partition, nil
}

// scan gathers the entries of table from every member, in key order.
func (r *Router) scan(ctx context.Context, table string, prefix, after []byte, limit int) ([]manager.KeyValue, error) {
	if r.m.IsGlobal(table) {
		return r.m.Scan(ctx, table, prefix, after, limit) // every node holds all of it
	}
	if err := r.allServed(); err != nil {
		return nil, err
	}
	var out []manager.KeyValue
	for _, node := range r.m.Members() {
		var kvs []manager.KeyValue
		if node == r.m.Node() || r.nc == nil {
			var err error
			if kvs, err = r.m.Scan(ctx, table, prefix, after, limit); err != nil {
				return nil, err
			}
		} else {
			a, err := r.ask(ctx, node, query{Op: "scan", Table: table, Prefix: prefix, After: after, Limit: limit})
			if err != nil {
				return nil, err
			}
			kvs = fromEntries(a.Entries)
		}
		out = append(out, kvs...)
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].Key, out[j].Key) < 0 })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// count returns the number of keys of table over every member.
func (r *Router) count(ctx context.Context, table string) (int, error) {
	if r.m.IsGlobal(table) {
		return r.m.Count(table)
	}
	n := 0
	for _, node := range r.m.Members() {
		if node == r.m.Node() || r.nc == nil {
			c, err := r.m.Count(table)
			if err != nil {
				return 0, err
			}
			n += c
			continue
		}
		a, err := r.ask(ctx, node, query{Op: "count", Table: table})
		if err != nil {
			return 0, err
		}
		n += a.Count
	}
	return n, nil
}

// allServed fails with ErrNotReady while any partition has no serving owner.
func (r *Router) allServed() error {
	for p := 0; p < r.m.Partitions(); p++ {
		if owner, serving := r.m.Owner(p); !serving {
			return fmt.Errorf("partition %d is moving to %q: %w", p, owner, manager.ErrNotReady)
		}
	}
	return nil
}

// ask sends q to node and decodes its answer.
func (r *Router) ask(ctx context.Context, node string, q query) (answer, error) {
	q.V = queryVersion
	req, err := json.Marshal(q)
	if err != nil {
		return answer{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	resp, err := jetstream.Query(ctx, r.nc, r.app, node, req)
	if err != nil {
		// An owner that does not answer is leaving or dead: its
		// partitions are about to move.
		return answer{}, fmt.Errorf("ask %s: %w: %w", node, manager.ErrNotReady, err)
	}
	return decodeAnswer(node, resp)
}

// decodeAnswer decodes node's answer to a query; a failure it reports
// becomes an error wrapping the sentinel of its code.
func decodeAnswer(node string, resp []byte) (answer, error) {
	var a answer
	if err := json.Unmarshal(resp, &a); err != nil {
		return answer{}, fmt.Errorf("answer of %s: %w", node, err)
	}
	if a.V > answerVersion {
		return answer{}, fmt.Errorf("answer of %s: version %d, this node reads up to %d: upgrade it", node, a.V, answerVersion)
	}
	if a.Code != "" {
		if e, ok := codeErrors[a.Code]; ok {
			return a, fmt.Errorf("%s (from %s): %w", a.Error, node, e)
		}
		return a, fmt.Errorf("%s: %s (code %s)", node, a.Error, a.Code)
	}
	return a, nil
}

// Serve answers a query from another node (a request on the node's query
// subject, see jetstream.ServeQueries) from this node's stores.
func (r *Router) Serve(ctx context.Context, req []byte) []byte {
	var q query
	var a answer
	err := json.Unmarshal(req, &q)
	if err != nil {
		err = fmt.Errorf("%w: %w", errBadQuery, err)
	} else if q.V > queryVersion {
		err = fmt.Errorf("%w: query of version %d, this node reads up to %d: upgrade it", errBadQuery, q.V, queryVersion)
	} else {
		switch q.Op {
		case "get":
			a.Value, a.Partition, err = r.m.Get(ctx, q.Table, q.Key)
		case "scan":
			// The same bound as the HTTP API's: a query from any
			// client must not make this node answer a whole table.
			if q.Limit <= 0 || q.Limit > maxListLimit {
				err = fmt.Errorf("%w: limit must be from 1 to %d, got %d", errBadQuery, maxListLimit, q.Limit)
				break
			}
			var kvs []manager.KeyValue
			kvs, err = r.m.Scan(ctx, q.Table, q.Prefix, q.After, q.Limit)
			a.Entries = toEntries(kvs)
		case "count":
			a.Count, err = r.m.Count(q.Table)
		case "partitions":
			a.Partitions = r.m.Status().Partitions
		case "windows":
			wq := window.Query{All: q.All}
			if q.At != nil {
				wq.At = *q.At
			}
			a.Windows, a.Partition, err = r.m.Windows(ctx, q.Table, q.Key, wq)
		default:
			err = fmt.Errorf("%w: unknown op %q", errBadQuery, q.Op)
		}
	}
	if err != nil {
		a = answer{Code: errCode(err), Error: err.Error()}
	}
	a.V = answerVersion
	b, _ := json.Marshal(a)
	return b
}

// partitionsTimeout bounds the question to one member in
// clusterPartitions: a dead member must not hold the answer up.
const partitionsTimeout = time.Second

// nodePartitions is one member's partitions in GET /v1/cluster/partitions,
// or why they could not be read.
type nodePartitions struct {
	Partitions []status.PartitionStatus `json:"partitions"`
	Error      string                   `json:"error,omitempty"`
}

// clusterPartitions asks every member, at once, for the state of the
// partitions it holds (actives and standbys): this node from its manager,
// the others over their query subjects.
func (r *Router) clusterPartitions(ctx context.Context) map[string]nodePartitions {
	members := r.m.Members()
	out := make(map[string]nodePartitions, len(members))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, node := range members {
		if node == r.m.Node() || r.nc == nil {
			out[node] = nodePartitions{Partitions: r.m.Status().Partitions}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			actx, cancel := context.WithTimeout(ctx, partitionsTimeout)
			defer cancel()
			var np nodePartitions
			if a, err := r.ask(actx, node, query{Op: "partitions"}); err != nil {
				np.Error = err.Error()
			} else {
				np.Partitions = a.Partitions
			}
			mu.Lock()
			out[node] = np
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}
