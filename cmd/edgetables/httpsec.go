package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/edgetables/edgetables/edge"
	"github.com/edgetables/edgetables/edge/httpapi"
)

// httpSecurity are the run command's flags that protect the HTTP API.
type httpSecurity struct {
	HTTPTokens      string `name:"http-tokens" help:"File of bearer tokens for the HTTP API, one 'SCOPES TOKEN' or 'SCOPES sha256:HEX' a line (scopes: read, write, metrics, admin); every route but /healthz, /readyz and the console's static page and assets then needs one. Re-read on SIGHUP." type:"existingfile" group:"HTTP security"`
	HTTPTLSCert     string `name:"http-tls-cert" help:"Certificate (PEM) of the HTTPS API; with --http-tls-key. Re-read on SIGHUP." type:"existingfile" group:"HTTP security"`
	HTTPTLSKey      string `name:"http-tls-key" help:"Private key (PEM) of --http-tls-cert." type:"existingfile" group:"HTTP security"`
	HTTPTLSClientCA string `name:"http-tls-client-ca" help:"CA (PEM) of the HTTPS API's client certificates: every route but /healthz, /readyz and the console's static page and assets then needs a certificate it signed." type:"existingfile" group:"HTTP security"`
}

func (h *httpSecurity) validate() error {
	switch {
	case (h.HTTPTLSCert == "") != (h.HTTPTLSKey == ""):
		return errors.New("--http-tls-cert and --http-tls-key go together")
	case h.HTTPTLSClientCA != "" && h.HTTPTLSCert == "":
		return errors.New("--http-tls-client-ca: needs --http-tls-cert and --http-tls-key")
	}
	return nil
}

// load reads the tokens and TLS files into cfg; errors name the flag.
func (h *httpSecurity) load(cfg *edge.Config) error {
	if h.HTTPTokens != "" {
		t, err := httpapi.LoadTokens(h.HTTPTokens)
		if err != nil {
			return fmt.Errorf("--http-tokens: %w", err)
		}
		cfg.HTTPTokens = t
	}
	if h.HTTPTLSCert != "" {
		t, err := httpapi.LoadHTTPTLS(h.HTTPTLSCert, h.HTTPTLSKey, h.HTTPTLSClientCA)
		if err != nil {
			return fmt.Errorf("--http-tls-cert: %w", err)
		}
		cfg.HTTPTLS = t
	}
	return nil
}

// reloadOnHangup re-reads the HTTP tokens and the HTTPS certificate on each
// SIGHUP until ctx ends or the returned stop is called (which waits for
// it); a file that fails keeps what was in use, logged.
func reloadOnHangup(ctx context.Context, cfg edge.Config, log *slog.Logger) (stop func()) {
	if cfg.HTTPTokens == nil && cfg.HTTPTLS == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer signal.Stop(hup)
		reloadLoop(ctx, hup, cfg, log)
	}()
	return func() { cancel(); <-done }
}

func reloadLoop(ctx context.Context, hup <-chan os.Signal, cfg edge.Config, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		if cfg.HTTPTokens != nil {
			if err := cfg.HTTPTokens.Reload(); err != nil {
				log.Error("SIGHUP: HTTP tokens not reloaded; the previous ones stay in use", "err", err)
			} else {
				log.Info("SIGHUP: HTTP tokens reloaded", "tokens", cfg.HTTPTokens.Len())
			}
		}
		if cfg.HTTPTLS != nil {
			if err := cfg.HTTPTLS.Reload(); err != nil {
				log.Error("SIGHUP: HTTPS certificate not reloaded; the previous one stays in use", "err", err)
			} else {
				log.Info("SIGHUP: HTTPS certificate reloaded")
			}
		}
	}
}
