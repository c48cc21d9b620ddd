package edge

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/edge/builtin"
	"github.com/edgetables/edgetables/jetstream"
)

// copyDir copies the regular files of src (one level) into dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	es, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dst, 0o750); err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDeletedGlobalKeyExpires: with --tombstone-ttl 1s, a deleted global
// key's tombstone leaves the global stream once the TTL has passed; a
// store replayed from scratch afterwards has the key absent, and so has a
// store saved before the delete (which never applied the tombstone): it
// is rebuilt rather than resurrecting the key.
func TestDeletedGlobalKeyExpires(t *testing.T) {
	dir := t.TempDir()
	start := func() (*Node, func()) {
		cfg := testConfig(t, dir, "name=count,source=ev.*,key=subject:2,agg=count")
		g, err := builtin.GlobalJSONTable("sites")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Tables = append(cfg.Tables, g)
		cfg.TombstoneTTL = time.Second
		return runNode(t, cfg)
	}
	n, stop := start()
	for _, k := range []string{"a", "b"} {
		if code, body, _ := request(t, "PUT", n.HTTPAddr(), "/v1/tables/sites/keys/"+k, `{"v":1}`, nil); code != 200 {
			t.Fatalf("PUT %s: %d %v", k, code, body)
		}
	}
	waitValue(t, n, "sites", "b", `{"v":1}`)
	stop()
	stale := filepath.Join(t.TempDir(), "global")
	copyDir(t, filepath.Join(dir, "global"), stale) // before the delete

	n, stop = start()
	if code, body, _ := request(t, "DELETE", n.HTTPAddr(), "/v1/tables/sites/keys/a", "", nil); code != 200 {
		t.Fatalf("DELETE a: %d %v", code, body)
	}
	nc, err := nats.Connect(n.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	js, _ := natsjs.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, jetstream.GlobalStream("edgetables"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the tombstone of a to expire", func() bool {
		_, err := st.GetLastMsgForSubject(ctx, jetstream.GlobalSubject("edgetables", "sites", []byte("a")))
		return errors.Is(err, natsjs.ErrMsgNotFound)
	})
	nc.Close()
	time.Sleep(time.Second) // the rest of the log gets older than the TTL too
	stop()

	for _, c := range []struct {
		name    string
		prepare func()
	}{
		{"full replay", func() { os.RemoveAll(filepath.Join(dir, "global")) }},
		{"store from before the delete", func() {
			os.RemoveAll(filepath.Join(dir, "global"))
			copyDir(t, stale, filepath.Join(dir, "global"))
		}},
	} {
		c.prepare()
		n, stop = start()
		if code, body, _ := getJSON(t, n.HTTPAddr(), "/v1/tables/sites/keys/a"); code != 404 {
			t.Errorf("%s: deleted key a: %d %v, want 404", c.name, code, body)
		}
		waitValue(t, n, "sites", "b", `{"v":1}`)
		stop()
	}
}
