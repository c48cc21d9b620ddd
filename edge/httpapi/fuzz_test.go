package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/edge"
	"github.com/edgetables/edgetables/edge/builtin"
	"github.com/edgetables/edgetables/edge/httpapi"
)

// The tokens of the fuzz targets, one of each scope.
const (
	readToken    = "read-token-0123456789"
	writeToken   = "write-token-0123456789"
	adminToken   = "admin-token-0123456789"
	metricsToken = "metrics-token-0123456789"
)

// fuzzNode starts, once per fuzzing process, a node with a plain, a
// windowed, a set and a global table, and returns it with the API handler
// a node builds with tokens of every scope.
func fuzzNode(f *testing.F) (*edge.Node, http.Handler) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := edge.Config{Name: "n1", DataDir: f.TempDir(), NATSListen: "127.0.0.1:0", HTTPListen: "off", Partitions: 4, Logger: log}
	for _, spec := range []string{"name=count,source=ev.*,key=subject:2,agg=count",
		"name=win,source=ev.*,key=subject:2,agg=sum,field=v,window=1m,time=json:ts",
		"name=tags,source=ev.*,key=subject:2,agg=set,field=tag"} {
		s, err := builtin.ParseTableSpec(spec)
		if err != nil {
			f.Fatal(err)
		}
		table, agent, err := builtin.Builtin(s)
		if err != nil {
			f.Fatal(err)
		}
		cfg.Tables, cfg.Agents = append(cfg.Tables, table), append(cfg.Agents, agent)
	}
	global, err := builtin.GlobalJSONTable("config")
	if err != nil {
		f.Fatal(err)
	}
	cfg.Tables = append(cfg.Tables, global)
	path := f.TempDir() + "/tokens"
	if err := os.WriteFile(path, []byte("read "+readToken+"\nwrite "+writeToken+"\nadmin "+adminToken+"\nmetrics "+metricsToken+"\n"), 0o600); err != nil {
		f.Fatal(err)
	}
	tokens, err := httpapi.LoadTokens(path)
	if err != nil {
		f.Fatal(err)
	}
	n, err := edge.NewNode(cfg)
	if err != nil {
		f.Fatal(err)
	}
	runReadyNode(f, n)
	return n, httpapi.New(n.Manager(), httpapi.Options{Logger: log, Tokens: tokens}).Handler()
}

// publish publishes an event to the node's source.
func publish(f *testing.F, n *edge.Node, subject, data string) {
	nc, err := nats.Connect(n.ClientURL())
	if err != nil {
		f.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	if _, err := js.Publish(context.Background(), subject, []byte(data)); err != nil {
		f.Fatal(err)
	}
}

var fuzzMethods = []string{"GET", "PUT", "DELETE", "POST", "HEAD"}
var fuzzTokens = []string{"", readToken, writeToken, adminToken, metricsToken, "unknown-token-000000"}

// FuzzHTTPAPI sends any method, path, query, body, If-Match and token to the
// real handler of a running node: it never panics nor answers 500; every
// answer but /metrics and HEAD is JSON, errors as {"error", "code"}; a
// request without a known token is 401 unless it is a health check.
func FuzzHTTPAPI(f *testing.F) {
	n, h := fuzzNode(f)
	publish(f, n, "ev.a", `{"v":2,"ts":"2026-01-01T00:00:00Z","tag":"x"}`)
	f.Add(uint8(0), "/v1/tables/count/keys/a", "", []byte(nil), "", uint8(1))
	f.Add(uint8(0), "/v1/tables/win/keys/a", "window=all", []byte(nil), "", uint8(1))
	f.Add(uint8(0), "/v1/tables/win/keys/a", "window=2026-01-01T00:00:30Z", []byte(nil), "", uint8(1))
	f.Add(uint8(0), "/v1/tables/tags/keys", "prefix=a&after=a&limit=3", []byte(nil), "", uint8(1))
	f.Add(uint8(0), "/v1/tables/win/keys", "after=a@2026-01-01T00:00:00Z", []byte(nil), "", uint8(1))
	f.Add(uint8(1), "/v1/tables/config/keys/k", "", []byte(`{"a":1}`), "0", uint8(2))
	f.Add(uint8(2), "/v1/tables/config/keys/k", "", []byte(nil), `"7"`, uint8(3))
	f.Add(uint8(1), "/v1/tables/count/keys/k", "", []byte(`1`), "", uint8(1))
	f.Add(uint8(0), "/v1/status", "", []byte(nil), "", uint8(3))
	f.Add(uint8(0), "/metrics", "", []byte(nil), "", uint8(4))
	f.Add(uint8(0), "/healthz", "", []byte(nil), "", uint8(0))
	f.Add(uint8(0), "/v1/tables", "", []byte(nil), "", uint8(5))
	f.Fuzz(func(t *testing.T, method uint8, path, query string, body []byte, ifMatch string, token uint8) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req := &http.Request{Method: fuzzMethods[int(method)%len(fuzzMethods)], URL: &url.URL{Path: path, RawQuery: query},
			Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), Host: "node", RequestURI: path}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req = req.WithContext(ctx)
		if ifMatch != "" {
			req.Header.Set("If-Match", ifMatch)
		}
		tok := fuzzTokens[int(token)%len(fuzzTokens)]
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		res := w.Result()
		if res.StatusCode >= 500 && res.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("%s %s?%s: %d %s", req.Method, path, query, res.StatusCode, w.Body.Bytes())
		}
		known := tok != "" && tok != fuzzTokens[len(fuzzTokens)-1]
		if !known && !httpapi.Open(path) && res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s %s without a known token: %d", req.Method, path, res.StatusCode)
		}
		if req.Method == "HEAD" || res.StatusCode < 400 && path == "/metrics" || res.StatusCode == http.StatusMovedPermanently ||
			res.Header.Get("Content-Type") == "text/plain; charset=utf-8" && (res.StatusCode == 404 || res.StatusCode == 405) {
			return // the mux's own answers: redirects, unknown routes and methods
		}
		var doc map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
			t.Fatalf("%s %s?%s: %d, body %q is not a JSON object: %v", req.Method, path, query, res.StatusCode, w.Body.Bytes(), err)
		}
		if res.StatusCode >= 400 && (doc["code"] == nil || doc["error"] == nil) && path != "/readyz" {
			t.Fatalf("%s %s?%s: error %d without code and error: %s", req.Method, path, query, res.StatusCode, w.Body.Bytes())
		}
	})
}

