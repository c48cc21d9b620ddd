package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/edge/builtin"
	"github.com/edgetables/edgetables/edge/httpapi"
)

// startNode runs a node with the given table specs on random loopback ports
// in dataDir and returns it once it is ready.
func startNode(t *testing.T, dataDir string, specs ...string) (*Node, func()) {
	t.Helper()
	return runNode(t, testConfig(t, dataDir, specs...))
}

// testConfig returns the config of a node named n1 with the given table
// specs on random loopback ports in dataDir, logging nowhere.
func testConfig(t testing.TB, dataDir string, specs ...string) Config {
	t.Helper()
	cfg := Config{Name: "n1", DataDir: dataDir, NATSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
		Partitions: 4, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, s := range specs {
		spec, err := builtin.ParseTableSpec(s)
		if err != nil {
			t.Fatal(err)
		}
		table, agent, err := builtin.Builtin(spec)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Tables = append(cfg.Tables, table)
		cfg.Agents = append(cfg.Agents, agent)
	}
	return cfg
}

// runNode runs a node with cfg and returns it once it is ready.
func runNode(t testing.TB, cfg Config) (*Node, func()) {
	t.Helper()
	n, err := NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	select {
	case <-n.Started():
	case err := <-done:
		t.Fatalf("node stopped: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("node did not start")
	}
	deadline := time.Now().Add(20 * time.Second)
	for !n.Manager().Ready() {
		if time.Now().After(deadline) {
			t.Fatal("node not ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node Run: %v", err)
		}
	}
	t.Cleanup(stop)
	return n, stop
}

func getJSON(t *testing.T, base, path string) (int, map[string]any, http.Header) {
	t.Helper()
	resp, err := http.Get("http://" + base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET %s: body is not JSON: %v", path, err)
	}
	return resp.StatusCode, body, resp.Header
}

func publish(t testing.TB, n *Node, subject, data string) {
	t.Helper()
	nc, err := nats.Connect(n.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	if _, err := js.Publish(context.Background(), subject, []byte(data)); err != nil {
		t.Fatal(err)
	}
}

// waitValue polls a key until its JSON value is want.
func waitValue(t *testing.T, n *Node, table, key, want string) {
	t.Helper()
	var last string
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		code, body, _ := getJSON(t, n.HTTPAddr(), "/v1/tables/"+table+"/keys/"+url.PathEscape(key))
		if code == 200 {
			b, _ := json.Marshal(body["value"])
			if last = string(b); last == want {
				return
			}
		} else {
			last = fmt.Sprint(code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s/%s = %s, want %s", table, key, last, want)
}

func TestBuiltinAggregatesOverHTTP(t *testing.T) {
	n, _ := startNode(t, t.TempDir(),
		"name=count,source=s.*.t,key=subject:2,agg=count",
		"name=sum,source=s.*.t,key=subject:2,agg=sum,field=v",
		"name=min,source=s.*.t,key=subject:2,agg=min,field=v",
		"name=max,source=s.*.t,key=subject:2,agg=max,field=v",
		"name=avg,source=s.*.t,key=subject:2,agg=avg,field=v",
		"name=last,source=s.*.t,key=subject:2,agg=latest",
		"name=bydev,source=j.>,key=json:dev.id,agg=count",
	)
	for _, v := range []string{"3", "-1.5", "10"} {
		publish(t, n, "s.a.t", `{"v":`+v+`}`)
	}
	publish(t, n, "j.x", `{"dev":{"id":"d/1"}}`)
	publish(t, n, "j.y", `{"dev":{"id":"d/1"}}`)
	waitValue(t, n, "count", "a", "3")
	waitValue(t, n, "sum", "a", "11.5")
	waitValue(t, n, "min", "a", "-1.5")
	waitValue(t, n, "max", "a", "10")
	waitValue(t, n, "avg", "a", `{"avg":3.8333333333333335,"count":3,"sum":11.5}`)
	waitValue(t, n, "last", "a", `{"v":10}`)
	waitValue(t, n, "bydev", "d/1", "2")

	code, body, _ := getJSON(t, n.HTTPAddr(), "/v1/tables")
	if code != 200 || len(body["tables"].([]any)) != 7 {
		t.Errorf("/v1/tables = %d %v", code, body)
	}
	code, body, _ = getJSON(t, n.HTTPAddr(), "/v1/tables/count/keys/nope")
	if code != 404 || body["code"] != httpapi.CodeKeyNotFound {
		t.Errorf("missing key = %d %v", code, body)
	}
	code, body, _ = getJSON(t, n.HTTPAddr(), "/v1/tables/nope/keys/a")
	if code != 404 || body["code"] != httpapi.CodeTableNotFound {
		t.Errorf("missing table = %d %v", code, body)
	}
	code, _, _ = getJSON(t, n.HTTPAddr(), "/readyz")
	if code != 200 {
		t.Errorf("/readyz = %d", code)
	}
	code, body, _ = getJSON(t, n.HTTPAddr(), "/v1/status")
	if code != 200 || body["node"] != "n1" || len(body["partitions"].([]any)) != 4 {
		t.Errorf("/v1/status = %d %v", code, body)
	}
}

func TestListKeys(t *testing.T) {
	n, _ := startNode(t, t.TempDir(), "name=c,source=e.*,key=subject:2,agg=count")
	for i := 0; i < 30; i++ {
		publish(t, n, fmt.Sprintf("e.k%02d", i), "{}")
	}
	publish(t, n, "e.other", "{}")
	for i := 0; i < 30; i++ {
		waitValue(t, n, "c", fmt.Sprintf("k%02d", i), "1")
	}
	waitValue(t, n, "c", "other", "1")

	var keys []string
	after := ""
	for {
		path := "/v1/tables/c/keys?prefix=k&limit=7"
		if after != "" {
			path += "&after=" + url.QueryEscape(after)
		}
		code, body, _ := getJSON(t, n.HTTPAddr(), path)
		if code != 200 {
			t.Fatalf("%s = %d %v", path, code, body)
		}
		for _, e := range body["entries"].([]any) {
			keys = append(keys, e.(map[string]any)["key"].(string))
		}
		next, ok := body["next"].(string)
		if !ok {
			break
		}
		after = next
	}
	if len(keys) != 30 || keys[0] != "k00" || keys[29] != "k29" {
		t.Fatalf("listed %d keys %v", len(keys), keys)
	}
	for i := 1; i < len(keys); i++ {
		if keys[i-1] >= keys[i] {
			t.Fatalf("keys out of order: %v", keys)
		}
	}
	code, body, _ := getJSON(t, n.HTTPAddr(), "/v1/tables/c/keys?limit=0")
	if code != 400 || body["code"] != httpapi.CodeBadRequest {
		t.Errorf("limit=0 = %d %v", code, body)
	}
}

func TestBadEventsGoToDeadLetters(t *testing.T) {
	n, _ := startNode(t, t.TempDir(), "name=sum,source=s.*,key=subject:2,agg=sum,field=v",
		"name=bykey,source=k.*,key=json:id,agg=count")
	publish(t, n, "s.a", `not json`)
	publish(t, n, "s.a", `{"v":"12"}`)
	publish(t, n, "s.a", `{"w":1}`)
	publish(t, n, "k.a", `{"id":{"x":1}}`)
	publish(t, n, "k.a", `{}`)
	publish(t, n, "s.a", `{"v":1} {"v":1}`)
	publish(t, n, "s.dev\xff", `{"v":1}`)
	publish(t, n, "k.a", "{\"id\":\"dev\xfe\"}")
	publish(t, n, "s.a", `{"v":2}`)
	waitValue(t, n, "sum", "a", "2")
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body, _ := getJSON(t, n.HTTPAddr(), "/v1/status")
		dl := body["dead_letters"].(map[string]any)
		if dl["sum"] == 5.0 && dl["bykey"] == 3.0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead letters = %v, want sum 5, bykey 3", dl)
		}
		time.Sleep(20 * time.Millisecond)
	}
	nc, err := nats.Connect(n.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	s, err := js.Stream(context.Background(), "edgetables_dlq")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil || info.State.Msgs != 8 {
		t.Fatalf("dead-letter stream holds %v messages (err %v), want 8", info.State.Msgs, err)
	}
	msg, err := s.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Subject != "edgetables.dlq.sum" || !strings.Contains(msg.Header.Get("Edgetables-Reason"), "JSON") {
		t.Errorf("first dead letter: %s %v", msg.Subject, msg.Header)
	}
}

func TestRestartKeepsAggregates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	n, stop := startNode(t, dir, "name=c,source=e.*,key=subject:2,agg=count")
	for i := 0; i < 50; i++ {
		publish(t, n, fmt.Sprintf("e.k%d", i%5), "{}")
	}
	waitValue(t, n, "c", "k4", "10")
	stop()
	n, _ = startNode(t, dir, "name=c,source=e.*,key=subject:2,agg=count")
	waitValue(t, n, "c", "k4", "10")
	publish(t, n, "e.k4", "{}")
	waitValue(t, n, "c", "k4", "11")
}
