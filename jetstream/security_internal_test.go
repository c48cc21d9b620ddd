package jetstream

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/bcrypt"
)

// The node's identity works in process only: a network client holding its
// key still cannot use it.
func TestNodeIdentityInProcessOnly(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("x"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := StartServer(ctx, ServerConfig{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), App: "app",
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Security: Security{Users: []User{{Name: "d", PasswordBcrypt: string(h), Role: RoleDevice}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	if srv.id == nil {
		t.Fatal("no node identity with users")
	}
	nc, err := srv.ConnectNode("node")
	if err != nil {
		t.Fatalf("in process: %v", err)
	}
	nc.Close()
	nc, err = nats.Connect(srv.ClientURL(), nats.Nkey(srv.id.pub, srv.id.kp.Sign), nats.NoReconnect())
	if err == nil {
		nc.Close()
		t.Fatal("the node's identity was accepted over TCP")
	}
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("error %v, want an authorization violation", err)
	}
}

// TestIsRouteAuthFailure: the two lines nats-server v2.15.2 logs for a
// route refused for its credentials, and none of the others.
func TestIsRouteAuthFailure(t *testing.T) {
	for msg, want := range map[string]bool{
		"127.0.0.1:60066 - rid:9 - authentication error":                    true,
		"127.0.0.1:16222 - rid:9 - Route Error 'Authorization Violation'":   true,
		"127.0.0.1:60066 - cid:9 - authentication error":                    false, // a client
		"127.0.0.1:60066 - rid:9 - Router connection closed: Read Error":    false,
		"127.0.0.1:16222 - rid:9 - Route Error 'Stale Connection'":          false,
		"127.0.0.1:4222 - lid:3 - Leafnode Error 'Authorization Violation'": false,
	} {
		if got := isRouteAuthFailure(msg); got != want {
			t.Errorf("isRouteAuthFailure(%q) = %v, want %v", msg, got, want)
		}
	}
}
