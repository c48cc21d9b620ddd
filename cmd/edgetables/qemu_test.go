package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// qemuTargets are the device builds of deploy/release.sh that CI runs
// under qemu user emulation: the release binary's name, the emulator, and
// whether it runs an embedded cluster (a 32-bit build refuses to: see
// jetstream.ErrClusterUnsupported).
var qemuTargets = []struct {
	target, binary, qemu string
	cluster              bool
}{
	{"linux/arm64", "edgetables-linux-arm64", "qemu-aarch64", true},
	{"linux/arm/v7", "edgetables-linux-armv7", "qemu-arm", false},
}

// TestQEMUSmoke runs the ARM release binaries under qemu user emulation:
// `version`, then a node with one table (embedded server, temp data dir,
// random ports), events published with nats.go, a read over HTTP, and a
// clean stop. It runs when EDGETABLES_QEMU=1 (CI sets it); the binaries are
// those in EDGETABLES_QEMU_DIST (deploy/release.sh's OUT), checked against
// its SHA256SUMS, or else built with deploy/release.sh.
func TestQEMUSmoke(t *testing.T) {
	if os.Getenv("EDGETABLES_QEMU") != "1" {
		t.Skip("set EDGETABLES_QEMU=1 (needs qemu-user-static)")
	}
	dist := os.Getenv("EDGETABLES_QEMU_DIST")
	if dist == "" {
		dist = t.TempDir()
		var targets []string
		for _, q := range qemuTargets {
			targets = append(targets, q.target)
		}
		cmd := exec.Command("../../deploy/release.sh")
		cmd.Env = append(os.Environ(), "OUT="+dist, "TARGETS="+strings.Join(targets, " "))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("deploy/release.sh: %v\n%s", err, out)
		}
	}
	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qemuTargets {
		t.Run(q.binary, func(t *testing.T) {
			emu, err := exec.LookPath(q.qemu + "-static")
			if err != nil {
				if emu, err = exec.LookPath(q.qemu); err != nil {
					t.Fatalf("%s: neither %s-static nor %s on PATH (apt-get install qemu-user-static)", q.target, q.qemu, q.qemu)
				}
			}
			bin := filepath.Join(dist, q.binary)
			b, err := os.ReadFile(bin)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(b)
			if line := hex.EncodeToString(sum[:]) + "  " + q.binary; !strings.Contains(string(sums), line+"\n") {
				t.Errorf("SHA256SUMS lacks %q", line)
			}
			start := time.Now()
			qemuSmoke(t, emu, bin)
			if !q.cluster {
				qemuClusterRefused(t, emu, bin)
			}
			t.Logf("%s under %s: %s", q.binary, filepath.Base(emu), time.Since(start).Round(100*time.Millisecond))
		})
	}
}

// qemuSmoke runs bin under the emulator emu: version, a node, a publish, a read.
func qemuSmoke(t *testing.T, emu, bin string) {
	out, err := exec.Command(emu, bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "edgetables ") || !strings.Contains(string(out), "(commit ") {
		t.Fatalf("version: %v: %q (want a stamped version and commit)", err, out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))

	natsPort, httpPort := freePort(t), freePort(t)
	log := new(lockedBuffer)
	cmd := exec.Command(emu, bin, "run", "--name=smoke", "--data-dir="+t.TempDir(),
		fmt.Sprintf("--nats-listen=127.0.0.1:%d", natsPort), fmt.Sprintf("--http-listen=127.0.0.1:%d", httpPort),
		"--partitions=2", "--table=name=count,source=sensors.*.temp,key=subject:2,agg=count")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	p := &proc{http: fmt.Sprintf("127.0.0.1:%d", httpPort)}
	waitFor(t, 2*time.Minute, log, func() bool {
		resp, err := http.Get("http://" + p.http + "/readyz")
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
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	const events = 200
	for i := range events {
		if _, err := js.PublishAsync(fmt.Sprintf("sensors.d%d.temp", i%4), []byte(`{"value":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		t.Fatalf("publish not acknowledged; log:\n%s", log)
	}
	waitFor(t, time.Minute, log, func() bool {
		for d := range 4 {
			var v struct{ Value float64 }
			if p.get(t, fmt.Sprintf("/v1/tables/count/keys/d%d", d), &v) != 200 || v.Value != events/4 {
				return false
			}
		}
		return true
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, log)
	}
}

// qemuClusterRefused runs bin under emu as a cluster member, which a 32-bit
// build refuses: exit 2, naming --cluster-listen and why.
func qemuClusterRefused(t *testing.T, emu, bin string) {
	cmd := exec.Command(emu, bin, "run", "--name=c1", "--data-dir="+t.TempDir(),
		fmt.Sprintf("--cluster-listen=127.0.0.1:%d", freePort(t)), fmt.Sprintf("--routes=nats-route://127.0.0.1:%d", freePort(t)),
		"--table=name=count,source=sensors.*.temp,key=subject:2,agg=count")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "--cluster-listen") || !strings.Contains(string(out), "32-bit") {
		t.Fatalf("a cluster member in a 32-bit build: %v\n%s\nwant exit 2 naming --cluster-listen and the 32-bit build", err, out)
	}
}
