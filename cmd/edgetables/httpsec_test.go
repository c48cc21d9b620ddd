package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgetables/edgetables/jetstream/jstest"
)

// writeServerPKI writes a CA and a certificate for 127.0.0.1 it signed, as
// PEM files, and returns their paths.
func writeServerPKI(t *testing.T) (ca, cert, key string) {
	t.Helper()
	pki := jstest.NewPKI(t, "node")
	return pki.CA, pki.Cert("node"), pki.Key("node")
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHTTPSecurityFlagErrors(t *testing.T) {
	table := "--table=name=c,source=a.*,key=subject:2,agg=count"
	ca, cert, key := writeServerPKI(t)
	shortTokens := writeFile(t, "tokens", "read short\n")
	for _, c := range []struct {
		name    string
		args    []string
		mention string
	}{
		{"cert without key", []string{"run", table, "--http-tls-cert=" + cert}, "--http-tls-cert and --http-tls-key"},
		{"client CA without cert", []string{"run", table, "--http-tls-client-ca=" + ca}, "--http-tls-client-ca"},
		{"missing tokens file", []string{"run", table, "--http-tokens=/nonexistent/tokens"}, "--http-tokens"},
		{"bad tokens file", []string{"run", table, "--http-tokens=" + shortTokens}, "--http-tokens"},
		{"key of another cert", []string{"run", table, "--http-tls-cert=" + ca, "--http-tls-key=" + key}, "--http-tls-cert"},
		{"status cert without key", []string{"status", "--http-cert=" + cert}, "--http-cert and --http-key"},
		{"status bad CA", []string{"status", "--http-ca=" + key}, "--http-ca"},
		{"status empty token file", []string{"status", "--http-token-file=" + writeFile(t, "empty", "\n")}, "--http-token-file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := realMain(context.Background(), c.args, &stdout, &stderr); code != exitUsage {
				t.Errorf("exit %d, want %d; stderr: %s", code, exitUsage, stderr.String())
			}
			if !strings.Contains(stderr.String(), c.mention) {
				t.Errorf("stderr does not mention %q:\n%s", c.mention, stderr.String())
			}
			if strings.Contains(stderr.String(), "short") {
				t.Errorf("stderr holds the token:\n%s", stderr.String())
			}
		})
	}
}

// TestStatusOverHTTPSWithToken: a node run with --http-tokens and
// --http-tls-cert/--http-tls-key answers `edgetables status` given the CA
// and a token from a file or the environment, refuses it without a token,
// and after SIGHUP refuses a token removed from the file.
func TestStatusOverHTTPSWithToken(t *testing.T) {
	ca, cert, key := writeServerPKI(t)
	const admin, read = "admin-token-for-the-cli-test", "read-token-for-the-cli-test"
	tokens := writeFile(t, "tokens", "admin "+admin+"\nread "+read+"\n")
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- realMain(ctx, []string{"run", "--name=t", "--data-dir=" + t.TempDir(), "--nats-listen=127.0.0.1:0",
			fmt.Sprintf("--http-listen=127.0.0.1:%d", port), "--table=name=c,source=a.*,key=subject:2,agg=count",
			"--http-tokens=" + tokens, "--http-tls-cert=" + cert, "--http-tls-key=" + key, "--log-level=debug"}, &stdout, &stderr)
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("run exit %d: %s", code, stderr.String())
		}
	}()
	url := fmt.Sprintf("https://127.0.0.1:%d", port)
	status := func(env string, args ...string) (int, string) {
		t.Setenv(tokenEnv, env)
		var out, errOut bytes.Buffer
		code := realMain(context.Background(), append([]string{"status", "--http=" + url, "--json", "--http-ca=" + ca}, args...), &out, &errOut)
		return code, out.String() + errOut.String()
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, out := status("", "--http-token-file="+writeFile(t, "admin", admin+"\n"))
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status with a token file: exit %d: %s\nnode: %s", code, out, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// --http with the /v1/status path works too; a wrong path is a clean
	// error, the API's message, not a Go value dump.
	adminFile := writeFile(t, "admin", admin+"\n")
	var out, errOut bytes.Buffer
	if code := realMain(context.Background(), []string{"status", "--http=" + url + "/v1/status", "--json", "--http-ca=" + ca, "--http-token-file=" + adminFile}, &out, &errOut); code != 0 {
		t.Errorf("status --http URL/v1/status: exit %d: %s", code, errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := realMain(context.Background(), []string{"status", "--http=" + url + "/elsewhere", "--http-ca=" + ca, "--http-token-file=" + adminFile}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "404 Not Found: no such path: /elsewhere/v1/status") || strings.Contains(errOut.String(), "<nil>") {
		t.Errorf("status at a wrong path: exit %d: %s", code, errOut.String())
	}
	if code, out := status(admin); code != 0 {
		t.Errorf("status with the token in %s: exit %d: %s", tokenEnv, code, out)
	}
	if code, out := status(""); code != 1 || !strings.Contains(out, "401") {
		t.Errorf("status without token: exit %d: %s; want 1 and HTTP 401", code, out)
	}
	if code, out := status(read); code != 1 || !strings.Contains(out, "403") {
		t.Errorf("status with a read token: exit %d: %s; want 1 and HTTP 403", code, out)
	}
	// SIGHUP re-reads the tokens file.
	if err := os.WriteFile(tokens, []byte("read "+read+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		code, _ := status(admin)
		if code == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the admin token still works 10s after SIGHUP; node: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Plain HTTP gets no answer from the HTTPS port.
	if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port)); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP answered 200")
		}
	}
	for _, tok := range []string{admin, read} {
		if strings.Contains(stderr.String(), tok) {
			t.Errorf("a token is in the node's log")
		}
	}
	if !strings.Contains(stderr.String(), "HTTP tokens reloaded") {
		t.Errorf("no reload logged:\n%s", stderr.String())
	}
}