// FuzzRouterServe answers any routed query (what another node, or any NATS
// client, sends to a node's query subject) from a running node, and decodes
// any answer as the asking node does: the answer is JSON, a failure has one
// of the API's codes other than internal, and an answer's error wraps the
// sentinel of its code.
func FuzzRouterServe(f *testing.F) {
	n, _ := fuzzNode(f)
	publish(f, n, "ev.a", `{"v":2,"ts":"2026-01-01T00:00:00Z","tag":"x"}`)
	r := httpapi.NewRouter(n.Manager(), nil, "edgetables")
	for _, q := range []httpapi.Query{{Op: "get", Table: "count", Key: []byte("a")}, {Op: "scan", Table: "tags", Limit: 5},
		{Op: "count", Table: "win"}, {Op: "windows", Table: "win", Key: []byte("a"), All: true}, {Op: "get", Table: "config", Key: []byte("k")},
		{Op: "windows", Table: "count", Key: []byte("a")}, {Op: "drop", Table: "count"}} {
		b, _ := json.Marshal(q)
		f.Add(b)
	}
	f.Add([]byte(`{"op":"windows","table":"win","key":"YQ==","at":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"op":"scan","table":"count","limit":1e3,"after":"!!"}`))
	f.Fuzz(func(t *testing.T, req []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp := r.Serve(ctx, req)
		var a httpapi.Answer
		if err := json.Unmarshal(resp, &a); err != nil {
			t.Fatalf("%q: answer %q is not JSON: %v", req, resp, err)
		}
		if a.Code == httpapi.CodeInternal {
			t.Fatalf("%q: internal error: %s", req, a.Error)
		}
		if a.Code != "" {
			if _, ok := httpapi.CodeErrors[a.Code]; !ok {
				t.Fatalf("%q: unknown code %q", req, a.Code)
			}
		}
		got, err := httpapi.DecodeAnswer("n2", resp)
		if err == nil && got.Code != "" {
			t.Fatalf("%q: answer with code %q decoded without an error", req, got.Code)
		}
		if err != nil && got.Code != "" {
			if e, ok := httpapi.CodeErrors[got.Code]; ok && !errors.Is(err, e) {
				t.Fatalf("%q: %v does not wrap the error of code %s", req, err, got.Code)
			}
		}
	})
}

// runReadyNode runs n until the test ends (its Run must then return nil)
// and waits until it has started and its table manager is ready.
func runReadyNode(tb testing.TB, n *edge.Node) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("node Run: %v", err)
		}
	})
	select {
	case <-n.Started():
	case err := <-done:
		tb.Fatalf("node stopped: %v", err)
	case <-time.After(20 * time.Second):
		tb.Fatal("node did not start")
	}
	for deadline := time.Now().Add(20 * time.Second); !n.Manager().Ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatal("node not ready")
		}
	}
}
