package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// errInsufficientResources is JetStream's error code for a publish while
// the server's storage is over its limit.
const errInsufficientResources = 10023

// TestStorageFullRecovers: a node whose JetStream storage (MaxStore 8 MiB)
// fills up (another stream of the same server takes the space) refuses
// publishes with an error, reports it in /readyz (503 with the reason) and
// in one log line, keeps serving reads; once the space is freed it
// becomes ready again by itself, the events accepted before and after are
// all counted, exactly.
func TestStorageFullRecovers(t *testing.T) {
	logs := &syncBuffer{}
	cfg := testConfig(t, t.TempDir(), "name=count,source=ev.*,key=subject:2,agg=count")
	cfg.MaxStore = MinMaxStore
	cfg.CommitInterval = 20 * time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	n, _ := runNode(t, cfg)
	if cfg := n.cfg; cfg.SourceMaxBytes != MinMaxStore/4 || cfg.deadLetterBytes != MinMaxStore/8 {
		t.Fatalf("source %d, dead letters %d bytes; want a quarter and an eighth of %d", cfg.SourceMaxBytes, cfg.deadLetterBytes, MinMaxStore)
	}
	nc, err := nats.Connect(n.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	acked := map[string]int{}
	send := func(key string) error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js.Publish(pctx, "ev."+key, []byte("{}"))
		if err == nil {
			acked[key]++
		}
		return err
	}
	for i := 0; i < 200; i++ {
		if err := send(fmt.Sprint("k", i%4)); err != nil {
			t.Fatal(err)
		}
	}
	waitValue(t, n, "count", "k0", "50")
	for i := 0; i < 200; i++ { // still to be committed when the storage fills
		if err := send(fmt.Sprint("k", i%4)); err != nil {
			t.Fatal(err)
		}
	}
	// Fill the storage at once, while commits may still be due.
	if _, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: "ballast", Subjects: []string{"ballast"}, Storage: natsjs.FileStorage}); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 256<<10)
	for i := 0; ; i++ {
		_, err := js.Publish(ctx, "ballast", chunk)
		var apiErr *natsjs.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == errInsufficientResources {
			break
		}
		if err != nil || i > 64 {
			t.Fatalf("ballast %d: %v, want error %d after at most 8 MiB", i, err, errInsufficientResources)
		}
	}
	// Publishers get an error, not a silent drop. (A trim of events
	// committed just before the fill may free a few KiB: the first
	// publishes may still fit, and are counted.)
	for i := 0; ; i++ {
		err := send("k1")
		if err == nil && i < 1000 {
			continue
		}
		var apiErr *natsjs.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode != errInsufficientResources {
			t.Fatalf("publish %d to the source of a full node: %v, want error %d", i, err, errInsufficientResources)
		}
		break
	}
	waitFor(t, 10*time.Second, "readyz 503 with the storage reason", func() bool {
		code, body, _ := getJSON(t, n.HTTPAddr(), "/readyz")
		return code == 503 && strings.Contains(fmt.Sprint(body["reasons"]), "JetStream storage full")
	})
	fams := scrape(t, n)
	if value(t, fams, "edgetables_storage_writes_failing") != 1 || value(t, fams, "edgetables_ready") != 0 {
		t.Error("metrics of a full node: want edgetables_storage_writes_failing 1 and edgetables_ready 0")
	}
	// Reads are served: the values committed before the storage filled.
	if code, body, _ := getJSON(t, n.HTTPAddr(), "/v1/tables/count/keys/k0"); code != 200 || body["value"].(float64) < 50 || body["value"].(float64) > 100 {
		t.Fatalf("read of a full node: %d %v, want a value from 50 to 100", code, body)
	}

	// Free the space: the node becomes ready by itself.
	if err := js.DeleteStream(ctx, "ballast"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "readyz 200 after the space is freed", func() bool {
		code, _, _ := getJSON(t, n.HTTPAddr(), "/readyz")
		return code == 200
	})
	for i := 0; i < 100; i++ {
		if err := send(fmt.Sprint("k", i%4)); err != nil {
			t.Fatalf("publish after the space was freed: %v", err)
		}
	}
	if value(t, scrape(t, n), "edgetables_storage_writes_failing") != 0 {
		t.Error("edgetables_storage_writes_failing is not 0 after the space was freed")
	}
	for key, want := range acked {
		waitValue(t, n, "count", key, fmt.Sprint(want))
	}
	if got := strings.Count(logs.String(), "JetStream storage: writes fail"); got != 1 {
		t.Errorf("%d error lines about the full storage, want 1", got)
	}
	if !strings.Contains(logs.String(), "JetStream storage: writes work again") {
		t.Error("no log line that writes work again")
	}
}

