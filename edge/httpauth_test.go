package edge

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgetables/edgetables/edge/builtin"
	"github.com/edgetables/edgetables/edge/httpapi"
	"github.com/edgetables/edgetables/jetstream/jstest"
)

// The tokens of the tests: each at least 16 characters.
const (
	readToken    = "read-token-0123456789"
	writeToken   = "write-token-0123456789"
	adminToken   = "admin-token-0123456789"
	metricsToken = "metrics-token-0123456789"
	hashedToken  = "hashed-token-0123456789"
)

// writeTokens writes a tokens file with one token of each scope, the last
// one given by its SHA-256 only, and returns its path.
func writeTokens(t *testing.T) string {
	t.Helper()
	h := sha256.Sum256([]byte(hashedToken))
	body := "# scopes token\n\nread " + readToken + "\nwrite " + writeToken + "\n  admin\t" + adminToken +
		"\nmetrics " + metricsToken + "\nread,metrics sha256:" + hex.EncodeToString(h[:]) + "\n"
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// authRequest sends method to url with token ("" for none) and returns the
// status, the JSON body and the headers.
func authRequest(t *testing.T, c *http.Client, method, url, token, body string) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s %s: %q is not JSON: %v", method, url, b, err)
		}
	}
	return resp.StatusCode, out, resp.Header
}

