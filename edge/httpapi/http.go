// Package httpapi serves the HTTP API of an edgetables node over its table
// manager: reads of every table (routed to the key's owner over NATS in a
// cluster, see Router), writes of global tables, status, readiness and
// Prometheus metrics, the console's routes, bearer tokens with scopes
// (Tokens) and TLS (HTTPTLS). Errors are JSON {"error", "code"} with the
// Code constants. The node (package edge) builds it with New.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgetables/edgetables/edge/console"
	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/status"
	"github.com/edgetables/edgetables/manager/window"
)

// Error codes of the HTTP API: stable, for clients to branch on.
const (
	CodeTableNotFound = "table_not_found"
	CodeKeyNotFound   = "key_not_found"
	CodeBadKey        = "bad_key"
	CodeBadRequest    = "bad_request"
	CodeNotReady      = "not_ready"
	CodeNotOwner      = "not_owner"
	CodeInternal      = "internal"
	// CodeNotFound: no route has the request's path.
	CodeNotFound = "not_found"
	// CodeMethodNotAllowed: the path takes other methods (see Allow).
	CodeMethodNotAllowed = "method_not_allowed"
)

// maxListLimit caps the entries one list request returns.
const maxListLimit = 10000

// API serves the HTTP API of a node over its table manager.
type API struct {
	m   *manager.TableManager
	r   *Router
	log *slog.Logger
	// extra adds fields to /v1/status.
	extra func() map[string]any
	// collectors add metrics to /metrics.
	collectors []prometheus.Collector
	// tokens, when set, make every route but /healthz and /readyz need a
	// bearer token of the route's scope; clientCerts, a verified client
	// certificate (see authenticate).
	tokens      *Tokens
	clientCerts bool
	// reasons adds reasons to /readyz.
	reasons func() []string
	// maxValue, when positive, caps a PUT's value below maxValueBytes: the
	// largest value the global log's messages carry (jetstream.MaxRecordBytes).
	maxValue int
	// sites, on a hub node, serves its sites' tables.
	sites *jetstream.SiteTables
	// storage, with an embedded server, says when writes fail for want
	// of space: /readyz, /v1/status and /metrics show it.
	storage Storage
	// console and history, set by EnableConsole, serve the console.
	console bool
	history *console.History
}

// Storage says why the node's storage refuses writes (nil while it takes
// them): /readyz, /v1/status and /metrics show it.
type Storage interface {
	Reasons() []string
}

// storageReasons returns s's reasons (none without storage).
func storageReasons(s Storage) []string {
	if s == nil {
		return nil
	}
	return s.Reasons()
}

// Options configure an API beyond its manager. Zero fields are off.
type Options struct {
	// Logger receives the API's logs (default slog.Default()).
	Logger *slog.Logger
	// Tokens, when set, make every route but /healthz and /readyz need a
	// bearer token with the route's scope; ClientCerts, a verified client
	// certificate (the listener's TLS asks for it, see HTTPTLS).
	Tokens      *Tokens
	ClientCerts bool
	// MaxValue, when positive, caps a PUT's value below 1 MiB: the largest
	// value the global log's messages carry (jetstream.MaxRecordBytes).
	MaxValue int
	// Sites, on a hub node, serves its sites' tables at /v1/sites.
	Sites *jetstream.SiteTables
	// Storage, when set, says when writes fail for want of space.
	Storage Storage
	// Collectors add metrics to /metrics.
	Collectors []prometheus.Collector
	// Status adds fields to /v1/status; Reasons adds reasons to /readyz.
	Status  func() map[string]any
	Reasons func() []string
	// Router routes reads to the owners of the keys' partitions (a
	// clustered node); default: every read is local.
	Router *Router
}

// New returns the HTTP API over m.
func New(m *manager.TableManager, o Options) *API {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Router == nil {
		o.Router = NewRouter(m, nil, "")
	}
	return &API{m: m, r: o.Router, log: o.Logger, extra: o.Status, collectors: o.Collectors,
		tokens: o.Tokens, clientCerts: o.ClientCerts, reasons: o.Reasons, maxValue: o.MaxValue,
		sites: o.Sites, storage: o.Storage}
}

