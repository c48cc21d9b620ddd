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
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgetables/edgetables/jetstream/jstest"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

func TestFlagErrors(t *testing.T) {
	table := "--table=name=c,source=a.*,key=subject:2,agg=count"
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		mention string
	}{
		{"no table", []string{"run"}, nil, "--table"},
		{"bad agg", []string{"run", "--table=name=c,source=a.*,key=subject:2,agg=median"}, nil, "--table"},
		{"bad key", []string{"run", "--table=name=c,source=a.*,key=subject:9,agg=count"}, nil, "only 2 tokens"},
		{"partitions", []string{"run", table, "--partitions=0"}, nil, "--partitions"},
		{"partitions not a number", []string{"run", table, "--partitions=many"}, nil, "--partitions"},
		{"commit interval", []string{"run", table, "--commit-interval=-1s"}, nil, "--commit-interval"},
		{"gc percent", []string{"run", table, "--gc-percent=-5"}, nil, "--gc-percent"},
		{"election timeout", []string{"run", table, "--election-timeout=100ms"}, nil, "--election-timeout 100ms"},
		{"election timeout with nats url", []string{"run", table, "--nats-url=nats://127.0.0.1:4222", "--election-timeout=1s"}, nil, "--election-timeout"},
		{"sync", []string{"run", table, "--sync=sometimes"}, nil, "--sync"},
		{"changelog behind", []string{"run", table, "--changelog-behind=ignore"}, nil, "--changelog-behind"},
		{"standby buffer", []string{"run", table, "--standby-buffer-size=0"}, nil, "--standby-buffer-size"},
		{"recovery buffer huge", []string{"run", table, "--recovery-buffer-size=9223372036854775807"}, nil, "--recovery-buffer-size"},
		{"source everything", []string{"run", "--table=name=c,source=>,key=subject:1,agg=count"}, nil, "--table c: source \">\""},
		{"source the app's own", []string{"run", "--table=name=c,source=edgetables.>,key=subject:1,agg=count"}, nil, "the app's own subjects"},
		{"source JetStream's API", []string{"run", "--table=name=c,source=$JS.API.>,key=subject:1,agg=count"}, nil, "NATS's own subjects"},
		{"source inboxes", []string{"run", "--table=name=c,source=_INBOX.>,key=subject:1,agg=count"}, nil, "NATS's own subjects"},
		{"app", []string{"run", table, "--app=a.b"}, nil, "--app"},
		{"unknown flag", []string{"run", table, "--colour=red"}, nil, "--colour"},
		{"duplicate table", []string{"run", table, table}, nil, "used twice"},
		{"env partitions", []string{"run", table}, map[string]string{"EDGETABLES_PARTITIONS": "5000"}, "--partitions"},
		{"env table", []string{"run"}, map[string]string{"EDGETABLES_TABLE": "name=c,source=a.*,key=nope,agg=count"}, "--table"},
		{"bad window", []string{"run", "--table=name=c,source=a.*,key=subject:2,agg=count,window=soon"}, nil, "--table"},
		{"hop over window", []string{"run", "--table=name=c,source=a.*,key=subject:2,agg=count,window=1m,hop=5m"}, nil, "--table"},
		{"hop without window", []string{"run", "--table=name=c,source=a.*,key=subject:2,agg=count,hop=5m"}, nil, "hop needs window"},
		{"bad time", []string{"run", "--table=name=c,source=a.*,key=subject:2,agg=count,window=1m,time=wall"}, nil, "--table"},
		{"set without field", []string{"run", "--table=name=c,source=a.*,key=subject:2,agg=set"}, nil, "set needs field"},
		{"bad global table", []string{"run", table, "--global-table=Config"}, nil, "--global-table"},
		{"global table clash", []string{"run", table, "--global-table=c"}, nil, "--global-table"},
		{"nats url with a space", []string{"run", table, "--nats-url=ht tp://x"}, nil, "--nats-url"},
		{"nats url scheme", []string{"run", table, "--nats-url=http://localhost:4222"}, nil, "--nats-url"},
		{"nats url without host", []string{"run", table, "--nats-url=nats://:4222"}, nil, "--nats-url"},
		{"replicas alone", []string{"run", table, "--replicas=5"}, nil, "--replicas 5: a single node"},
		{"reset undeclared table", []string{"run", table, "--reset-table=d"}, nil, "--reset-table d"},
		{"tombstone ttl", []string{"run", table, "--tombstone-ttl=500ms"}, nil, "--tombstone-ttl"},
		{"negative max clock skew", []string{"run", table, "--max-clock-skew=-5m"}, nil, "--max-clock-skew -5m0s"},
		{"status timeout", []string{"status", "--timeout=-1s"}, nil, "--timeout -1s"},
		{"max store too small", []string{"run", table, "--max-store=1MiB"}, nil, "--max-store 1MiB"},
		{"max store not a size", []string{"run", table, "--max-store=lots"}, nil, "--max-store"},
		{"source over max store", []string{"run", table, "--max-store=64MiB", "--source-max-bytes=40MiB"}, nil, "--source-max-bytes 40MiB: does not fit --max-store 64MiB"},
		{"max memory too small", []string{"run", table, "--max-memory=1000"}, nil, "--max-memory"},
		{"max store with nats url", []string{"run", table, "--nats-url=nats://127.0.0.1:4222", "--max-store=1GiB"}, nil, "--max-store"},
		{"leaf remote scheme", []string{"run", table, "--leaf-remote=http://hub:7422"}, nil, "--leaf-remote"},
		{"leaf remote with password", []string{"run", table, "--leaf-remote=nats-leaf://u:secret@hub:7422"}, nil, "--leaf-remote"},
		{"leaf user without password file", []string{"run", table, "--leaf-remote=nats-leaf://hub:7422", "--leaf-user=u"}, nil, "--leaf-password-file"},
		{"leaf creds without remote", []string{"run", table, "--leaf-creds=main.go"}, nil, "need --leaf-remote"},
		{"site domain is the hub's", []string{"run", table, "--leaf-remote=nats-leaf://hub:7422", "--js-domain=hub"}, nil, "--js-domain"},
		{"bad hub site", []string{"run", table, "--hub-site=a.b"}, nil, "--hub-site"},
		{"hub site twice", []string{"run", table, "--hub-site=s1", "--hub-site=s1=x"}, nil, "--hub-site"},
		{"bad table name", []string{"run", "--table=name=Temps,source=a.*,key=subject:2,agg=count"}, nil, "--table"},
		{"table name with a dot", []string{"run", "--table=name=a.b,source=a.*,key=subject:2,agg=count"}, nil, "--table"},
		{"nats listen garbage", []string{"run", table, "--nats-listen=garbage"}, nil, "--nats-listen"},
		{"nats listen port", []string{"run", table, "--nats-listen=127.0.0.1:99999"}, nil, "--nats-listen"},
		{"http listen garbage", []string{"run", table, "--http-listen=localhost"}, nil, "--http-listen"},
		{"cluster listen garbage", []string{"run", table, "--name=a", "--cluster-listen=nowhere"}, nil, "--cluster-listen"},
		{"status http scheme", []string{"status", "--http=ftp://host:8080"}, nil, "--http"},
		{"replicas over routes", []string{"run", table, "--name=a", "--cluster-listen=127.0.0.1:6222", "--routes=nats-route://127.0.0.1:6222", "--replicas=3"}, nil, "--replicas 3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := realMain(context.Background(), c.args, &stdout, &stderr)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stderr: %s", code, exitUsage, stderr.String())
			}
			if !strings.Contains(stderr.String(), c.mention) {
				t.Errorf("stderr does not mention %q:\n%s", c.mention, stderr.String())
			}
		})
	}
}

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := realMain(context.Background(), []string{"version"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "edgetables ") {
		t.Errorf("version printed %q", stdout.String())
	}
}

func TestRunStopsOnContextEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- realMain(ctx, []string{"run", "--name=t", "--data-dir=" + t.TempDir(), "--nats-listen=127.0.0.1:0",
			"--http-listen=127.0.0.1:0", "--table=name=c,source=a.*,key=subject:2,agg=count"}, &stdout, &stderr)
	}()
	time.Sleep(500 * time.Millisecond)
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d: %s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not stop")
	}
}

// freePort returns a loopback port that was free a moment ago (see
// jstest.FreePort).
func freePort(t testing.TB) int {
	t.Helper()
	return jstest.FreePort(t)
}

// buildBinary builds edgetables into a temp dir.
func buildBinary(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "edgetables")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type proc struct {
	cmd  *exec.Cmd
	http string
	nats string
	log  *lockedBuffer
}

// lockedBuffer is a bytes.Buffer a process writes while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startProc(t *testing.T, bin, dataDir string, natsPort, httpPort int, extra ...string) *proc {
	t.Helper()
	p := &proc{http: fmt.Sprintf("127.0.0.1:%d", httpPort), nats: fmt.Sprintf("nats://127.0.0.1:%d", natsPort), log: new(lockedBuffer)}
	args := append([]string{"run", "--name=e2e", "--data-dir=" + dataDir,
		"--nats-listen=" + strings.TrimPrefix(p.nats, "nats://"), "--http-listen=" + p.http,
		"--table=name=count,source=sensors.*.temp,key=subject:2,agg=count",
		"--table=name=sum,source=sensors.*.temp,key=subject:2,agg=sum,field=value"}, extra...)
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); _ = p.cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + p.http + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node not ready; log:\n%s", p.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *proc) get(t testing.TB, path string, v any) int {
	t.Helper()
	resp, err := http.Get("http://" + p.http + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode
}

