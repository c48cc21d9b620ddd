package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/edgetables/edgetables/edge/httpapi"
)

// TestQueryScanLimitIsBounded: a scan asked over the NATS query subject
// (what a cluster member answers) takes the HTTP API's bounds on limit, so
// that no client can make a node answer a whole table in one reply.
func TestQueryScanLimitIsBounded(t *testing.T) {
	n, stop := startNode(t, t.TempDir(), "name=count,source=ev.*,key=subject:2,agg=count")
	defer stop()
	r := httpapi.NewRouter(n.Manager(), nil, "edgetables")
	const maxListLimit = 10000 // the HTTP API's bound on limit
	for _, c := range []struct {
		limit int
		code  string
	}{{0, httpapi.CodeBadRequest}, {-1, httpapi.CodeBadRequest}, {maxListLimit + 1, httpapi.CodeBadRequest}, {1 << 30, httpapi.CodeBadRequest}, {10, ""}, {maxListLimit, ""}} {
		req := fmt.Appendf(nil, `{"v":1,"op":"scan","table":"count","limit":%d}`, c.limit)
		var a struct{ Code, Error string }
		if err := json.Unmarshal(r.Serve(context.Background(), req), &a); err != nil {
			t.Fatal(err)
		}
		if a.Code != c.code {
			t.Errorf("scan with limit %d: code %q (%s); want %q", c.limit, a.Code, a.Error, c.code)
		}
	}
}

// TestHTTPServerBounds: the node's HTTP server refuses more than 64 KiB of
// headers (431; Go's default takes 1 MiB), and has read, write and idle
// timeouts, so a slow or idle client holds no connection for ever.
func TestHTTPServerBounds(t *testing.T) {
	srv := httpapi.NewServer(http.NotFoundHandler())
	if srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 || srv.ReadHeaderTimeout <= 0 {
		t.Errorf("timeouts: read %v, write %v, idle %v, header %v; want all set", srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout, srv.ReadHeaderTimeout)
	}
	n, stop := startNode(t, t.TempDir(), "name=count,source=ev.*,key=subject:2,agg=count")
	defer stop()
	req, err := http.NewRequest("GET", "http://"+n.HTTPAddr()+"/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Big", strings.Repeat("x", 200<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("200 KiB of headers: HTTP %d, want 431 (the server takes 64 KiB)", resp.StatusCode)
	}
}
