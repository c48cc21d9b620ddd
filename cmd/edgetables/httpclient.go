package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// tokenEnv is the environment variable that holds the HTTP API's bearer
// token for the commands that call it (never a flag: the command line is
// world-readable).
const tokenEnv = "EDGETABLES_HTTP_TOKEN"

// httpClientFlags are the flags of a command that calls the HTTP API.
type httpClientFlags struct {
	HTTPTokenFile string `name:"http-token-file" help:"File holding the bearer token for the HTTP API (default: the environment variable EDGETABLES_HTTP_TOKEN)." type:"existingfile"`
	HTTPCA        string `name:"http-ca" help:"CA (PEM) that verifies an https:// API's certificate (default: the system's roots)." type:"existingfile"`
	HTTPCert      string `name:"http-cert" help:"Client certificate (PEM) for an https:// API that asks for one; with --http-key." type:"existingfile"`
	HTTPKey       string `name:"http-key" help:"Private key (PEM) of --http-cert." type:"existingfile"`
}

// client returns the HTTP client and the bearer token ("" for none) the
// flags describe; errors name the flag.
func (f *httpClientFlags) client() (*http.Client, string, error) {
	token := os.Getenv(tokenEnv)
	if f.HTTPTokenFile != "" {
		b, err := os.ReadFile(f.HTTPTokenFile)
		if err != nil {
			return nil, "", fmt.Errorf("--http-token-file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" || strings.ContainsAny(token, " \t\r\n") {
			return nil, "", fmt.Errorf("--http-token-file %s: want one token and nothing else", f.HTTPTokenFile)
		}
	}
	if (f.HTTPCert == "") != (f.HTTPKey == "") {
		return nil, "", errors.New("--http-cert and --http-key go together")
	}
	if f.HTTPCA == "" && f.HTTPCert == "" {
		return http.DefaultClient, token, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.HTTPCA != "" {
		pem, err := os.ReadFile(f.HTTPCA)
		if err != nil {
			return nil, "", fmt.Errorf("--http-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, "", fmt.Errorf("--http-ca %s: no PEM certificate", f.HTTPCA)
		}
	}
	if f.HTTPCert != "" {
		c, err := tls.LoadX509KeyPair(f.HTTPCert, f.HTTPKey)
		if err != nil {
			return nil, "", fmt.Errorf("--http-cert: %w", err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	return &http.Client{Transport: tr}, token, nil
}