// TestDiskFullNeedsRestart runs a node on a 24 MiB tmpfs (root only;
// skipped where mounting is not permitted) and fills the filesystem: the
// source stream gets a write error ("no space left on device") that
// nats-server keeps until it restarts. The node says so in /readyz (503,
// the reason names the restart) and keeps serving reads; after the space
// is freed the node restarts by itself, in process, and every accepted
// event is counted.
func TestDiskFullNeedsRestart(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	config := func() Config {
		cfg := testConfig(t, dir, "name=count,source=ev.*,key=subject:2,agg=count")
		cfg.MaxStore = 64 << 20 // more than the disk: the disk fills first
		cfg.SourceMaxBytes = 2 << 20
		cfg.CommitInterval = 20 * time.Millisecond
		return cfg
	}
	n, stop := runNode(t, config())
	nc, err := nats.Connect(n.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	js, _ := natsjs.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	acked := 0
	send := func() error {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := js.Publish(pctx, "ev.k", []byte("{}"))
		if err == nil {
			acked++
		}
		return err
	}
	for i := 0; i < 100; i++ {
		if err := send(); err != nil {
			t.Fatal(err)
		}
	}
	waitValue(t, n, "count", "k", "100")
	// Fill the filesystem with a file outside JetStream.
	ballast := filepath.Join(dir, "ballast")
	f, err := os.Create(ballast)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()
	// Publishes fail (the server stores nothing and does not answer).
	failed := false
	for i := 0; i < 200 && !failed; i++ {
		failed = send() != nil
	}
	if !failed {
		t.Fatal("publishes to a full disk all succeeded")
	}
	waitFor(t, 10*time.Second, "readyz 503 naming the write error", func() bool {
		code, body, _ := getJSON(t, n.HTTPAddr(), "/readyz")
		r := fmt.Sprint(body["reasons"])
		return code == 503 && strings.Contains(r, "write error") && strings.Contains(r, "restarts by itself")
	})
	if code, _, _ := getJSON(t, n.HTTPAddr(), "/v1/tables/count/keys/k"); code != 200 {
		t.Fatalf("read of a node with a full disk: %d", code)
	}
	nc.Close()
	// Space is freed: the node restarts its server by itself, in process.
	m := n.Manager()
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the node started again and ready", func() bool {
		return n.Manager() != m && n.Manager() != nil && n.Manager().Ready()
	})
	nc, err = nats.Connect(n.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ = natsjs.New(nc)
	for i := 0; i < 10; i++ {
		if err := send(); err != nil {
			t.Fatalf("publish after the restart: %v", err)
		}
	}
	waitValue(t, n, "count", "k", fmt.Sprint(acked))
	if code, _, _ := getJSON(t, n.HTTPAddr(), "/readyz"); code != 200 {
		t.Errorf("readyz %d after the restart", code)
	}
	stop()
}

// TestResolveStorage: the default MaxStore is half of the data directory's
// free disk (with what JetStream holds there), the source stream a quarter
// of it up to 1 GiB, the dead letters an eighth up to 256 MiB; given
// limits are checked.
func TestResolveStorage(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "jetstream"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "jetstream", "data"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	free, _, err := diskSpace(dir)
	if err != nil {
		t.Skip(err)
	}
	cfg := testConfig(t, filepath.Join(dir, "not", "yet"), "name=count,source=ev.*,key=subject:2,agg=count")
	if err := cfg.resolveStorage(); err != nil {
		t.Fatal(err)
	}
	// The free space moves a little as other processes write.
	if want := int64(free) / 2; cfg.MaxStore < want-(64<<20) || cfg.MaxStore > want+(64<<20) {
		t.Errorf("MaxStore %d, want about %d", cfg.MaxStore, want)
	}
	cfg = testConfig(t, dir, "name=count,source=ev.*,key=subject:2,agg=count")
	if err := cfg.resolveStorage(); err != nil {
		t.Fatal(err)
	}
	if want := int64(free+1<<20) / 2; cfg.MaxStore < want-(64<<20) || cfg.MaxStore > want+(64<<20) {
		t.Errorf("MaxStore %d with 1 MiB of JetStream data, want about %d", cfg.MaxStore, want)
	}
	for _, c := range []struct {
		maxStore, source, wantSource, wantDLQ int64
		err                                   string
	}{
		{maxStore: 512 << 20, wantSource: 128 << 20, wantDLQ: 64 << 20},
		{maxStore: 64 << 30, wantSource: 1 << 30, wantDLQ: 256 << 20},
		{maxStore: 512 << 20, source: 256 << 20, wantSource: 256 << 20, wantDLQ: 64 << 20},
		{maxStore: 512 << 20, source: 257 << 20, err: "--source-max-bytes"},
		{maxStore: 4 << 20, err: "--max-store 4MiB"},
		{maxStore: -1, err: "--max-store"},
	} {
		cfg := testConfig(t, dir, "name=count,source=ev.*,key=subject:2,agg=count")
		cfg.MaxStore, cfg.SourceMaxBytes = c.maxStore, c.source
		err := cfg.resolveStorage()
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("max store %d, source %d: %v, want an error naming %s", c.maxStore, c.source, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("max store %d, source %d: %v", c.maxStore, c.source, err)
		case c.err == "" && (cfg.SourceMaxBytes != c.wantSource || cfg.deadLetterBytes != c.wantDLQ):
			t.Errorf("max store %d, source %d: source %d, dead letters %d; want %d, %d",
				c.maxStore, c.source, cfg.SourceMaxBytes, cfg.deadLetterBytes, c.wantSource, c.wantDLQ)
		}
	}
}
