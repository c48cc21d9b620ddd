package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/edge/httpapi"
)

// benchKeys is the number of keys the GET benchmarks read, at random.
const benchKeys = 1000

// startReadNode starts a node with a count table "counts" (source ev.*, key
// the second subject token) holding benchKeys keys, key k counted k%5+1
// times, with its HTTP API on loopback. It returns the node's HTTP address.
func startReadNode(tb testing.TB) string {
	tb.Helper()
	n := startNode(tb, []string{"name=counts,source=ev.*,key=subject:2,agg=count"}, nil)
	var events [][2]string
	for k := range benchKeys {
		for range k%5 + 1 {
			events = append(events, [2]string{"ev.k" + strconv.Itoa(k), "{}"})
		}
	}
	publishAll(tb, n, events)
	// Wait until every key has its count.
	deadline := time.Now().Add(30 * time.Second)
	for k := 0; k < benchKeys; {
		if v, err := getValue(http.DefaultClient, "http://"+n.HTTPAddr()+"/v1/tables/counts/keys/k"+strconv.Itoa(k), new(bytes.Buffer)); err == nil && v == int64(k%5+1) {
			k++
			continue
		}
		if time.Now().After(deadline) {
			tb.Fatalf("key k%d: count not there in 30 s", k)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return n.HTTPAddr()
}

// getValue GETs url and decodes the "value" of its JSON answer, as a
// client would: body read into a reused buffer, decoded into a struct.
func getValue(c *http.Client, url string, body *bytes.Buffer) (int64, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	body.Reset()
	_, err = body.ReadFrom(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s: %s", url, resp.Status, body.Bytes())
	}
	var got struct{ Value int64 }
	if err := json.Unmarshal(body.Bytes(), &got); err != nil {
		return 0, err
	}
	return got.Value, nil
}

// benchGet GETs prefix+key for b.N keys over one keep-alive connection
// and checks each value with want.
func benchGet(b *testing.B, prefix string, want func(k int) int64) {
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}, Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	urls := make([]string, benchKeys)
	for k := range urls {
		urls[k] = prefix + "k" + strconv.Itoa(k)
	}
	var body bytes.Buffer
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		k := (i * 7919) % benchKeys
		v, err := getValue(c, urls[k], &body)
		if err != nil {
			b.Fatal(err)
		}
		if v != want(k) {
			b.Fatalf("key k%d: %d, want %d", k, v, want(k))
		}
	}
}

// BenchmarkHTTPGetKey: GET /v1/tables/counts/keys/{k} of a running node
// (its own HTTP server), one caller, keep-alive, the answer decoded.
func BenchmarkHTTPGetKey(b *testing.B) {
	addr := startReadNode(b)
	benchGet(b, "http://"+addr+"/v1/tables/counts/keys/", func(k int) int64 { return int64(k%5 + 1) })
}

// floorBody is a key read's answer of about the same size.
var floorBody = []byte(`{"table":"counts","key":"k123","value":3,"partition":1}` + "\n")

// BenchmarkHTTPFloor: the same loop against a handler that answers a fixed
// JSON body, on the node's kind of server (httpapi.NewServer): the cost of
// net/http and loopback TCP on this machine, the floor of a key read.
func BenchmarkHTTPFloor(b *testing.B) {
	for _, sc := range []struct {
		name string
		srv  func(http.Handler) *http.Server
	}{
		{"node-server", httpapi.NewServer},
		{"bare-server", func(h http.Handler) *http.Server { return &http.Server{Handler: h} }},
	} {
		b.Run(sc.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := sc.srv(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write(floorBody)
			}))
			go func() { _ = srv.Serve(ln) }()
			defer srv.Close()
			benchGet(b, "http://"+ln.Addr().String()+"/", func(int) int64 { return 3 })
		})
	}
}

// BenchmarkKVGet: the baseline of the bench's reads, a NATS KV Get of the
// same kind of keys and values from a bucket of the node's embedded server,
// over one connection, the value checked.
func BenchmarkKVGet(b *testing.B) {
	n := startNode(b, []string{"name=counts,source=ev.*,key=subject:2,agg=count"}, nil)
	ctx := context.Background()
	nc, err := nats.Connect(n.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	kv, err := js.CreateKeyValue(ctx, natsjs.KeyValueConfig{Bucket: "bench", Storage: natsjs.FileStorage, History: 1})
	if err != nil {
		b.Fatal(err)
	}
	for k := range benchKeys {
		if _, err := kv.Put(ctx, "k"+strconv.Itoa(k), []byte(strconv.Itoa(k%5+1))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		k := (i * 7919) % benchKeys
		e, err := kv.Get(ctx, "k"+strconv.Itoa(k))
		if err != nil {
			b.Fatal(err)
		}
		if v, _ := strconv.Atoi(string(e.Value())); v != k%5+1 {
			b.Fatalf("key k%d: %s", k, e.Value())
		}
	}
}

// BenchmarkHTTPGetKeyOneGoroutine: BenchmarkHTTPGetKey with a client that
// writes each request on its own connection and parses the answer with
// http.ReadResponse in the calling goroutine, without the Transport's
// reader and writer goroutines: how much of a read is the client's.
func BenchmarkHTTPGetKeyOneGoroutine(b *testing.B) {
	addr := startReadNode(b)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	reqs := make([][]byte, benchKeys)
	for k := range reqs {
		reqs[k] = []byte("GET /v1/tables/counts/keys/k" + strconv.Itoa(k) + " HTTP/1.1\r\nHost: " + addr + "\r\n\r\n")
	}
	get := &http.Request{Method: http.MethodGet}
	var body bytes.Buffer
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		k := (i * 7919) % benchKeys
		if _, err := c.Write(reqs[k]); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(br, get)
		if err != nil {
			b.Fatal(err)
		}
		body.Reset()
		_, err = body.ReadFrom(resp.Body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("key k%d: %v %s", k, err, resp.Status)
		}
		var got struct{ Value int64 }
		if err := json.Unmarshal(body.Bytes(), &got); err != nil || got.Value != int64(k%5+1) {
			b.Fatalf("key k%d: %s (%v)", k, body.Bytes(), err)
		}
	}
}
