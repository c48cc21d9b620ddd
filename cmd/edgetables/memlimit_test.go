package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

func TestMemoryLimitFlag(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    memoryLimit
		wantErr bool
	}{
		{"auto", memoryLimit{auto: true}, false},
		{" AUTO ", memoryLimit{auto: true}, false},
		{"0", memoryLimit{}, false},
		{"400MiB", memoryLimit{bytes: 400 << 20}, false},
		{"1.5GB", memoryLimit{bytes: 1.5e9}, false},
		{"lots", memoryLimit{}, true},
		{"-1MiB", memoryLimit{}, true},
		{"", memoryLimit{}, true},
	} {
		var got memoryLimit
		err := got.UnmarshalText([]byte(tc.in))
		if (err != nil) != tc.wantErr || (err == nil && got != tc.want) {
			t.Errorf("UnmarshalText(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestMemoryLimitResolve(t *testing.T) {
	capOf := func(c uint64, err error) memoryCap {
		return func() (uint64, error) { return c, err }
	}
	unreadable := errors.New("permission denied")
	for _, tc := range []struct {
		name      string
		limit     memoryLimit
		gomem     string // GOMEMLIMIT
		cap       memoryCap
		want      int64
		wantFrom  string
		wantError error
	}{
		{"a size", memoryLimit{bytes: 300 << 20}, "", capOf(1<<30, nil), 300 << 20, "--memory-limit", nil},
		{"a size over GOMEMLIMIT", memoryLimit{bytes: 300 << 20}, "100MiB", capOf(1<<30, nil), 300 << 20, "--memory-limit", nil},
		{"0 under a cap", memoryLimit{}, "", capOf(1<<30, nil), 0, "", nil},
		{"auto under a cap", memoryLimit{auto: true}, "", capOf(1000<<20, nil), 800 << 20, "80% of the cgroup's memory cap of 1048576000 bytes", nil},
		{"auto with GOMEMLIMIT", memoryLimit{auto: true}, "200MiB", capOf(1<<30, nil), 0, "", nil},
		{"auto without a cap", memoryLimit{auto: true}, "", capOf(0, memlimit.ErrNoLimit), 0, "", nil},
		{"auto with a cap of the largest int64", memoryLimit{auto: true}, "", capOf(math.MaxInt64, nil), 0, "", nil},
		{"auto with an unreadable cap", memoryLimit{auto: true}, "", capOf(0, unreadable), 0, "", unreadable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOMEMLIMIT", tc.gomem)
			got, from, err := tc.limit.resolve(tc.cap)
			if got != tc.want || from != tc.wantFrom || !errors.Is(err, tc.wantError) {
				t.Errorf("resolve = %d, %q, %v; want %d, %q, %v", got, from, err, tc.want, tc.wantFrom, tc.wantError)
			}
		})
	}
}

// TestMemoryLimitUnderCgroupCap runs the binary in a memory cgroup of its
// own, capped at 256 MiB, and reads the soft limit it set from /metrics:
// 80% of the cap with the default --memory-limit auto, none with 0. It
// needs a writable cgroup hierarchy (v1 memory controller or v2 with
// memory delegated), as root in a VM or container has.
func TestMemoryLimitUnderCgroupCap(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	const capBytes = 256 << 20
	cg := memoryCgroup(t, capBytes)
	bin := buildBinary(t)
	share := autoMemoryShare
	// The script joins the cgroup, then becomes the node.
	wrapper := filepath.Join(t.TempDir(), "capped")
	script := fmt.Sprintf("#!/bin/sh\nunset GOMEMLIMIT\necho $$ > '%s' && exec '%s' \"$@\"\n", cg, bin)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		flag string
		want float64
	}{
		{"--memory-limit=auto", float64(int64(capBytes * share))},
		{"--memory-limit=0", math.MaxInt64},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			p := startProc(t, wrapper, t.TempDir(), freePort(t), freePort(t), tc.flag, "--partitions=1")
			if got := scrapeMetric(t, "http://"+p.http+"/metrics", "go_gc_gomemlimit_bytes"); got != tc.want {
				t.Errorf("go_gc_gomemlimit_bytes = %v, want %v\n%s", got, tc.want, p.log)
			}
			if auto := strings.Contains(p.log.String(), "memory cap of 268435456 bytes"); auto != (tc.want < math.MaxInt64) {
				t.Errorf("the log names the cgroup's cap: %v, want %v\n%s", auto, !auto, p.log)
			}
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := p.cmd.Wait(); err != nil {
				t.Errorf("exit after SIGTERM: %v\n%s", err, p.log)
			}
		})
	}
}

// memoryCgroup creates a memory cgroup capped at capBytes below the test
// process's own and returns its cgroup.procs file, or skips the test when
// the hierarchy is not writable here. The cgroup is removed at the end.
func memoryCgroup(t *testing.T, capBytes int64) (procs string) {
	t.Helper()
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skipf("no cgroups: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(own)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var root, limitFile string
		switch {
		case strings.Contains(","+parts[1]+",", ",memory,"):
			root, limitFile = "/sys/fs/cgroup/memory", "memory.limit_in_bytes"
		case parts[0] == "0" && parts[1] == "":
			root, limitFile = "/sys/fs/cgroup", "memory.max"
			if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err != nil {
				root = "/sys/fs/cgroup/unified"
			}
		default:
			continue
		}
		dir := filepath.Join(root, parts[2], fmt.Sprintf("edgetables-test-%d", os.Getpid()))
		if err := os.Mkdir(dir, 0o755); err != nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, limitFile), fmt.Appendf(nil, "%d", capBytes), 0o644); err != nil {
			_ = os.Remove(dir)
			continue
		}
		procs := filepath.Join(dir, "cgroup.procs")
		if err := exec.Command("sh", "-c", `echo $$ > "$0"`, procs).Run(); err != nil {
			_ = os.Remove(dir)
			continue // a process cannot join it (cgroup v2's delegation rules)
		}
		t.Cleanup(func() {
			// The node has exited; its cgroup is empty and can go.
			for i := 0; i < 50 && os.Remove(dir) != nil; i++ {
				time.Sleep(100 * time.Millisecond)
			}
		})
		return procs
	}
	t.Skip("no writable memory cgroup hierarchy (needs root and cgroup v1's memory controller or v2 with memory delegated)")
	return ""
}
