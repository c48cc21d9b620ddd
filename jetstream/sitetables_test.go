package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
	"github.com/edgetables/edgetables/manager/port"
)

// TestSiteTablesGet: a site (an embedded server, leaf node of a hub in
// domain s1) and a hub with JetStream in domain hub. The hub stream
// sources the site's changelog partitions and Get answers each key's
// latest record: a value, a later value, a tombstone (no record), a key
// never written, an unknown site, and a site not synced yet.
func TestSiteTablesGet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leafPort := jstest.FreePort(t)
	hub, err := server.NewServer(&server.Options{ServerName: "hub", Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: t.TempDir(), JetStreamDomain: "hub", JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 1 << 30,
		LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: leafPort, NoAdvertise: true}})
	if err != nil {
		t.Fatal(err)
	}
	hub.Start()
	defer hub.Shutdown()
	if !hub.ReadyForConnections(10 * time.Second) {
		t.Fatal("hub not ready")
	}
	srv, err := jetstream.StartServer(ctx, jetstream.ServerConfig{Name: "s1", Listen: "127.0.0.1:0", StoreDir: t.TempDir(),
		Leaf:   jetstream.LeafConfig{Remotes: []string{fmt.Sprintf("nats-leaf://127.0.0.1:%d", leafPort)}, Domain: "s1"},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := srv.Connect(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	hnc, err := nats.Connect(hub.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer hnc.Close()
	hjs, _ := natsjs.New(hnc)
	cl, err := jetstream.NewChangelog(ctx, js, jetstream.ChangelogConfig{App: "app", Partitions: 2, Atomic: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	last := []uint64{0, 0}
	appendRecs := func(p int, recs ...port.Record) {
		t.Helper()
		seq, err := cl.Append(ctx, p, last[p], recs, port.CommitMarker{})
		if err != nil {
			t.Fatal(err)
		}
		last[p] = seq
	}
	appendRecs(0, port.Record{Table: "t", Key: []byte("k1"), Value: []byte("1")},
		port.Record{Table: "t", Key: []byte("gone"), Value: []byte("7")})
	appendRecs(1, port.Record{Table: "t", Key: []byte("k2"), Value: []byte{0xff, 0}})

	st, err := jetstream.NewSiteTables(hjs, jetstream.SiteTablesConfig{App: "app", Sites: []jetstream.SiteSource{{Site: "s1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "s1", "t", []byte("k1")); !errors.Is(err, jetstream.ErrSiteNotSynced) {
		t.Fatalf("before Sync: %v, want ErrSiteNotSynced", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		st.Sync(ctx) // fails until the leaf link is up
		s := st.Status(ctx)
		if len(s) == 1 && len(s[0].Sources) == 2 && s[0].Error == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status after Sync: %+v, want 2 sources", s)
		}
	}
	wait := func(key, want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			rec, err := st.Get(ctx, "s1", "t", []byte(key))
			if err == nil && string(rec.Value) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("Get %s: %q, %v; want %q (status %+v)", key, rec.Value, err, want, st.Status(ctx))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait("k1", "1")
	wait("k2", "\xff\x00")
	wait("gone", "7")
	appendRecs(0, port.Record{Table: "t", Key: []byte("k1"), Value: []byte("2")},
		port.Record{Table: "t", Key: []byte("gone"), Delete: true})
	wait("k1", "2")
	if rec, err := st.Get(ctx, "s1", "t", []byte("k1")); err != nil || rec.Partition != 0 || rec.Table != "t" || string(rec.Key) != "k1" {
		t.Fatalf("Get k1: %+v, %v", rec, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := st.Get(ctx, "s1", "t", []byte("gone"))
		if errors.Is(err, jetstream.ErrNoRecord) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Get of a deleted key: %v, want ErrNoRecord", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range []struct {
		site, table, key string
		want             error
	}{
		{"s1", "t", "never", jetstream.ErrNoRecord},
		{"s1", "other", "k1", jetstream.ErrNoRecord},
		{"s9", "t", "k1", jetstream.ErrUnknownSite},
		{"s1", "a.b", "k1", jetstream.ErrBadName},
		{"s1", "t*", "k1", jetstream.ErrBadName},
	} {
		if _, err := st.Get(ctx, c.site, c.table, []byte(c.key)); !errors.Is(err, c.want) {
			t.Errorf("Get %s %s %s: %v, want %v", c.site, c.table, c.key, err, c.want)
		}
	}
}
