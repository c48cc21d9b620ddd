package httpapi_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/edge"
	"github.com/edgetables/edgetables/edge/builtin"
	"github.com/edgetables/edgetables/edge/httpapi"
)

// startNode runs a node with the tables of specs (builtin.ParseTableSpec)
// and the global JSON tables globals, its HTTP API on loopback, until the
// test ends; it returns once the node is ready.
func startNode(tb testing.TB, specs, globals []string) *edge.Node {
	tb.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := edge.Config{Name: "n1", DataDir: tb.TempDir(), NATSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", Partitions: 4, Logger: log}
	for _, spec := range specs {
		s, err := builtin.ParseTableSpec(spec)
		if err != nil {
			tb.Fatal(err)
		}
		table, agent, err := builtin.Builtin(s)
		if err != nil {
			tb.Fatal(err)
		}
		cfg.Tables, cfg.Agents = append(cfg.Tables, table), append(cfg.Agents, agent)
	}
	for _, name := range globals {
		g, err := builtin.GlobalJSONTable(name)
		if err != nil {
			tb.Fatal(err)
		}
		cfg.Tables = append(cfg.Tables, g)
	}
	n, err := edge.NewNode(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	runReadyNode(tb, n)
	return n
}

// publishAll publishes each event (subject, data) to n's source and waits
// for the acks.
func publishAll(tb testing.TB, n *edge.Node, events [][2]string) {
	tb.Helper()
	nc, err := nats.Connect(n.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	var acks []natsjs.PubAckFuture
	for _, e := range events {
		f, err := js.PublishAsync(e[0], []byte(e[1]))
		if err != nil {
			tb.Fatal(err)
		}
		acks = append(acks, f)
	}
	for _, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			tb.Fatal(err)
		case <-time.After(10 * time.Second):
			tb.Fatal("no publish ack in 10 s")
		}
	}
}

// rawRequest sends one request with the request target exactly as given
// (no client-side escaping or cleaning) and returns the answer as text:
// the status line, the headers but Date in order, a blank line and the
// body.
func rawRequest(t *testing.T, addr, method, target string, header map[string]string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req := method + " " + target + " HTTP/1.1\r\nHost: node\r\nConnection: close\r\n"
	for k, v := range header {
		req += k + ": " + v + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, target, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", resp.Status)
	names := make([]string, 0, len(resp.Header))
	for k := range resp.Header {
		if k != "Date" {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	for _, k := range names {
		fmt.Fprintf(&b, "%s: %s\n", k, strings.Join(resp.Header[k], ", "))
	}
	fmt.Fprintf(&b, "Content-Length(read): %d\n\n%s", resp.ContentLength, body)
	return b.String()
}

// TestHTTPGetKeyGolden: the answers to reads of single keys (found, not
// found, escaped and unusual keys, global tables with a revision, set and
// windowed tables, paths the mux cleans or redirects, HEAD, refused
// windows) are byte for byte those of testdata/getkey.golden, which the
// implementation before the key-read fast path wrote (-update rewrites it:
// review the diff, a changed answer is a changed API).
func TestHTTPGetKeyGolden(t *testing.T) {
	n := startNode(t, []string{
		"name=count,source=ev.*,key=subject:2,agg=count",
		"name=last,source=ev.*,key=subject:2,agg=latest",
		"name=tags,source=ev.*,key=subject:2,agg=set,field=tag",
		"name=win,source=ev.*,key=subject:2,agg=sum,field=v,window=1m,time=json:ts",
	}, []string{"config"})
	addr := n.HTTPAddr()
	publishAll(t, n, [][2]string{
		{"ev.a", `{"v": 2, "tag": "x", "s": "<&> é \u2028"}`},
		{"ev.a", `{"v":3,"tag":"y"}`},
		{"ev.café", `{"tag":"z"}`},
		{`ev.q"x`, `{}`},
		{"ev.<b>&", `{}`},
		{"ev.pct%2F", `{}`},
		{"ev.a\\b", `{}`},
		{"ev.k~-_!$'()*+,;=:@", `{}`},
	})
	for _, tc := range []struct{ method, path, body string }{
		{"PUT", "/v1/tables/config/keys/site-1", `{"a": 1, "h": "<&>",  "u": "\u2028"}`},
		{"PUT", "/v1/tables/config/keys/site-2", `[1, 2 ,3]`},
	} {
		req, _ := http.NewRequest(tc.method, "http://"+addr+tc.path, strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %s", tc.method, tc.path, resp.Status)
		}
	}
	// Every event is counted once the last key of every partition is.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		done := true
		for _, k := range []string{"a", "caf%C3%A9", "q%22x", "%3Cb%3E&", "pct%252F", "a%5Cb", "k~-_!$'()*+,;=:@"} {
			if !strings.HasPrefix(rawRequest(t, addr, "GET", "/v1/tables/count/keys/"+k, nil), "200 ") {
				done = false
			}
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("events not counted in 20 s")
		}
	}

	var got bytes.Buffer
	for _, tc := range []struct {
		method, target string
		header         map[string]string
	}{
		{"GET", "/v1/tables/count/keys/a", nil},
		{"GET", "/v1/tables/count/keys/a?x=1", nil},
		{"GET", "/v1/tables/count/keys/a?window=now", nil},
		{"GET", "/v1/tables/count/keys/a?window", nil},
		{"GET", "/v1/tables/count/keys/a?window=", nil},
		{"HEAD", "/v1/tables/count/keys/a", nil},
		{"GET", "/v1/tables/count/keys/caf%C3%A9", nil},
		{"GET", "/v1/tables/count/keys/café", nil},
		{"GET", "/v1/tables/count/keys/q%22x", nil},
		{"GET", "/v1/tables/count/keys/q\"x", nil},
		{"GET", "/v1/tables/count/keys/%3Cb%3E&", nil},
		{"GET", "/v1/tables/count/keys/<b>&", nil},
		{"GET", "/v1/tables/count/keys/pct%252F", nil},
		{"GET", "/v1/tables/count/keys/pct%2F", nil},
		{"GET", "/v1/tables/count/keys/a%5Cb", nil},
		{"GET", "/v1/tables/count/keys/k~-_!$'()*+,;=:@", nil},
		{"GET", "/v1/tables/count/keys/%61", nil},
		{"GET", "/v1/%74ables/count/%6Beys/a", nil},
		{"GET", "/v1/tables/%63ount/keys/a", nil},
		{"GET", "/v1/tables/count/keys/nope", nil},
		{"GET", "/v1/tables/count/keys/%FF", nil},
		{"GET", "/v1/tables/count/keys/%01", nil},
		{"GET", "/v1/tables/count/keys/%zz", nil},
		{"GET", "/v1/tables/count/keys/" + strings.Repeat("k", 1025), nil},
		{"GET", "/v1/tables/count/keys/a/", nil},
		{"GET", "/v1/tables/count/keys/a/b", nil},
		{"GET", "/v1/tables/count/keys/", nil},
		{"GET", "/v1/tables/count/keys/.", nil},
		{"GET", "/v1/tables/count/keys/..", nil},
		{"GET", "/v1/tables/count/keys/./a", nil},
		{"GET", "/v1/tables//count/keys/a", nil},
		{"GET", "/v1/tables/count/keys//a", nil},
		{"GET", "/v1/tables/count/../count/keys/a", nil},
		{"GET", "/v1/tables/nope/keys/a", nil},
		{"GET", "/v1/tables/last/keys/a", nil},
		{"GET", "/v1/tables/tags/keys/a", nil},
		{"GET", "/v1/tables/tags/keys/caf%C3%A9", nil},
		{"GET", "/v1/tables/win/keys/nope", nil},
		{"GET", "/v1/tables/win/keys/a?window=bad", nil},
		{"GET", "/v1/tables/config/keys/site-1", nil},
		{"GET", "/v1/tables/config/keys/site-2", nil},
		{"GET", "/v1/tables/config/keys/nope", nil},
		{"GET", "/v1/tables/config/keys/site-1?window=all", nil},
		{"POST", "/v1/tables/count/keys/a", nil},
		{"OPTIONS", "/v1/tables/count/keys/a", nil},
		{"GET", "http://node/v1/tables/count/keys/a", nil},
		{"GET", "/v1/tables/count/keys/a", map[string]string{"Authorization": "Bearer whatever-token-0000"}},
	} {
		fmt.Fprintf(&got, "### %s %s\n%s\n", tc.method, tc.target, rawRequest(t, addr, tc.method, tc.target, tc.header))
	}
	const golden = "testdata/getkey.golden"
	if *httpapi.UpdateGolden {
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		gl, wl := strings.Split(got.String(), "\n"), strings.Split(string(want), "\n")
		for i := range max(len(gl), len(wl)) {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("answers differ from %s at line %d:\ngot  %q\nwant %q", golden, i+1, g, w)
			}
		}
	}
}
