package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/edgetables/edgetables/edge"
)

func TestSecurityFlagErrors(t *testing.T) {
	table := "--table=name=c,source=a.*,key=subject:2,agg=count"
	dir := t.TempDir()
	cases := []struct {
		name    string
		args    []string
		mention string
	}{
		{"password on the command line", []string{"run", table, "--nats-url=nats://127.0.0.1:4222", "--nats-user=u", "--nats-password=s3cret"}, "--nats-password-file"},
		{"token on the command line", []string{"run", table, "--nats-url=nats://127.0.0.1:4222", "--nats-token", "s3cret"}, "--nats-token-file"},
		{"route password on the command line", []string{"run", table, "--cluster-password=s3cret"}, "--cluster-password-file"},
		{"tls cert without key", []string{"run", table, "--nats-tls-cert=" + writeFileIn(t, dir, "c.pem", "x")}, "--nats-tls-key"},
		{"cluster tls without ca", []string{"run", table, "--name=a", "--cluster-listen=127.0.0.1:6222", "--cluster-tls-cert=" + writeFileIn(t, dir, "c.pem", "x"), "--cluster-tls-key=" + writeFileIn(t, dir, "k.pem", "x")}, "--cluster-tls-ca"},
		{"users file with nats-url", []string{"run", table, "--nats-url=nats://127.0.0.1:4222", "--nats-auth=" + writeFileIn(t, dir, "u.json", "{}")}, "--nats-auth"},
		{"route password without cluster", []string{"run", table, "--cluster-password-file=" + writeFileIn(t, dir, "pw", "x")}, "--cluster-listen"},
		{"account without config", []string{"run", table, "--nats-account=APP"}, "--nats-account"},
		{"plain password in users file", []string{"run", table, "--data-dir=" + t.TempDir(), "--http-listen=127.0.0.1:0",
			"--nats-auth=" + writeFileIn(t, dir, "plain.json", `{"users":[{"user":"d","password_bcrypt":"secret","role":"device"}]}`)}, "not a bcrypt hash"},
		{"open beyond loopback", []string{"run", table, "--data-dir=" + t.TempDir(), "--http-listen=127.0.0.1:0", "--nats-listen=0.0.0.0:0"}, "--insecure"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := realMain(context.Background(), c.args, &stdout, &stderr)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stderr: %s", code, exitUsage, stderr.String())
			}
			if !strings.Contains(stderr.String(), c.mention) {
				t.Errorf("stderr does not mention %q:\n%s", c.mention, stderr.String())
			}
			if strings.Contains(stderr.String(), "s3cret") {
				t.Errorf("stderr holds the secret:\n%s", stderr.String())
			}
		})
	}
}

