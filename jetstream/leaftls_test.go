package jetstream_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
)

// TestLeafLinkTLSAndPassword: a site reaches a hub whose leaf port needs
// TLS with client certificates and a password; a site without the
// password, or without a certificate of the hub's CA, gets no link.
func TestLeafLinkTLSAndPassword(t *testing.T) {
	pki := jstest.NewPKI(t, "hub", "site")
	other := jstest.NewPKI(t, "site")
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: pki.Cert("hub"), KeyFile: pki.Key("hub"), CaFile: pki.CA, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	leafPort := jstest.FreePort(t)
	hub, err := server.NewServer(&server.Options{ServerName: "hub", Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: leafPort, NoAdvertise: true, TLSConfig: tc, TLSTimeout: 2,
			Username: "site", Password: "leaf-s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	hub.Start()
	t.Cleanup(hub.Shutdown)
	if !hub.ReadyForConnections(10 * time.Second) {
		t.Fatal("hub not ready")
	}
	remote := fmt.Sprintf("tls://127.0.0.1:%d", leafPort)
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(good, []byte("leaf-s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		leaf jetstream.LeafConfig
		link bool
	}{
		{"certificate and password", jetstream.LeafConfig{CAFile: pki.CA, CertFile: pki.Cert("site"), KeyFile: pki.Key("site"), User: "site", PasswordFile: good}, true},
		{"wrong password", jetstream.LeafConfig{CAFile: pki.CA, CertFile: pki.Cert("site"), KeyFile: pki.Key("site"), User: "site", PasswordFile: bad}, false},
		{"certificate of another CA", jetstream.LeafConfig{CAFile: pki.CA, CertFile: other.Cert("site"), KeyFile: other.Key("site"), User: "site", PasswordFile: good}, false},
		{"no certificate", jetstream.LeafConfig{CAFile: pki.CA, User: "site", PasswordFile: good}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaf := tc.leaf
			leaf.Remotes, leaf.Domain = []string{remote}, "s1"
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			srv, err := jetstream.StartServer(ctx, jetstream.ServerConfig{Name: "s1", StoreDir: t.TempDir(), Listen: "127.0.0.1:0", Leaf: leaf, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Shutdown()
			wait := 10 * time.Second
			if !tc.link {
				wait = 2 * time.Second // the site retries every second
			}
			deadline := time.Now().Add(wait)
			for srv.LeafConnections() == 0 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if got := srv.LeafConnections() > 0; got != tc.link {
				t.Fatalf("leaf link up: %v; want %v", got, tc.link)
			}
		})
	}
}
