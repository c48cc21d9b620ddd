package edge

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSecondNodeOnDataDirRefused: a second node on the data directory of a
// running one, with its own embedded server or as a client of external
// NATS (which still keeps its stores there), fails at once with an error
// naming the directory and the holder's pid, and starts nothing; the first
// node keeps working. A client of external NATS with a directory of its own
// runs.
func TestSecondNodeOnDataDirRefused(t *testing.T) {
	dir := t.TempDir()
	n, _ := startNode(t, dir, "name=c,source=e.*,key=subject:2,agg=count")
	publish(t, n, "e.a", "{}")
	waitValue(t, n, "c", "a", "1")

	for i, c := range []struct {
		name string
		edit func(cfg *Config)
	}{
		{"embedded NATS", func(*Config) {}},
		{"external NATS", func(cfg *Config) { cfg.NATSURLs, cfg.App = []string{n.ClientURL()}, "other" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(t, dir, "name=c,source=e.*,key=subject:2,agg=count")
			cfg.Name = "n2"
			c.edit(&cfg)
			second, err := NewNode(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			err = second.Run(ctx)
			if !errors.Is(err, ErrDataDirLocked) {
				t.Fatalf("second node's Run: %v, want ErrDataDirLocked", err)
			}
			for _, want := range []string{dir, fmt.Sprintf("pid %d", os.Getpid())} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("the refusal took %v", took)
			}
			select {
			case <-second.Started():
				t.Error("the second node started")
			default:
			}
			t.Logf("second node: %v", err)
			publish(t, n, "e.a", "{}")
			waitValue(t, n, "c", "a", fmt.Sprint(i+2))
		})
	}

	t.Run("external NATS, own directory", func(t *testing.T) {
		cfg := testConfig(t, t.TempDir(), "name=x,source=x.*,key=subject:2,agg=count")
		cfg.Name, cfg.App, cfg.NATSURLs = "n3", "ext", []string{n.ClientURL()}
		ext, _ := runNode(t, cfg)
		publish(t, n, "x.b", "{}")
		waitValue(t, ext, "x", "b", "1")
	})
}

// TestDataDirReleasedOnStop: a node that returned from Run released the
// data directory; the next node on it starts (a killed process releases it
// too: see TestSecondProcessRefused in cmd/edgetables).
func TestDataDirReleasedOnStop(t *testing.T) {
	dir := t.TempDir()
	_, stop := startNode(t, dir, "name=c,source=e.*,key=subject:2,agg=count")
	stop()
	if b, err := os.ReadFile(filepath.Join(dir, lockFileName)); err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(os.Getpid()) {
		t.Fatalf("lock file holds %q, %v; want this process's pid", b, err)
	}
	n, _ := startNode(t, dir, "name=c,source=e.*,key=subject:2,agg=count")
	publish(t, n, "e.a", "{}")
	waitValue(t, n, "c", "a", "1")
}

// TestStopWhileStarting: a node stopped at any point of its start-up (a
// SIGTERM from a service manager while the app's metadata is read, say)
// returns nil, as a stop after start does: it exited 1 with "node failed:
// ... context canceled".
func TestStopWhileStarting(t *testing.T) {
	for _, after := range []time.Duration{0, 20 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, 400 * time.Millisecond, 700 * time.Millisecond} {
		n, err := NewNode(testConfig(t, t.TempDir(), "name=c,source=e.*,key=subject:2,agg=count"))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- n.Run(ctx) }()
		time.Sleep(after)
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("stopped %s after Run: %v; want nil", after, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("stopped %s after Run: Run did not return", after)
		}
	}
}
