package edge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgetables/edgetables/edge/httpapi"
	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
)

// listenHTTP listens on the HTTP API's address, with TLS when configured,
// and returns the listener and its address (nil and "" when the API is
// off). It warns when the API is open beyond loopback without
// authentication.
func (n *Node) listenHTTP() (ln net.Listener, addr string, err error) {
	cfg := n.cfg
	if cfg.HTTPListen == "off" {
		return nil, "", nil
	}
	if ln, err = net.Listen("tcp", cfg.HTTPListen); err != nil {
		return nil, "", fmt.Errorf("--http-listen %s: %w", cfg.HTTPListen, err)
	}
	addr = ln.Addr().String()
	if cfg.HTTPTLS != nil {
		ln = cfg.HTTPTLS.Listener(ln)
	}
	httpapi.WarnOpen(n.log, ln.Addr(), cfg.HTTPTokens != nil || cfg.HTTPTLS.ClientCerts(), cfg.HTTPTLS != nil)
	return ln, addr, nil
}

// serveHTTP serves the node's HTTP API on ln, reading through router,
// until stop, which shuts the server down (within 5 s) and then stops the
// console.
func (n *Node) serveHTTP(ctx context.Context, ln net.Listener, m *manager.TableManager, js natsjs.JetStream,
	clientURL string, router *httpapi.Router, siteTables *jetstream.SiteTables) (stop func()) {
	cfg := n.cfg
	o := httpapi.Options{Logger: n.log, Router: router, MaxValue: jetstream.MaxRecordBytes(js.Conn()), Sites: siteTables,
		Tokens: cfg.HTTPTokens, ClientCerts: cfg.HTTPTLS.ClientCerts(), Reasons: n.edgeReasons,
		Collectors: []prometheus.Collector{newDiskMetrics(cfg.DataDir), newEdgeMetrics(n), newSiteTablesMetrics(n)},
		Status: func() map[string]any {
			out := map[string]any{"app": cfg.App, "nats_url": clientURL, "http": n.httpSecurity()}
			n.edgeStatus(out)
			n.siteTablesStatus(out)
			return out
		}}
	if n.storage != nil { // a nil *storageWatch must not become a non-nil Storage
		o.Storage = n.storage
	}
	a := httpapi.New(m, o)
	stopConsole := func() {}
	if !cfg.NoConsole {
		stopConsole = a.EnableConsole(ctx)
	}
	api := httpapi.NewServer(a.Handler())
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := api.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("HTTP API stopped", "err", err)
		}
	}()
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = api.Shutdown(sctx)
		<-served
		stopConsole()
	}
}

// httpSecurity describes the HTTP API's protection in /v1/status: never a
// token.
func (n *Node) httpSecurity() map[string]any {
	tokens := 0
	if n.cfg.HTTPTokens != nil {
		tokens = n.cfg.HTTPTokens.Len()
	}
	return map[string]any{"tls": n.cfg.HTTPTLS != nil, "client_certs": n.cfg.HTTPTLS.ClientCerts(), "tokens": tokens}
}