// Handler returns the API's routes (with the scope a bearer token needs
// for each when the API has tokens):
//
//	GET /v1/tables                         tables with spec, partitions, key counts
//	GET /v1/tables/{table}/keys/{key}      one value
//	GET /v1/tables/{table}/keys/{key}?window=now|all|TIME   windows of a windowed table
//	GET /v1/tables/{table}/keys?prefix=&after=&limit=   entries in key order
//	PUT /v1/tables/{table}/keys/{key}      write a global table's key (JSON body; If-Match: REVISION)
//	DELETE /v1/tables/{table}/keys/{key}   delete a global table's key (If-Match: REVISION)
//	GET /v1/sites/{site}/tables/{table}/keys/{key}   a site's table key, at a hub node (read-only)
//	GET /v1/status                         node and partition state
//	GET /v1/cluster/partitions             every member's partition states, asked at once (1 s bound each)
//	GET /v1/scopes                         the scopes of the request's token (any token)
//	GET /v1/history?since=TIME             the console's history of counters (scope metrics; with the console)
//	GET /  and  GET /console/...           the console's page and assets (no token; with the console)
//	GET /healthz                           the process is up
//	GET /readyz                            200 while every assigned partition is served; 503 with the reasons
//	GET /metrics                           Prometheus metrics (text format)
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.need(ScopeMetrics, metricsHandler(a.m, a.log, a.storage, a.collectors...).ServeHTTP))
	mux.Handle("GET /v1/tables", a.need(ScopeRead, a.listTables))
	mux.Handle("GET /v1/tables/{table}/keys/{key}", a.need(ScopeRead, a.getKey))
	mux.Handle("GET /v1/tables/{table}/keys", a.need(ScopeRead, a.listKeys))
	mux.Handle("PUT /v1/tables/{table}/keys/{key}", a.need(ScopeWrite, a.putKey))
	mux.Handle("DELETE /v1/tables/{table}/keys/{key}", a.need(ScopeWrite, a.deleteKey))
	mux.Handle("GET /v1/sites/{site}/tables/{table}/keys/{key}", a.need(ScopeRead, a.getSiteKey))
	mux.Handle("GET /v1/status", a.need(ScopeAdmin, a.status))
	mux.Handle("GET /v1/cluster/partitions", a.need(ScopeAdmin, a.clusterPartitions))
	a.consoleRoutes(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ready, reasons := a.m.Readiness()
		more := storageReasons(a.storage)
		if a.reasons != nil {
			more = append(more, a.reasons()...)
		}
		if len(more) > 0 {
			ready, reasons = false, append(reasons, more...)
		}
		if !ready {
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "reasons": reasons})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	return a.authenticate(a.keyReads(jsonErrors(mux)))
}