func writeFileIn(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPasswd(t *testing.T) {
	var out, errb bytes.Buffer
	if code := (&passwdCmd{Cost: bcrypt.MinCost}).run(strings.NewReader("correct horse\n"), &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	h := strings.TrimSpace(out.String())
	if err := bcrypt.CompareHashAndPassword([]byte(h), []byte("correct horse")); err != nil {
		t.Errorf("hash %q does not match: %v", h, err)
	}
	if code := (&passwdCmd{Cost: bcrypt.MinCost}).run(strings.NewReader("\n"), &out, &errb); code == 0 {
		t.Error("an empty password was hashed")
	}
}

// TestCLIDeviceAuth runs the binary with a users file: a device publishes
// and its events are counted, a client without credentials is refused, and
// a second node in --nats-url mode connects as admin with its password read
// from a file. No password reaches the logs.
func TestCLIDeviceAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	const devPassword, adminPassword = "cli-dev-secret-5b0e", "cli-admin-secret-c4d7"
	bin := buildBinary(t)
	dir := t.TempDir()
	hash := func(p string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	users := writeFileIn(t, dir, "users.json", fmt.Sprintf(`{"users": [
		{"user": "dev-1", "password_bcrypt": %q, "role": "device"},
		{"user": "ops", "password_bcrypt": %q, "role": "admin"}]}`, hash(devPassword), hash(adminPassword)))
	natsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	start := func(name, source string, args ...string) (*exec.Cmd, *lockedBuffer, string) {
		httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		log := new(lockedBuffer)
		cmd := exec.Command(bin, append([]string{"run", "--name=" + name, "--data-dir=" + filepath.Join(dir, name),
			"--http-listen=" + httpAddr, "--table=name=count,source=" + source + ",key=subject:2,agg=count"}, args...)...)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
		deadline := time.Now().Add(30 * time.Second)
		for {
			if resp, err := http.Get("http://" + httpAddr + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return cmd, log, httpAddr
				}
			}
			select {
			case <-exited:
				t.Fatalf("%s exited; log:\n%s", name, log)
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not ready; log:\n%s", name, log)
			}
		}
	}
	_, log1, http1 := start("n1", "sensors.*.temp", "--nats-listen="+natsAddr, "--nats-auth="+users)

	url := "nats://" + natsAddr
	if nc, err := nats.Connect(url, nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("a client without credentials connected")
	}
	nc, err := nats.Connect(url, nats.UserInfo("dev-1", devPassword), nats.CustomInboxPrefix("_INBOX.dev-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range 5 {
		if _, err := js.Publish(ctx, "sensors.d1.temp", []byte("{}")); err != nil {
			t.Fatalf("device publish: %v", err)
		}
	}
	waitCount(t, http1, "d1", 5)

	// A node of another app on the same NATS, as admin, password in a file.
	pwFile := writeFileIn(t, dir, "ops.password", adminPassword+"\n")
	_, log2, _ := start("n2", "meters.*.kwh", "--app=other", "--nats-url="+url, "--nats-user=ops", "--nats-password-file="+pwFile)

	for _, l := range []*lockedBuffer{log1, log2} {
		for _, secret := range []string{devPassword, adminPassword} {
			if strings.Contains(l.String(), secret) {
				t.Errorf("a log holds %q", secret)
			}
		}
	}
}

func waitCount(t *testing.T, httpAddr, key string, want int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var got struct{ Value float64 }
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + httpAddr + "/v1/tables/count/keys/" + key)
		if err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
			if resp.StatusCode == 200 && int(got.Value) == want {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("count %s = %v, want %d", key, got.Value, want)
}

// The secrets of --nats-url come from a file or the environment.
func TestSecretFromEnvAndFile(t *testing.T) {
	table := "--table=name=c,source=a.*,key=subject:2,agg=count"
	parse := func(args ...string) edge.Config {
		t.Helper()
		var c cli
		parser, err := kong.New(&c, kong.DefaultEnvars("EDGETABLES"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parser.Parse(append([]string{"run", table, "--nats-url=nats://127.0.0.1:4222"}, args...)); err != nil {
			t.Fatal(err)
		}
		cfg, err := c.Run.config(nil)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	t.Setenv("EDGETABLES_NATS_PASSWORD", "from-env")
	if cfg := parse("--nats-user=u"); cfg.NATS.Password != "from-env" {
		t.Errorf("password %q, want the environment's", cfg.NATS.Password)
	}
	t.Setenv("EDGETABLES_NATS_PASSWORD", "")
	file := writeFileIn(t, t.TempDir(), "pw", "from-file\n")
	if cfg := parse("--nats-user=u", "--nats-password-file="+file); cfg.NATS.Password != "from-file" {
		t.Errorf("password %q, want the file's", cfg.NATS.Password)
	}
	tok := writeFileIn(t, t.TempDir(), "tok", "tok-from-file")
	if cfg := parse("--nats-token-file=" + tok); cfg.NATS.Token != "tok-from-file" {
		t.Errorf("token %q, want the file's", cfg.NATS.Token)
	}
}