// TestHTTPTokens: with a tokens file, a request without a token or with an
// unknown one is 401 (WWW-Authenticate: Bearer), one whose scopes do not
// cover the route is 403, both JSON errors; /healthz and /readyz stay
// open; a reload drops a removed token; no token reaches the logs or
// /v1/status.
func TestHTTPTokens(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), "name=count,source=ev.*,key=subject:2,agg=count")
	global, err := builtin.GlobalJSONTable("config")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Tables = append(cfg.Tables, global)
	path := writeTokens(t)
	if cfg.HTTPTokens, err = httpapi.LoadTokens(path); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n, _ := runNode(t, cfg)
	base := "http://" + n.HTTPAddr()
	c := http.DefaultClient
	const key = "/v1/tables/config/keys/site-1"

	for _, tc := range []struct {
		method, path, token, body string
		status                    int
		code                      string
	}{
		{"GET", "/v1/tables", "", "", 401, httpapi.CodeUnauthorized},
		{"GET", key, "not-a-known-token-000", "", 401, httpapi.CodeUnauthorized},
		{"PUT", key, "", `1`, 401, httpapi.CodeUnauthorized},
		{"GET", "/v1/status", "", "", 401, httpapi.CodeUnauthorized},
		{"GET", "/metrics", "", "", 401, httpapi.CodeUnauthorized},
		{"GET", "/nowhere", "", "", 401, httpapi.CodeUnauthorized},
		{"PUT", key, readToken, `1`, 403, httpapi.CodeForbidden},
		{"DELETE", key, readToken, ``, 403, httpapi.CodeForbidden},
		{"GET", "/v1/status", readToken, "", 403, httpapi.CodeForbidden},
		{"GET", "/metrics", writeToken, "", 403, httpapi.CodeForbidden},
		{"GET", "/v1/tables", metricsToken, "", 403, httpapi.CodeForbidden},
		{"PUT", key, writeToken, `{"limit": 30}`, 200, ""},
		{"GET", key, readToken, "", 200, ""},
		{"GET", key, writeToken, "", 200, ""},
		{"GET", key, hashedToken, "", 200, ""},
		{"GET", "/v1/tables/count/keys?limit=5", readToken, "", 200, ""},
		{"GET", "/v1/status", adminToken, "", 200, ""},
		{"PUT", key, adminToken, `{"limit": 31}`, 200, ""},
		{"GET", "/healthz", "", "", 200, ""},
		{"GET", "/readyz", "", "", 200, ""},
	} {
		status, body, hdr := authRequest(t, c, tc.method, base+tc.path, tc.token, tc.body)
		if status != tc.status || (tc.code != "" && body["code"] != tc.code) {
			t.Errorf("%s %s with %q: %d %v; want %d %s", tc.method, tc.path, tc.token, status, body, tc.status, tc.code)
		}
		if status == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s %s: 401 without WWW-Authenticate: Bearer (%q)", tc.method, tc.path, hdr.Get("WWW-Authenticate"))
		}
	}
	// /metrics answers in text, not JSON.
	for _, tok := range []string{metricsToken, hashedToken, adminToken} {
		if status, _, _ := authRequest(t, c, "GET", base+"/metrics", tok, ""); status != 200 {
			t.Errorf("/metrics with a metrics token: %d", status)
		}
	}
	status, body, _ := authRequest(t, c, "GET", base+"/v1/status", adminToken, "")
	sec, _ := body["http"].(map[string]any)
	if status != 200 || sec["tokens"] != 5.0 || sec["tls"] != false {
		t.Errorf("/v1/status http = %v", body["http"])
	}
	raw, _ := json.Marshal(body)

	// A token removed from the file is refused after a reload.
	if err := os.WriteFile(path, []byte("admin "+adminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cfg.HTTPTokens.Reload(); err != nil {
		t.Fatal(err)
	}
	if status, _, _ := authRequest(t, c, "GET", base+key, readToken, ""); status != 401 {
		t.Errorf("removed token after reload: %d, want 401", status)
	}
	if err := os.WriteFile(path, []byte("read x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cfg.HTTPTokens.Reload(); !errors.Is(err, httpapi.ErrTokens) {
		t.Errorf("reload of a bad file: %v", err)
	}
	if status, _, _ := authRequest(t, c, "GET", base+"/v1/status", adminToken, ""); status != 200 {
		t.Errorf("after a failed reload: %d, want the previous tokens kept", status)
	}

	out := logs.String()
	if !strings.Contains(out, "HTTP request refused") {
		t.Errorf("refusals are not logged at debug level:\n%s", out)
	}
	for _, tok := range []string{readToken, writeToken, adminToken, metricsToken, hashedToken, "not-a-known-token"} {
		if strings.Contains(out, tok) || strings.Contains(string(raw), tok) {
			t.Errorf("token %q in the logs or /v1/status", tok)
		}
	}
}

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, as PEM files.
type testPKI struct {
	ca, serverCert, serverKey, clientCert, clientKey string
	pool                                             *x509.CertPool
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	pki := jstest.NewPKI(t, "server", "client")
	pem, err := os.ReadFile(pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI{ca: pki.CA, serverCert: pki.Cert("server"), serverKey: pki.Key("server"),
		clientCert: pki.Cert("client"), clientKey: pki.Key("client"), pool: x509.NewCertPool()}
	if !p.pool.AppendCertsFromPEM(pem) {
		t.Fatal("no CA certificate")
	}
	return p
}

// client returns an HTTPS client that trusts the CA, with the client
// certificate if withCert.
func (p testPKI) client(t *testing.T, withCert bool) *http.Client {
	t.Helper()
	cfg := &tls.Config{RootCAs: p.pool}
	if withCert {
		c, err := tls.LoadX509KeyPair(p.clientCert, p.clientKey)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
}

// TestHTTPTLS: with a certificate, a client CA and tokens, the API answers
// HTTPS only; a client that trusts the CA and shows a certificate it signed
// reads with a token; without a certificate only /healthz and /readyz
// answer; a client that does not trust the CA, or speaks plain HTTP, gets
// nothing.
func TestHTTPTLS(t *testing.T) {
	pki := newTestPKI(t)
	cfg := testConfig(t, t.TempDir(), "name=count,source=ev.*,key=subject:2,agg=count")
	var err error
	if cfg.HTTPTLS, err = httpapi.LoadHTTPTLS(pki.serverCert, pki.serverKey, pki.ca); err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPTokens, err = httpapi.LoadTokens(writeTokens(t)); err != nil {
		t.Fatal(err)
	}
	n, _ := runNode(t, cfg)
	publish(t, n, "ev.a", "{}")
	base := "https://" + n.HTTPAddr()
	withCert, noCert := pki.client(t, true), pki.client(t, false)

	deadline := time.Now().Add(10 * time.Second)
	for {
		status, body, _ := authRequest(t, withCert, "GET", base+"/v1/tables/count/keys/a", readToken, "")
		if status == 200 && body["value"] == 1.0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("HTTPS read with certificate and token: %d %v", status, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if status, body, _ := authRequest(t, withCert, "GET", base+"/v1/tables/count/keys/a", "", ""); status != 401 {
		t.Errorf("certificate without token: %d %v, want 401", status, body)
	}
	if status, body, _ := authRequest(t, noCert, "GET", base+"/v1/tables/count/keys/a", readToken, ""); status != 401 || body["code"] != httpapi.CodeUnauthorized {
		t.Errorf("token without certificate: %d %v, want 401", status, body)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if status, _, _ := authRequest(t, noCert, "GET", base+p, "", ""); status != 200 {
			t.Errorf("%s without certificate or token: %d, want 200", p, status)
		}
	}
	status, body, _ := authRequest(t, withCert, "GET", base+"/v1/status", adminToken, "")
	if sec, _ := body["http"].(map[string]any); status != 200 || sec["tls"] != true || sec["client_certs"] != true {
		t.Errorf("/v1/status http = %d %v", status, body["http"])
	}
	untrusting := &http.Client{Timeout: 10 * time.Second}
	if _, err := untrusting.Get(base + "/healthz"); err == nil {
		t.Error("a client that does not trust the CA connected")
	}
	if resp, err := untrusting.Get("http://" + n.HTTPAddr() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP answered 200 on the HTTPS port")
		}
	}
	if _, err := httpapi.LoadHTTPTLS(pki.serverCert, pki.clientKey, ""); !errors.Is(err, httpapi.ErrTLSFiles) {
		t.Errorf("mismatched key: %v, want ErrTLSFiles", err)
	}
	// TLS 1.2 with CBC and SHA-1 only, or TLS 1.1: no handshake.
	for _, c := range []*tls.Config{
		{RootCAs: pki.pool, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}},
		{RootCAs: pki.pool, MaxVersion: tls.VersionTLS11},
	} {
		if conn, err := tls.Dial("tcp", n.HTTPAddr(), c); err == nil {
			conn.Close()
			t.Errorf("a handshake with TLS %x, suites %x succeeded", c.MaxVersion, c.CipherSuites)
		}
	}
	c12 := &tls.Config{RootCAs: pki.pool, MaxVersion: tls.VersionTLS12}
	if conn, err := tls.Dial("tcp", n.HTTPAddr(), c12); err != nil {
		t.Errorf("TLS 1.2 with the default suites: %v", err)
	} else {
		conn.Close()
	}
}

// TestRoutedReadWithTokens: in a cluster of two nodes with tokens, every
// key answers on both nodes with a read token (the node that does not own
// it asks the owner over NATS), and 401 without one.
func TestRoutedReadWithTokens(t *testing.T) {
	path := writeTokens(t)
	c := newConfiguredCluster(t, 2, func(i int, cfg *Config) {
		var err error
		if cfg.HTTPTokens, err = httpapi.LoadTokens(path); err != nil {
			t.Error(err)
		}
	}, "name=count,source=ev.*,key=subject:2,agg=count")
	keys := map[string]int{}
	for i := 0; i < 12; i++ {
		keys[fmt.Sprintf("k%d", i)] = 1
	}
	c.publish(keys, func(k string) string { return "ev." + k })
	routed := 0
	for _, n := range c.live() {
		for k := range keys {
			url := "http://" + n.HTTPAddr() + "/v1/tables/count/keys/" + k
			deadline := time.Now().Add(15 * time.Second)
			for {
				status, body, _ := authRequest(t, http.DefaultClient, "GET", url, readToken, "")
				if status == 200 && body["value"] == 1.0 {
					if owner, _ := n.Manager().Owner(int(body["partition"].(float64))); owner != n.Manager().Node() {
						routed++
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s on %s: %d %v", k, n.cfg.Name, status, body)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if status, _, _ := authRequest(t, http.DefaultClient, "GET", url, "", ""); status != 401 {
				t.Errorf("%s on %s without token: %d, want 401", k, n.cfg.Name, status)
			}
		}
	}
	if routed == 0 {
		t.Error("no read was routed to the other node")
	}
}
