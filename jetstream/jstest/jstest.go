// Package jstest starts embedded JetStream servers for tests of other
// packages.
package jstest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
)

// ServerName is the name of every test server; it stays the same across
// restarts on one store directory.
const ServerName = "jstest"

// MaxPending is the publish-async window of the JetStream contexts returned
// (natsjs.WithPublishAsyncMaxPending), for tests that publish source
// events asynchronously.
const MaxPending = 16 * 1024

// Start starts an embedded server on 127.0.0.1 at a random port with a
// store in t.TempDir(), and returns it with a connection and a JetStream
// context. Cleanup closes the connection and shuts the server down. The
// server log is discarded unless EDGETABLES_TEST_LOG is set (then it goes to
// stderr).
func Start(t testing.TB) (*jetstream.Server, *nats.Conn, natsjs.JetStream) {
	t.Helper()
	return StartIn(t, t.TempDir())
}

// StartIn is Start with the store in dir, so a test can shut a server down
// and start another on the same data.
func StartIn(t testing.TB, dir string) (*jetstream.Server, *nats.Conn, natsjs.JetStream) {
	t.Helper()
	return StartSync(t, dir, false)
}

// StartSync is StartIn with the server's fsync policy: syncAlways makes it
// fsync every write (for benchmarks of the power-loss-safe setting).
func StartSync(t testing.TB, dir string, syncAlways bool) (*jetstream.Server, *nats.Conn, natsjs.JetStream) {
	t.Helper()
	var out io.Writer = io.Discard
	if os.Getenv("EDGETABLES_TEST_LOG") != "" {
		out = os.Stderr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := jetstream.StartServer(ctx, jetstream.ServerConfig{
		Name:       ServerName,
		Listen:     "127.0.0.1:0",
		StoreDir:   dir,
		SyncAlways: syncAlways,
		Logger:     slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		t.Fatalf("jstest: start server in %s: %v", dir, err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect(t.Name())
	if err != nil {
		t.Fatalf("jstest: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := natsjs.New(nc, natsjs.WithPublishAsyncMaxPending(MaxPending))
	if err != nil {
		t.Fatalf("jstest: jetstream context: %v", err)
	}
	return srv, nc, js
}
