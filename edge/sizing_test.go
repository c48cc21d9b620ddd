package edge

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// dirBytes returns the bytes (their sizes, and the disk blocks they take
// where the system says) of the regular files under dir whose path
// contains match.
func dirBytes(t *testing.T, dir, match string) (size, disk int64) {
	t.Helper()
	_ = filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() && strings.Contains(path, match) {
			if info, err := e.Info(); err == nil {
				size += info.Size()
				if st, ok := info.Sys().(*syscall.Stat_t); ok {
					disk += int64(st.Blocks) * 512
				} else {
					disk += info.Size()
				}
			}
		}
		return nil
	})
	return size, disk
}

// TestSizing measures how large the stores and the changelogs get per key
// (docs/sizing.md). It runs only with EDGETABLES_SIZING set to the number
// of keys (e.g. 100000): one event per key, one table per run (count, and
// latest with 100-byte JSON values), 8 partitions, and prints the sizes.
func TestSizing(t *testing.T) {
	keys, _ := strconv.Atoi(os.Getenv("EDGETABLES_SIZING"))
	if keys <= 0 {
		t.Skip("set EDGETABLES_SIZING=<keys> to measure")
	}
	// EDGETABLES_SIZING_UPDATES events per key (default 1): the
	// changelog keeps one record per key, the files may keep more.
	updates, _ := strconv.Atoi(os.Getenv("EDGETABLES_SIZING_UPDATES"))
	updates = max(updates, 1)
	value := fmt.Sprintf(`{"v":%q}`, strings.Repeat("x", 100-8)) // 100 bytes
	for _, c := range []struct{ name, spec string }{
		{"count", "name=count,source=ev.*,key=subject:2,agg=count"},
		{"latest", "name=latest,source=ev.*,key=subject:2,agg=latest"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := testConfig(t, dir, c.spec)
			cfg.Partitions = 8
			n, stop := runNode(t, cfg)
			nc, err := nats.Connect(n.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, _ := natsjs.New(nc, natsjs.WithPublishAsyncMaxPending(4096), natsjs.WithPublishAsyncTimeout(time.Minute))
			start := time.Now()
			for i := 0; i < keys*updates; i++ {
				if _, err := js.PublishAsync(fmt.Sprintf("ev.key-%07d", i%keys), []byte(value), natsjs.WithStallWait(time.Minute)); err != nil {
					t.Fatal(err)
				}
			}
			<-js.PublishAsyncComplete()
			// Committed, not only processed: the changelog holds every
			// key's record once every partition's commit covers the last
			// event (its source sequence, in a fresh source stream).
			waitFor(t, 5*time.Minute, "every event committed", func() bool {
				st := n.Manager().Status()
				if st.EventsProcessed != uint64(keys*updates) || len(st.Partitions) != cfg.Partitions {
					return false
				}
				for _, p := range st.Partitions {
					if p.SourceSeq < uint64(keys*updates) {
						return false
					}
				}
				return true
			})
			took := time.Since(start)
			// EDGETABLES_SIZING_SETTLE (a duration) waits before measuring:
			// the file store compacts blocks at its sync (every 2 minutes).
			if d, err := time.ParseDuration(os.Getenv("EDGETABLES_SIZING_SETTLE")); err == nil {
				time.Sleep(d)
			}
			ctx := context.Background()
			var changelog, msgs uint64
			for p := 0; p < cfg.Partitions; p++ {
				st, err := js.Stream(ctx, fmt.Sprintf("edgetables_changelog_%d", p))
				if err != nil {
					t.Fatal(err)
				}
				changelog += st.CachedInfo().State.Bytes
				msgs += st.CachedInfo().State.Msgs
			}
			src, err := js.Stream(ctx, "edgetables_source")
			if err != nil {
				t.Fatal(err)
			}
			nc.Close()
			stop()
			stores, storesDisk := dirBytes(t, filepath.Join(dir, "tables"), ".db")
			clFiles, clDisk := dirBytes(t, filepath.Join(dir, "jetstream"), "_changelog_")
			all, allDisk := dirBytes(t, filepath.Join(dir, "jetstream"), "")
			perKey := func(n int64) float64 { return float64(n) / float64(keys) }
			byKind := map[string]int64{}
			_ = filepath.WalkDir(filepath.Join(dir, "jetstream"), func(path string, e fs.DirEntry, err error) error {
				if err == nil && e.Type().IsRegular() && strings.Contains(path, "_changelog_") {
					if info, err := e.Info(); err == nil {
						byKind[filepath.Ext(path)] += info.Size()
					}
				}
				return nil
			})
			t.Logf("%s: changelog files by kind: %v", c.name, byKind)
			t.Logf("%s: %d keys, %d events each, in %s; stores %d B (%.0f B/key), on disk %d B (%.0f B/key); changelog %d msgs, %d B stored (%.0f B/key), files %d B (%.0f B/key), on disk %d B (%.0f B/key); all of jetstream/ %d B, on disk %d B; source left %d msgs %d B",
				c.name, keys, updates, took.Round(time.Millisecond), stores, perKey(stores), storesDisk, perKey(storesDisk),
				msgs, changelog, perKey(int64(changelog)), clFiles, perKey(clFiles), clDisk, perKey(clDisk),
				all, allDisk, src.CachedInfo().State.Msgs, src.CachedInfo().State.Bytes)
		})
	}
}
