package bench

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestDirectGetter: requests reuse one connection, answers are read in
// full, a server that closes the connection (or drops it) makes the next
// request dial again, and a dead server is an error.
func TestDirectGetter(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/close":
			w.Header().Set("Connection", "close")
		case "/missing":
			http.Error(w, "no such key", http.StatusNotFound)
			return
		}
		_, _ = w.Write([]byte(strings.Repeat("x", 5000) + r.URL.Path))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	g := newDirectGetter(srv.Listener.Addr().String(), 5*time.Second)
	defer g.close()

	var body bytes.Buffer
	for _, c := range []struct {
		path   string
		status int
		body   string
		conns  int32 // connections made so far
	}{
		{"/a", http.StatusOK, strings.Repeat("x", 5000) + "/a", 1},
		{"/b", http.StatusOK, strings.Repeat("x", 5000) + "/b", 1},
		{"/missing", http.StatusNotFound, "no such key\n", 1},
		{"/close", http.StatusOK, strings.Repeat("x", 5000) + "/close", 1},
		{"/c", http.StatusOK, strings.Repeat("x", 5000) + "/c", 2},
	} {
		status, err := g.get(c.path, &body)
		if err != nil {
			t.Fatalf("GET %s: %v", c.path, err)
		}
		if status != c.status || body.String() != c.body {
			t.Errorf("GET %s: %d %.20q…, want %d %.20q…", c.path, status, body.String(), c.status, c.body)
		}
		if got := conns.Load(); got != c.conns {
			t.Errorf("after GET %s: %d connections, want %d", c.path, got, c.conns)
		}
	}

	// The first request after the server dropped the connection may fail
	// (that is how the getter learns of it); the next one must work.
	srv.CloseClientConnections()
	_, _ = g.get("/d", &body)
	if status, err := g.get("/e", &body); err != nil || status != http.StatusOK {
		t.Fatalf("GET /e after a dropped connection: %d, %v", status, err)
	}

	srv.Close()
	if _, err := g.get("/f", &body); err == nil {
		t.Fatal("GET of a closed server: no error")
	}
}
