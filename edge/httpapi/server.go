package httpapi

import (
	"net/http"
	"time"
)

// Bounds of the HTTP server: a slow or idle client must not hold a
// connection or a goroutine for ever. Reads of a key take milliseconds;
// the write timeout leaves room for a list routed to every member.
const (
	httpReadTimeout    = 10 * time.Second
	httpWriteTimeout   = 30 * time.Second
	httpIdleTimeout    = 2 * time.Minute
	httpMaxHeaderBytes = 64 << 10
)

// NewServer returns the HTTP server of a node for h (the API's Handler),
// with those bounds.
func NewServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: httpReadTimeout,
		WriteTimeout: httpWriteTimeout, IdleTimeout: httpIdleTimeout, MaxHeaderBytes: httpMaxHeaderBytes}
}
