package httpapi

import "net/http"

// jsonErrors answers the requests mux has no route for in the API's error
// shape, {"error", "code"}, instead of the mux's plain text: 404 not_found
// for an unknown path, 405 method_not_allowed (with Allow) for a path that
// takes other methods. Routed requests go to mux unchanged.
func jsonErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		// No route: let the mux's own answer say which (404, or 405 with
		// the allowed methods), and answer it as JSON.
		c := &statusCapture{header: http.Header{}}
		h.ServeHTTP(c, r)
		if c.status == http.StatusMethodNotAllowed {
			allow := c.header.Get("Allow")
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed,
				"method "+r.Method+" not allowed on "+r.URL.Path+" (allowed: "+allow+")")
			return
		}
		writeError(w, http.StatusNotFound, CodeNotFound, "no such path: "+r.URL.Path+" (see the README, HTTP API)")
	})
}

// statusCapture records the status and headers of the mux's answer and
// drops its body.
type statusCapture struct {
	header http.Header
	status int
}

func (c *statusCapture) Header() http.Header { return c.header }

func (c *statusCapture) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
}

func (c *statusCapture) Write(b []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	return len(b), nil
}
