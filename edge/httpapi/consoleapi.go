package httpapi

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/edgetables/edgetables/edge/console"
)

// historyInterval is the time between two samples of the console's history.
const historyInterval = time.Second

// EnableConsole makes the API serve the operator's console (package
// console): the page at GET / and its assets under /console/, open to
// anyone who reaches the port since they hold no data, and
// GET /v1/history, the counters of the last minutes (scope metrics). It
// starts the goroutine that samples the history every second until ctx
// ends or stop is called (stop waits for it). Call it before Handler.
func (a *API) EnableConsole(ctx context.Context) (stop func()) {
	a.console = true
	a.history = console.NewHistory(console.DefaultSize)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.history.Run(ctx, historyInterval, a.counters)
	}()
	return func() { cancel(); <-done }
}

// counters reads the manager's counters for the history.
func (a *API) counters() console.Counters {
	st := a.m.Status()
	var dead uint64
	for _, n := range st.DeadLetters {
		dead += n
	}
	return console.Counters{Events: st.EventsProcessed, DeadLetters: dead,
		Commits: st.CommitLatency.Count, CommitTime: st.CommitLatency.Sum}
}

// consoleRoutes adds GET /v1/scopes and, with the console on, its routes.
func (a *API) consoleRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/scopes", a.scopes)
	if !a.console {
		return
	}
	page := console.Handler()
	mux.Handle("GET /{$}", page)
	mux.Handle("GET "+console.Prefix, page)
	mux.Handle("GET /v1/history", a.need(ScopeMetrics, a.getHistory))
}

// openPath reports whether path answers without authentication: the
// health checks, and the console's page and assets when it is on.
func (a *API) openPath(path string) bool {
	if open(path) {
		return true
	}
	return a.console && (path == "/" || strings.HasPrefix(path, console.Prefix))
}

// scopes answers GET /v1/scopes: the scopes of the request's token, for a
// client (the console) to show only what it may do. Any known token may
// ask; without tokens every scope is granted.
func (a *API) scopes(w http.ResponseWriter, r *http.Request) {
	got := ScopeRead | ScopeWrite | ScopeMetrics | ScopeAdmin
	if a.tokens != nil {
		got, _ = r.Context().Value(scopeKey{}).(Scope)
	}
	names := []string{}
	if got != 0 {
		names = strings.Split(got.String(), ",")
	}
	writeJSON(w, http.StatusOK, map[string]any{"scopes": names, "tokens": a.tokens != nil})
}

// getHistory answers GET /v1/history[?since=TIME]: the points of the
// history later than TIME (RFC 3339; default all), oldest first.
func (a *API) getHistory(w http.ResponseWriter, r *http.Request) {
	var since time.Time
	if s := r.URL.Query().Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			writeError(w, http.StatusBadRequest, CodeBadRequest, "since "+s+": want an RFC 3339 time")
			return
		}
		since = t
	}
	writeJSON(w, http.StatusOK, map[string]any{"interval_s": historyInterval.Seconds(),
		"size": console.DefaultSize, "points": a.history.Points(since)})
}
