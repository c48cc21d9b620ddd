package edge

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
)

// TestChangelogLostOnDisk: a partition's changelog stream gone from the
// server's storage while the node was stopped (a node that used to rebuild
// its store from the new, empty log: its counts fell to nothing). The node
// stops the partition instead: /readyz answers 503 naming it and the way
// out, the other partitions are served. Restarted with --changelog-behind
// reseed, it writes its store back and counts on exactly.
func TestChangelogLostOnDisk(t *testing.T) {
	const spec = "name=c,source=e.*,key=subject:2,agg=count"
	dir := filepath.Join(t.TempDir(), "data")
	n, stop := startNode(t, dir, spec)
	for i := 0; i < 50; i++ {
		publish(t, n, fmt.Sprintf("e.k%d", i%5), "{}")
	}
	for i := 0; i < 5; i++ {
		waitValue(t, n, "c", fmt.Sprintf("k%d", i), "10")
	}
	stop()
	p := manager.PartitionOf([]byte("k4"), 4)
	removeStreamDir(t, dir, jetstream.ChangelogStream("edgetables", p))

	n2, err := NewNode(testConfig(t, dir, spec))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n2.Run(ctx) }()
	<-n2.Started()
	want := fmt.Sprintf("partition %d: changelog behind its store", p)
	var last any
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body, _ := getJSON(t, n2.HTTPAddr(), "/readyz")
		if code == 503 && strings.Contains(fmt.Sprint(body["reasons"]), want) &&
			strings.Contains(fmt.Sprint(body["reasons"]), "--changelog-behind reseed") {
			break
		}
		last = body
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %d %v, want 503 naming %q", code, last, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _, _ := getJSON(t, n2.HTTPAddr(), "/v1/tables/c/keys/k4"); code != 503 {
		t.Errorf("k4 of the stopped partition: status %d, want 503", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("node Run: %v", err)
	}

	cfg := testConfig(t, dir, spec)
	cfg.ChangelogBehind = manager.ChangelogBehindReseed
	n3, _ := runNode(t, cfg)
	for i := 0; i < 5; i++ {
		waitValue(t, n3, "c", fmt.Sprintf("k%d", i), "10")
	}
	publish(t, n3, "e.k4", "{}")
	waitValue(t, n3, "c", "k4", "11")
}

// removeStreamDir removes stream's files from the JetStream storage under
// dataDir (the node must be stopped).
func removeStreamDir(t *testing.T, dataDir, stream string) {
	t.Helper()
	var found string
	err := filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == stream {
			found = path
			return filepath.SkipAll
		}
		return err
	})
	if err != nil || found == "" {
		t.Fatalf("stream %s not found under %s: %v", stream, dataDir, err)
	}
	if err := os.RemoveAll(found); err != nil {
		t.Fatal(err)
	}
}
