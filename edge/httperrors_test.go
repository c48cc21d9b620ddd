package edge

import (
	"net/http"
	"strings"
	"testing"

	"github.com/edgetables/edgetables/edge/httpapi"
)

// TestHTTPErrorShape: every error answer is JSON {"error", "code"}: unknown
// paths and wrong methods too; a value over the global log's real limit is
// 413 too_large (and one at the limit is stored); a failed If-Match is 412
// conflict without the NATS API error; a global table's keys carry no
// partition, a partitioned table's do.
func TestHTTPErrorShape(t *testing.T) {
	n, base := globalNode(t)
	const key = "/v1/tables/config/keys/site-1"
	if code, body, _ := request(t, "PUT", base, key, `{"a": 1}`, nil); code != http.StatusOK {
		t.Fatalf("PUT = %d %v", code, body)
	}
	// The embedded server's max_payload (1 MiB) less the headers' room.
	const limit = 1<<20 - 1024
	str := func(n int) string { return `"` + strings.Repeat("x", n-2) + `"` } // n bytes of JSON

	for _, tc := range []struct {
		name, method, path, body string
		header                   map[string]string
		status                   int
		code                     string
	}{
		{"unknown path", "GET", "/v2/tables", "", nil, http.StatusNotFound, httpapi.CodeNotFound},
		{"unknown path under v1", "GET", "/v1/tables/count", "", nil, http.StatusNotFound, httpapi.CodeNotFound},
		{"wrong method", "POST", "/v1/tables", "{}", nil, http.StatusMethodNotAllowed, httpapi.CodeMethodNotAllowed},
		{"wrong method on a key", "PATCH", key, "{}", nil, http.StatusMethodNotAllowed, httpapi.CodeMethodNotAllowed},
		{"value at the limit", "PUT", "/v1/tables/config/keys/big", str(limit), nil, http.StatusOK, ""},
		{"value over the limit", "PUT", "/v1/tables/config/keys/big", str(limit + 1), nil, http.StatusRequestEntityTooLarge, httpapi.CodeTooLarge},
		{"value of 1 MiB", "PUT", "/v1/tables/config/keys/big", str(1 << 20), nil, http.StatusRequestEntityTooLarge, httpapi.CodeTooLarge},
		{"failed If-Match", "PUT", key, `{"a": 2}`, map[string]string{"If-Match": "0"}, http.StatusPreconditionFailed, httpapi.CodeConflict},
		{"failed If-Match delete", "DELETE", key, "", map[string]string{"If-Match": "999"}, http.StatusPreconditionFailed, httpapi.CodeConflict},
		{"key over 1,024 bytes", "GET", "/v1/tables/count/keys/" + strings.Repeat("k", 1025), "", nil, http.StatusBadRequest, httpapi.CodeBadKey},
		{"unknown table", "GET", "/v1/tables/nope/keys/a", "", nil, http.StatusNotFound, httpapi.CodeTableNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, hdr := request(t, tc.method, base, tc.path, tc.body, tc.header)
			if code != tc.status {
				t.Fatalf("%s %s = %d %v, want %d %s", tc.method, tc.path, code, body, tc.status, tc.code)
			}
			if tc.code == "" {
				return
			}
			msg, _ := body["error"].(string)
			if body["code"] != tc.code || msg == "" {
				t.Fatalf("%s %s = %d %v, want {error, code: %s}", tc.method, tc.path, code, body, tc.code)
			}
			if strings.Contains(msg, "nats:") || strings.Contains(msg, "err_code") {
				t.Errorf("error %q carries NATS internals", msg)
			}
			if code == http.StatusMethodNotAllowed && !strings.Contains(hdr.Get("Allow"), "GET") {
				t.Errorf("405 without Allow: %q", hdr.Get("Allow"))
			}
		})
	}

	code, body, _ := getJSON(t, base, key)
	if _, has := body["partition"]; code != http.StatusOK || has {
		t.Errorf("global key = %d %v, want no partition", code, body)
	}
	code, body, _ = getJSON(t, base, "/v1/tables/config/keys")
	for _, e := range body["entries"].([]any) {
		if _, has := e.(map[string]any)["partition"]; code != http.StatusOK || has {
			t.Errorf("global listing entry %v has a partition", e)
		}
	}
	publish(t, n, "ev.d1", "{}")
	waitValue(t, n, "count", "d1", "1")
	if code, body, _ = getJSON(t, base, "/v1/tables/count/keys/d1"); code != http.StatusOK || body["partition"] == nil {
		t.Errorf("partitioned key = %d %v, want its partition", code, body)
	}
}
