package edge

import (
	"context"
	"encoding/json"
	"testing"
)

// TestQueryScanLimitIsBounded: a scan asked over the NATS query subject
// (what a cluster member answers) takes the HTTP API's bounds on limit, so
// that no client can make a node answer a whole table in one reply.
func TestQueryScanLimitIsBounded(t *testing.T) {
	n, stop := startNode(t, t.TempDir(), "name=count,source=ev.*,key=subject:2,agg=count")
	defer stop()
	r := &router{m: n.Manager(), app: "edgetables"}
	for _, c := range []struct {
		limit int
		code  string
	}{{0, CodeBadRequest}, {-1, CodeBadRequest}, {maxListLimit + 1, CodeBadRequest}, {1 << 30, CodeBadRequest}, {10, ""}} {
		req, _ := json.Marshal(query{Op: "scan", Table: "count", Limit: c.limit})
		var a answer
		if err := json.Unmarshal(r.serve(context.Background(), req), &a); err != nil {
			t.Fatal(err)
		}
		if a.Code != c.code {
			t.Errorf("scan with limit %d: code %q (%s); want %q", c.limit, a.Code, a.Error, c.code)
		}
	}
}