// checkAll reports the first key whose count or sum differs from want.
func (p *proc) checkAll(t testing.TB, counts map[string]int, sums map[string]float64) string {
	for k, n := range counts {
		var c, s struct{ Value float64 }
		if code := p.get(t, "/v1/tables/count/keys/"+k, &c); code != 200 || int(c.Value) != n {
			return fmt.Sprintf("count %s = %v (HTTP %d), want %d", k, c.Value, code, n)
		}
		if code := p.get(t, "/v1/tables/sum/keys/"+k, &s); code != 200 || s.Value != sums[k] {
			return fmt.Sprintf("sum %s = %v (HTTP %d), want %v", k, s.Value, code, sums[k])
		}
	}
	return ""
}

// TestKill9Restart is the README's walk-through: run a node, publish 10,000
// events, read exact aggregates, kill -9, restart, read the same aggregates,
// with the restart replaying only the changelog tail.
func TestKill9Restart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dataDir := t.TempDir()
	natsPort, httpPort := freePort(t), freePort(t)
	p := startProc(t, bin, dataDir, natsPort, httpPort)

	nc, err := nats.Connect(p.nats)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := natsjs.New(nc)
	counts, sums := map[string]int{}, map[string]float64{}
	for i := 0; i < 10000; i++ {
		dev := fmt.Sprintf("d%d", i%100)
		v := float64(i % 7)
		if _, err := js.PublishAsync("sensors."+dev+".temp", []byte(fmt.Sprintf(`{"value":%v}`, v))); err != nil {
			t.Fatal(err)
		}
		counts[dev]++
		sums[dev] += v
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("publish did not complete")
	}
	nc.Close()

	deadline := time.Now().Add(30 * time.Second)
	for msg := p.checkAll(t, counts, sums); msg != ""; msg = p.checkAll(t, counts, sums) {
		if time.Now().After(deadline) {
			t.Fatalf("aggregates never exact: %s", msg)
		}
		time.Sleep(100 * time.Millisecond)
	}

	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()

	p = startProc(t, bin, dataDir, natsPort, httpPort)
	if msg := p.checkAll(t, counts, sums); msg != "" {
		t.Fatalf("after kill -9 and restart: %s\nlog:\n%s", msg, p.log)
	}
	var st struct {
		Partitions []struct {
			Recovery struct {
				Records int  `json:"records"`
				Rebuilt bool `json:"rebuilt"`
			} `json:"recovery"`
		} `json:"partitions"`
	}
	p.get(t, "/v1/status", &st)
	replayed := 0
	for _, ps := range st.Partitions {
		if ps.Recovery.Rebuilt {
			t.Error("a store was rebuilt after kill -9")
		}
		replayed += ps.Recovery.Records
	}
	// The changelog holds 200 live keys plus a commit marker per partition;
	// a tail replay reads fewer than that.
	if replayed >= 200 {
		t.Errorf("restart replayed %d changelog records: more than the tail", replayed)
	}
	t.Logf("restart after kill -9 replayed %d changelog records", replayed)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, p.log)
	}
	_ = os.Remove(bin)
}
