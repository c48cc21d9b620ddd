package main

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestConfigFileBinary is the README's --config walk-through with the
// binary: check a YAML file, then run a node from it with one setting
// overridden by the environment and one by a flag, publish, read, and see
// the memory limit the file set in /metrics.
func TestConfigFileBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	natsPort, httpPort, filePort := freePort(t), freePort(t), freePort(t)
	file := filepath.Join(dir, "site.yaml")
	cfg := fmt.Sprintf(`# a site
name: site1
data-dir: %s
nats-listen: 127.0.0.1:%d
http-listen: 127.0.0.1:%d   # overridden by EDGETABLES_HTTP_LISTEN
partitions: 3   # overridden by --partitions=2
memory-limit: 300MiB
table:
  - name=count,source=sensors.*.temp,key=subject:2,agg=count
  - {name: max, source: sensors.*.temp, key: subject:2, agg: max, field: value}
`, filepath.Join(dir, "data"), natsPort, filePort)
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), fmt.Sprintf("EDGETABLES_HTTP_LISTEN=127.0.0.1:%d", httpPort))

	out, err := exec.Command(bin, "check", "--config", file).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "configuration OK: node site1") || strings.Count(string(out), "\n") != 1 {
		t.Fatalf("check: %v\n%s", err, out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(cfg+"colour: red\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(bin, "check", "--config", bad).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitUsage || !strings.Contains(string(out), `"colour"`) {
		t.Fatalf("check of a file with an unknown key: %v\n%s", err, out)
	}

	log := new(lockedBuffer)
	cmd := exec.Command(bin, "run", "--config", file, "--partitions=2", "--log-level=debug")
	cmd.Env, cmd.Stdout, cmd.Stderr = env, log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	waitFor(t, 30*time.Second, log, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", natsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for i := range 50 {
		if _, err := nc.Request("sensors.d1.temp", fmt.Appendf(nil, `{"value":%d}`, i), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, log, func() bool {
		var c, m struct{ Value float64 }
		p := &proc{http: strings.TrimPrefix(base, "http://")}
		return p.get(t, "/v1/tables/count/keys/d1", &c) == 200 && c.Value == 50 &&
			p.get(t, "/v1/tables/max/keys/d1", &m) == 200 && m.Value == 49
	})
	var st struct{ Partitions []struct{ Partition int } }
	if (&proc{http: strings.TrimPrefix(base, "http://")}).get(t, "/v1/status", &st); len(st.Partitions) != 2 {
		t.Errorf("%d partitions, want 2 (--partitions=2 over the file's 3)", len(st.Partitions))
	}
	if got := scrapeMetric(t, base+"/metrics", "go_gc_gomemlimit_bytes"); got != 300<<20 {
		t.Errorf("go_gc_gomemlimit_bytes = %v, want %d (memory-limit: 300MiB)", got, 300<<20)
	}
	if os.Getenv("GOGC") == "" {
		if got := scrapeMetric(t, base+"/metrics", "go_gc_gogc_percent"); got != defaultGCPercent {
			t.Errorf("go_gc_gogc_percent = %v, want %d (the default without GOGC)", got, defaultGCPercent)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, log)
	}
}

// waitFor polls cond until it holds or the deadline passes (then it fails
// with the process's log).
func waitFor(t *testing.T, d time.Duration, log *lockedBuffer, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met in %s; log:\n%s", d, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scrapeMetric returns the value of the first sample of metric at url.
func scrapeMetric(t *testing.T, url, metric string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if ok && (name == metric || strings.HasPrefix(name, metric+"{")) {
			f, err := strconv.ParseFloat(val, 64)
			if err != nil {
				t.Fatalf("%s: %v", sc.Text(), err)
			}
			return f
		}
	}
	t.Fatalf("%s: no %s", url, metric)
	return 0
}
