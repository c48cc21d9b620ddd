package edge

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager/port"
)

// TestDuplicateNameRefused: a second live node under a name another live
// node holds (two devices cloned from one image) stops with an error
// wrapping port.ErrDuplicateNode, without disturbing the first; a node
// restarted under its own name after a crash is not refused.
func TestDuplicateNameRefused(t *testing.T) {
	host, _ := startNode(t, t.TempDir(), "name=c,source=e.*,key=subject:2,agg=count")
	spec := "name=x,source=x.*,key=subject:2,agg=count"
	dupConfig := func() Config {
		cfg := testConfig(t, t.TempDir(), spec)
		cfg.Name, cfg.App, cfg.NATSURLs, cfg.SessionTimeout = "dup", "ext", []string{host.ClientURL()}, 2*time.Second
		return cfg
	}
	first, _ := runNode(t, dupConfig())
	waitFor(t, 20*time.Second, "the first node ready", func() bool { return first.Manager().Ready() })
	publish(t, host, "x.a", "{}")
	waitValue(t, first, "x", "a", "1")

	second, err := NewNode(dupConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = second.Run(ctx)
	if !errors.Is(err, port.ErrDuplicateNode) {
		t.Fatalf("second node's Run: %v; want an error wrapping ErrDuplicateNode", err)
	}
	t.Logf("second node: %v", err)
	time.Sleep(3 * time.Second) // a few of the first node's heartbeats
	publish(t, host, "x.a", "{}")
	waitValue(t, first, "x", "a", "2")
	if !first.Manager().Ready() {
		t.Errorf("the first node is not ready: %v", first.Manager().Status().NotReady)
	}
}
