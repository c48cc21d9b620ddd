package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// publishEvents publishes n events of 10 devices to the node at natsURL
// and adds them to counts and sums.
func publishEvents(t *testing.T, natsURL string, n int, counts map[string]int, sums map[string]float64) {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	for i := range n {
		dev, v := fmt.Sprintf("d%d", i%10), float64(i%7)
		if _, err := js.PublishAsync("sensors."+dev+".temp", fmt.Appendf(nil, `{"value":%v}`, v)); err != nil {
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
}

// waitExact waits until p serves counts and sums.
func (p *proc) waitExact(t *testing.T, counts map[string]int, sums map[string]float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for msg := p.checkAll(t, counts, sums); msg != ""; msg = p.checkAll(t, counts, sums) {
		if time.Now().After(deadline) {
			t.Fatalf("aggregates never exact: %s\nlog:\n%s", msg, p.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSecondProcessRefused: a second process on the data directory of a
// running node, with its own embedded server or with --nats-url, exits at
// once with status 1 and an error naming the directory and the holder's
// pid. It touches nothing there: the first node keeps serving exact
// aggregates and its JetStream files stay whole (before the lock, the
// second's embedded server damaged them, and the first logged "no message
// cache"). After a kill -9 of the holder, a new process takes the
// directory.
func TestSecondProcessRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dataDir := t.TempDir()
	natsPort, httpPort := freePort(t), freePort(t)
	p := startProc(t, bin, dataDir, natsPort, httpPort)
	counts, sums := map[string]int{}, map[string]float64{}
	publishEvents(t, p.nats, 1000, counts, sums)
	p.waitExact(t, counts, sums)

	tables := []string{"--table=name=count,source=sensors.*.temp,key=subject:2,agg=count",
		"--table=name=sum,source=sensors.*.temp,key=subject:2,agg=sum,field=value"}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"embedded NATS", []string{fmt.Sprintf("--nats-listen=127.0.0.1:%d", freePort(t))}},
		{"--nats-url", []string{"--nats-url=" + p.nats}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			args := append([]string{"run", "--name=second", "--data-dir=" + dataDir,
				fmt.Sprintf("--http-listen=127.0.0.1:%d", freePort(t))}, c.args...)
			start := time.Now()
			out, err := exec.CommandContext(ctx, bin, append(args, tables...)...).CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("second process: %v, want exit status 1; output:\n%s", err, out)
			}
			for _, want := range []string{dataDir, fmt.Sprintf("pid %d", p.cmd.Process.Pid), "data directory in use"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("output does not name %q:\n%s", want, out)
				}
			}
			if strings.Contains(string(out), "nats-server ready") {
				t.Errorf("the second process started a server:\n%s", out)
			}
			t.Logf("second process exited in %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(string(out)))

			publishEvents(t, p.nats, 100, counts, sums)
			p.waitExact(t, counts, sums)
		})
	}
	for _, bad := range []string{"no message cache", "could not locate msg block"} {
		if strings.Contains(p.log.String(), bad) {
			t.Errorf("the first node logged %q:\n%s", bad, p.log)
		}
	}

	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
	p = startProc(t, bin, dataDir, natsPort, httpPort)
	if msg := p.checkAll(t, counts, sums); msg != "" {
		t.Fatalf("after kill -9 of the holder and a restart: %s\nlog:\n%s", msg, p.log)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, p.log)
	}
}
