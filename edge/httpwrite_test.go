package edge

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgetables/edgetables/edge/builtin"
	"github.com/edgetables/edgetables/edge/httpapi"
)

// request sends method to path with body and headers, and decodes the JSON
// answer.
func request(t *testing.T, method, base, path, body string, header map[string]string) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&out); err != nil {
		t.Fatalf("%s %s: body %q is not JSON: %v", method, path, b, err)
	}
	return resp.StatusCode, out, resp.Header
}

// TestHTTPWritesToGlobalTable: PUT and DELETE write a global table's keys,
// If-Match makes them conditional (0: the key must not exist, also after a
// delete), and tables written by agents refuse them.
func TestHTTPWritesToGlobalTable(t *testing.T) {
	n, base := globalNode(t)
	const key = "/v1/tables/config/keys/site-1"

	code, body, hdr := request(t, "PUT", base, key, `{"threshold": 30, "unit": "C"}`, map[string]string{"If-Match": "0"})
	if code != http.StatusOK || body["revision"] == nil {
		t.Fatalf("create = %d %v", code, body)
	}
	rev := hdr.Get("ETag")
	code, body, hdr = getJSON(t, base, key)
	if code != http.StatusOK || hdr.Get("ETag") != rev || body["value"].(map[string]any)["threshold"] != float64(30) {
		t.Fatalf("GET = %d %v (ETag %q, want %q)", code, body, hdr.Get("ETag"), rev)
	}
	if code, body, _ = request(t, "PUT", base, key, `{"threshold": 1}`, map[string]string{"If-Match": "0"}); code != http.StatusPreconditionFailed || body["code"] != httpapi.CodeConflict {
		t.Fatalf("second create = %d %v, want 412 conflict", code, body)
	}
	if code, body, _ = request(t, "PUT", base, key, `{"threshold": 35}`, map[string]string{"If-Match": rev}); code != http.StatusOK {
		t.Fatalf("update at %s = %d %v", rev, code, body)
	}
	if code, body, _ = request(t, "DELETE", base, key, "", map[string]string{"If-Match": rev}); code != http.StatusPreconditionFailed {
		t.Fatalf("stale delete = %d %v, want 412", code, body)
	}
	if code, body, _ = request(t, "DELETE", base, key, "", nil); code != http.StatusOK {
		t.Fatalf("delete = %d %v", code, body)
	}
	if code, _, _ = getJSON(t, base, key); code != http.StatusNotFound {
		t.Fatalf("GET after delete = %d, want 404", code)
	}
	if code, body, _ = request(t, "PUT", base, key, `"back"`, map[string]string{"If-Match": "0"}); code != http.StatusOK {
		t.Fatalf("create after delete = %d %v", code, body)
	}
	// The status shows the global copy's progress: four writes stored
	// (create, update, delete, create; the refused ones are not).
	waitFor(t, 10*time.Second, "global.applied_offset in /v1/status", func() bool {
		_, st, _ := getJSON(t, base, "/v1/status")
		g, _ := st["global"].(map[string]any)
		return g != nil && g["ready"] == true && g["applied_offset"] == float64(4)
	})

	for _, tc := range []struct {
		name, method, path, body string
		header                   map[string]string
		status                   int
		code                     string
	}{
		{"not JSON", "PUT", key, `{"threshold":`, nil, http.StatusBadRequest, httpapi.CodeBadRequest},
		{"invalid UTF-8 in the value", "PUT", key, "\"a\xffb\"", nil, http.StatusBadRequest, httpapi.CodeBadRequest},
		{"invalid UTF-8 in the key", "PUT", "/v1/tables/config/keys/d%FF", `1`, nil, http.StatusBadRequest, httpapi.CodeBadKey},
		{"bad If-Match", "PUT", key, `1`, map[string]string{"If-Match": "latest"}, http.StatusBadRequest, httpapi.CodeBadRequest},
		{"agent's table", "PUT", "/v1/tables/count/keys/d1", `1`, nil, http.StatusMethodNotAllowed, httpapi.CodeNotWritable},
		{"agent's table delete", "DELETE", "/v1/tables/count/keys/d1", ``, nil, http.StatusMethodNotAllowed, httpapi.CodeNotWritable},
		{"unknown table", "PUT", "/v1/tables/nope/keys/d1", `1`, nil, http.StatusNotFound, httpapi.CodeTableNotFound},
		{"too large", "PUT", key, `"` + strings.Repeat("x", 1<<20) /* over the API's 1 MiB cap of a PUT */ + `"`, nil, http.StatusRequestEntityTooLarge, httpapi.CodeTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := request(t, tc.method, base, tc.path, tc.body, tc.header)
			if code != tc.status || body["code"] != tc.code {
				t.Fatalf("%s %s = %d %v, want %d %s", tc.method, tc.path, code, body, tc.status, tc.code)
			}
		})
	}
	fams := scrape(t, n)
	if applied := value(t, fams, "edgetables_global_applied_offset"); applied != 4 {
		t.Errorf("global applied offset = %v, want 4 (the writes that landed)", applied)
	}
	if lag := value(t, fams, "edgetables_global_lag_records"); lag != 0 {
		t.Errorf("global lag = %v, want 0", lag)
	}
	code, body, _ = getJSON(t, base, "/v1/tables/config/keys")
	if entries := body["entries"].([]any); code != http.StatusOK || len(entries) != 1 || entries[0].(map[string]any)["value"] != "back" {
		t.Fatalf("listing = %d %v", code, body)
	}
}

// globalNode runs a node with a partitioned count table (on ev.*) and a
// global JSON table "config", and returns it with its HTTP address.
func globalNode(t *testing.T) (*Node, string) {
	t.Helper()
	cfg := Config{Name: "n1", DataDir: t.TempDir(), NATSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
		Partitions: 4, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	spec, err := builtin.ParseTableSpec("name=count,source=ev.*,key=subject:2,agg=count")
	if err != nil {
		t.Fatal(err)
	}
	table, agent, err := builtin.Builtin(spec)
	if err != nil {
		t.Fatal(err)
	}
	global, err := builtin.GlobalJSONTable("config")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Tables = append(cfg.Tables, table, global)
	cfg.Agents = append(cfg.Agents, agent)
	n, _ := runNode(t, cfg)
	return n, n.HTTPAddr()
}