func (a *API) listTables(w http.ResponseWriter, r *http.Request) {
	// One count per table, over the cluster (not a local count first).
	infos := a.m.TableList()
	if infos == nil {
		infos = []status.TableInfo{}
	}
	for i := range infos {
		n, err := a.r.count(r.Context(), infos[i].Name)
		switch {
		case errors.Is(err, manager.ErrTableNotFound):
			// Declared here, not on another node (during a rolling
			// change of the tables): the listing stays whole.
			infos[i].KeysError = err.Error()
		case err != nil:
			a.fail(w, r, err)
			return
		default:
			infos[i].Keys = n
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tables": infos})
}

// entry is one key in the HTTP API; Partition is nil for a global table
// (every node holds all of it: no partition).
type entry struct {
	Table     string          `json:"table,omitempty"`
	Key       string          `json:"key"`
	Value     json.RawMessage `json:"value"`
	Partition *int            `json:"partition,omitempty"`
}

// partitionOf returns p for an entry of table, nil for a global table.
func (a *API) partitionOf(t manager.Collection, p int) *int {
	if a.m.IsGlobal(t.Name()) {
		return nil
	}
	return &p
}

func (a *API) getKey(w http.ResponseWriter, r *http.Request) {
	a.readKey(w, r, r.PathValue("table"), r.PathValue("key"))
}

// readKey answers GET /v1/tables/{table}/keys/{key} for name and key (the
// path's segments, unescaped).
func (a *API) readKey(w http.ResponseWriter, r *http.Request, name, key string) {
	t, err := a.m.Table(name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	kb, err := t.ParseKey(key)
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeBadKey, err.Error())
		return
	}
	if wc, ok := t.(manager.WindowedCollection); ok {
		a.getWindows(w, r, wc, key, kb)
		return
	}
	if r.URL.RawQuery != "" && r.URL.Query().Has("window") {
		writeError(w, http.StatusBadRequest, CodeBadRequest, "table "+name+" is not windowed: window= does not apply")
		return
	}
	var rev uint64
	if wt, ok := t.(manager.WritableCollection); ok {
		// Read before the value: a write in between makes the revision
		// older than the value, so a conditional write fails safely.
		if rev, err = wt.Revision(kb); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	v, p, err := a.r.get(r.Context(), name, kb)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if rev > 0 {
		w.Header().Set("ETag", strconv.Quote(strconv.FormatUint(rev, 10)))
	}
	js, err := t.ValueJSON(v)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if a.m.IsGlobal(t.Name()) {
		p = -1 // no partition
	}
	writeEntry(w, name, key, js, p)
}

// windowJSON is one window of a key in the HTTP API.
type windowJSON struct {
	Start time.Time       `json:"start"`
	End   time.Time       `json:"end"`
	Value json.RawMessage `json:"value"`
}

// getWindows answers a key of a windowed table: ?window=now (the default)
// or an RFC 3339 time gives the most recent window containing that instant,
// {"table", "key", "window": {"start", "end"}, "value", "partition"};
// ?window=all gives every open window, oldest first, {"table", "key",
// "windows": [{"start", "end", "value"}], "partition"}. A key without such
// windows is 404 key_not_found.
func (a *API) getWindows(w http.ResponseWriter, r *http.Request, t manager.WindowedCollection, key string, kb []byte) {
	var q window.Query
	switch sel := r.URL.Query().Get("window"); sel {
	case "", "now":
	case "all":
		q.All = true
	default:
		at, err := time.Parse(time.RFC3339Nano, sel)
		if err != nil || at.Unix() <= 0 {
			// The zero time would mean now to the query.
			writeError(w, http.StatusBadRequest, CodeBadRequest, "window "+strconv.Quote(sel)+": want now, all or an RFC 3339 time after 1970")
			return
		}
		q.At = at
	}
	es, p, err := a.r.windows(r.Context(), t.Name(), kb, q)
	if err == nil && len(es) == 0 {
		err = fmt.Errorf("%w: table %s has no open window of key %q there", manager.ErrKeyNotFound, t.Name(), key)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := make([]windowJSON, 0, len(es))
	for _, e := range es {
		js, err := t.ValueJSON(e.Value)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		out = append(out, windowJSON{Start: e.Start, End: e.End, Value: js})
	}
	if q.All {
		writeJSON(w, http.StatusOK, map[string]any{"table": t.Name(), "key": key, "windows": out, "partition": p})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"table": t.Name(), "key": key, "partition": p,
		"window": map[string]time.Time{"start": out[0].Start, "end": out[0].End}, "value": out[0].Value})
}

func (a *API) listKeys(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("table")
	t, err := a.m.Table(name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxListLimit {
			writeError(w, http.StatusBadRequest, CodeBadRequest, "limit must be an integer from 1 to "+strconv.Itoa(maxListLimit))
			return
		}
		limit = n
	}
	var prefix, after []byte
	if s := q.Get("prefix"); s != "" {
		// A prefix of a text key is a prefix of its bytes for text codecs.
		prefix = []byte(s)
	}
	if s := q.Get("after"); s != "" {
		parse := t.ParseKey
		if wc, ok := t.(manager.WindowedCollection); ok {
			parse = wc.ParseStoreKey // listings show windows as KEY@START
		}
		if after, err = parse(s); err != nil {
			writeError(w, http.StatusBadRequest, CodeBadKey, err.Error())
			return
		}
	}
	kvs, err := a.r.scan(r.Context(), name, prefix, after, limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := make([]entry, 0, len(kvs))
	for _, kv := range kvs {
		k, err := t.FormatKey(kv.Key)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		js, err := t.ValueJSON(kv.Value)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		out = append(out, entry{Key: k, Value: js, Partition: a.partitionOf(t, kv.Partition)})
	}
	resp := map[string]any{"table": name, "entries": out}
	if len(out) == limit {
		resp["next"] = out[len(out)-1].Key
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *API) status(w http.ResponseWriter, r *http.Request) {
	st := a.m.Status()
	resp := map[string]any{"node": st.Node, "ready": st.Ready, "partitions": st.Partitions,
		"events_processed": st.EventsProcessed, "changelog_records": st.ChangelogRecords,
		"commits": st.Commits, "mean_commit_ms": float64(st.MeanCommit.Microseconds()) / 1000,
		"rebalances": st.Rebalances, "generation": st.Generation, "dead_letters": st.DeadLetters}
	if sr := storageReasons(a.storage); len(sr) > 0 {
		resp["ready"] = false
		resp["not_ready"] = append(sr, st.NotReady...)
	}
	if cs := a.m.Cluster(); cs != nil {
		resp["cluster"] = cs
	}
	if st.Global != nil {
		resp["global"] = st.Global
	}
	if a.extra != nil {
		for k, v := range a.extra() {
			resp[k] = v
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// clusterPartitions answers every member's partition states (this node's
// alone when not clustered); a member that did not answer within a second
// has its error instead.
func (a *API) clusterPartitions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"node": a.m.Node(), "nodes": a.r.clusterPartitions(r.Context())})
}

// fail maps a manager error to a status code.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, manager.ErrTableNotFound):
		writeError(w, http.StatusNotFound, CodeTableNotFound, err.Error())
	case errors.Is(err, manager.ErrKeyNotFound):
		writeError(w, http.StatusNotFound, CodeKeyNotFound, err.Error())
	case errors.Is(err, manager.ErrNotReady):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, CodeNotReady, err.Error())
	case errors.Is(err, manager.ErrNotOwner):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, CodeNotOwner, err.Error())
	case errors.Is(err, context.Canceled):
		writeError(w, http.StatusServiceUnavailable, CodeNotReady, err.Error())
	default:
		a.log.Error("http request failed", "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, CodeInternal, err.Error())
	}
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"error": msg, "code": code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
