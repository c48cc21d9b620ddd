package httpapi

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
)

// ErrTLSFiles marks certificate or key files that cannot be used.
var ErrTLSFiles = errors.New("bad TLS files")

// HTTPTLS serves the HTTP API over TLS (1.2 or later) with a certificate
// and key from PEM files, and with a client CA, asks clients for a
// certificate signed by it. Reload re-reads the certificate and key (a
// renewed certificate is served from the next handshake on); a new client
// CA needs a restart.
type HTTPTLS struct {
	certFile, keyFile string
	clientCAs         *x509.CertPool // nil: no client certificates
	cert              atomic.Pointer[tls.Certificate]
}

// LoadHTTPTLS reads the certificate and key files (PEM) and, when clientCA
// is not "", the CA file (PEM) that signs the clients' certificates. An
// error wraps ErrTLSFiles and names the file.
func LoadHTTPTLS(certFile, keyFile, clientCA string) (*HTTPTLS, error) {
	h := &HTTPTLS{certFile: certFile, keyFile: keyFile}
	if err := h.Reload(); err != nil {
		return nil, err
	}
	if clientCA != "" {
		pem, err := os.ReadFile(clientCA)
		if err != nil {
			return nil, fmt.Errorf("%w: client CA: %w", ErrTLSFiles, err)
		}
		h.clientCAs = x509.NewCertPool()
		if !h.clientCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: client CA %s: no PEM certificate", ErrTLSFiles, clientCA)
		}
	}
	return h, nil
}

// Reload re-reads the certificate and key; on error the pair in use is kept.
func (h *HTTPTLS) Reload() error {
	c, err := tls.LoadX509KeyPair(h.certFile, h.keyFile)
	if err != nil {
		return fmt.Errorf("%w: certificate %s, key %s: %w", ErrTLSFiles, h.certFile, h.keyFile, err)
	}
	h.cert.Store(&c)
	return nil
}

// ClientCerts reports whether clients must present a certificate.
func (h *HTTPTLS) ClientCerts() bool { return h != nil && h.clientCAs != nil }

// Config returns the server's TLS configuration. With a client CA it
// verifies a certificate when one is given; the API refuses requests
// without one but /healthz and /readyz, so that health checks need none.
func (h *HTTPTLS) Config() *tls.Config {
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: tls12Suites,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return h.cert.Load(), nil
		},
	}
	if h.clientCAs != nil {
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		cfg.ClientCAs = h.clientCAs
	}
	return cfg
}

// Listener wraps ln with TLS.
func (h *HTTPTLS) Listener(ln net.Listener) net.Listener { return tls.NewListener(ln, h.Config()) }

// tls12Suites are the HTTPS API's TLS 1.2 cipher suites: ECDHE with AEAD
// ciphers only (Go's default list also offers CBC with SHA-1). TLS 1.3's
// suites are not configurable and all AEAD.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}
