package edge

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgetables/edgetables/edge/httpapi"
)

// TestConsoleRoutes: with tokens, the console's page is open while its
// data calls need their scopes; /v1/history fills from the node's
// counters as events are processed.
func TestConsoleRoutes(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), "name=count,source=ev.*,key=subject:2,agg=count")
	var err error
	if cfg.HTTPTokens, err = httpapi.LoadTokens(writeTokens(t)); err != nil {
		t.Fatal(err)
	}
	n, _ := runNode(t, cfg)
	base := "http://" + n.HTTPAddr()
	c := http.DefaultClient

	for _, path := range []string{"/", "/console/console.js", "/console/console.css"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(b) == 0 {
			t.Errorf("GET %s without a token: %d (%d bytes), want the asset", path, resp.StatusCode, len(b))
		}
	}
	for _, tc := range []struct {
		path, token string
		status      int
		code        string
	}{
		{"/v1/history", "", 401, httpapi.CodeUnauthorized},
		{"/v1/history", readToken, 403, httpapi.CodeForbidden},
		{"/v1/history", writeToken, 403, httpapi.CodeForbidden},
		{"/v1/history", metricsToken, 200, ""},
		{"/v1/history", adminToken, 200, ""},
		{"/v1/history?since=yesterday", adminToken, 400, httpapi.CodeBadRequest},
		{"/v1/scopes", "", 401, httpapi.CodeUnauthorized},
		{"/v1/scopes", readToken, 200, ""},
		{"/console/../v1/status", "", 401, httpapi.CodeUnauthorized},
		{"/consolex", "", 401, httpapi.CodeUnauthorized},
	} {
		status, body, _ := authRequest(t, c, "GET", base+tc.path, tc.token, "")
		if status != tc.status || (tc.code != "" && body["code"] != tc.code) {
			t.Errorf("GET %s with %q: %d %v; want %d %s", tc.path, tc.token, status, body, tc.status, tc.code)
		}
	}
	for tok, want := range map[string]string{readToken: "read", writeToken: "read,write",
		metricsToken: "metrics", adminToken: "read,write,metrics,admin", hashedToken: "read,metrics"} {
		_, body, _ := authRequest(t, c, "GET", base+"/v1/scopes", tok, "")
		var got []string
		for _, s := range body["scopes"].([]any) {
			got = append(got, s.(string))
		}
		if strings.Join(got, ",") != want || body["tokens"] != true {
			t.Errorf("/v1/scopes of a %s token: %v, want %s", want, body, want)
		}
	}

	for i := 0; i < 20; i++ {
		publish(t, n, "ev.k"+string(rune('a'+i%3)), `{}`)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, body, _ := authRequest(t, c, "GET", base+"/v1/history", metricsToken, "")
		var events, commits float64
		var latency bool
		for _, p := range body["points"].([]any) {
			pt := p.(map[string]any)
			events += pt["events_per_s"].(float64)
			commits += pt["commits"].(float64)
			_, has := pt["commit_ms"]
			latency = latency || has
		}
		if events > 0 && commits > 0 && latency && body["interval_s"] == 1.0 && body["size"] == 600.0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history never showed the events and commits: %v", body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestConsoleOff: Config.NoConsole serves neither the page nor the
// history; the rest of the API is unchanged.
func TestConsoleOff(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), "name=count,source=ev.*,key=subject:2,agg=count")
	cfg.NoConsole = true
	n, _ := runNode(t, cfg)
	for path, want := range map[string]int{"/": 404, "/console/console.js": 404, "/v1/history": 404, "/v1/scopes": 200, "/v1/tables": 200} {
		code, body, _ := getJSON(t, n.HTTPAddr(), path)
		if code != want || (want == 404 && body["code"] != httpapi.CodeNotFound) {
			t.Errorf("GET %s with the console off: %d %v, want %d", path, code, body, want)
		}
	}
}
