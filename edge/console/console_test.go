package console

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHistory(t *testing.T) {
	h := NewHistory(3)
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	h.Add(at(0), Counters{Events: 100, DeadLetters: 1, Commits: 10, CommitTime: 10 * time.Millisecond})
	if got := h.Points(time.Time{}); len(got) != 0 {
		t.Fatalf("first sample made points: %v", got)
	}
	h.Add(at(2), Counters{Events: 300, DeadLetters: 4, Commits: 12, CommitTime: 16 * time.Millisecond})
	h.Add(at(3), Counters{Events: 300, DeadLetters: 4, Commits: 12, CommitTime: 16 * time.Millisecond})
	// Counters going back (a restart) count as no change.
	h.Add(at(4), Counters{Events: 5, DeadLetters: 0, Commits: 1, CommitTime: time.Millisecond})
	got := h.Points(time.Time{})
	if len(got) != 3 {
		t.Fatalf("got %d points, want 3", len(got))
	}
	p := got[0]
	if p.EventsPerSecond != 100 || p.DeadLetters != 3 || p.Commits != 2 || p.CommitMillis == nil || *p.CommitMillis != 3 {
		t.Errorf("first point = %+v (commit_ms %v), want 100 events/s, 3 dead letters, 2 commits of 3 ms", p, p.CommitMillis)
	}
	if got[1].EventsPerSecond != 0 || got[1].CommitMillis != nil {
		t.Errorf("idle point = %+v, want no events and no commit time", got[1])
	}
	if got[2].EventsPerSecond != 0 || got[2].DeadLetters != 0 || got[2].Commits != 0 {
		t.Errorf("point after a reset = %+v, want zeros", got[2])
	}
	// The ring keeps the last 3, oldest first.
	h.Add(at(5), Counters{Events: 15, Commits: 1, CommitTime: time.Millisecond})
	got = h.Points(time.Time{})
	if len(got) != 3 || !got[0].Time.Equal(at(3)) || !got[2].Time.Equal(at(5)) || got[2].EventsPerSecond != 10 {
		t.Fatalf("after wrapping: %+v", got)
	}
	if since := h.Points(at(4)); len(since) != 1 || !since[0].Time.Equal(at(5)) {
		t.Errorf("Points(since 4s) = %+v, want the point at 5s", since)
	}
}

func TestHistoryRunStopsWithContext(t *testing.T) {
	h := NewHistory(10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var n uint64
	go func() {
		defer close(done)
		h.Run(ctx, 5*time.Millisecond, func() Counters { n += 10; return Counters{Events: n} })
	}()
	deadline := time.Now().Add(5 * time.Second)
	for len(h.Points(time.Time{})) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no points sampled")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop with its context")
	}
}

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for _, tc := range []struct {
		path, contentType, contains string
		status                      int
	}{
		{"/", "text/html", `<script src="/console/console.js"`, 200},
		{"/console/console.js", "javascript", "sessionStorage", 200},
		{"/console/console.css", "text/css", "@media", 200},
		{"/console/missing.js", "", "", 404},
		{"/console/", "", "", 404},
		{"/other", "", "", 404},
	} {
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("GET %s: %d, want %d", tc.path, resp.StatusCode, tc.status)
			continue
		}
		if tc.status != 200 {
			continue
		}
		if ct := resp.Header.Get("Content-Type"); !strings.Contains(ct, tc.contentType) {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, ct, tc.contentType)
		}
		if !strings.Contains(string(b), tc.contains) {
			t.Errorf("GET %s: body lacks %q", tc.path, tc.contains)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", tc.path, csp)
		}
	}
}

// TestAssetsSmallAndSelfContained keeps the page small and free of
// external assets: an edge site is often offline.
func TestAssetsSmallAndSelfContained(t *testing.T) {
	n, err := Size()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("console assets: %d bytes", n)
	if n > 100<<10 {
		t.Errorf("console assets are %d bytes, want < 100 KiB", n)
	}
	for _, name := range []string{"assets/index.html", "assets/console.js", "assets/console.css"} {
		b, err := assets.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), `"http://www.w3.org/2000/svg"`, "") // a name, not a fetch
		for _, ext := range []string{"http://", "https://", "//cdn", "@import", "url(", "@font-face"} {
			if strings.Contains(text, ext) {
				t.Errorf("%s refers to %q: the console must not load anything from elsewhere", name, ext)
			}
		}
	}
}
